"""Reading results folders for decisions: per-group statistics (:mod:`.groups`), the one
two-sample comparison core (:mod:`.decide`), and what is built on it: ``compare``,
``check`` (expectations, JUnit, Markdown), the nightly ``history`` and the ``report``."""
