"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, last_left: bool = False) -> str:
    """Columns padded to their widest cell: the first ``left`` (and with ``last_left`` the last,
    a note) left-aligned, the figures right-aligned; a dashed rule under the header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lefts = set(range(left)) | ({len(header) - 1} if last_left else set())

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i in lefts else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]])
