"""``balloon-harness review``: the RFC review answered point by point from measured data.

:mod:`.points` holds the points as data (question, tables, answer functions),
:mod:`.evidence` reads the review's results folders and answers questions about them,
:mod:`.document` assembles the sections and renders them to Markdown and HTML.
"""
