"""Rendering without domain knowledge: numbers, plain-text, Markdown and HTML tables, and
the shared box plot. Everything here takes headers, rows and values; nothing knows what a
balloon is, so one table can be printed to a terminal, a CI page and the review alike."""
