"""Markdown tables and quotes (GitHub/GitLab flavour)."""

from __future__ import annotations

from collections.abc import Sequence


def md_escape(text: str) -> str:
    """A cell's text: pipes escaped, newlines as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """The table's lines: the first ``left`` columns left-aligned, the rest right-aligned."""
    align = "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"
    return ["| " + " | ".join(md_escape(h) for h in header) + " |", align,
            *["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]]


def md_quote(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.split("\n")]
