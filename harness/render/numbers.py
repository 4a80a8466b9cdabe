"""Numbers as every table prints them: decimals by unit, a spread by how many runs there are."""

from __future__ import annotations

import math
from typing import Optional

# Decimals by unit; units not listed (kB, counts, blocks, pages, MB/s) print whole.
DECIMALS = {"ratio": 2, "bool": 2, "s": 1, "MiB": 1, "GiB/s": 2, "GiB*min": 2, "GiB·min": 2}


def missing(v: Optional[float]) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_number(v: Optional[float], unit: str = "") -> str:
    """One figure: ``-`` when missing, else with the unit's decimals."""
    if v is None or missing(v):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{DECIMALS.get(unit, 0)}f}"


def fmt_spread(n: int, median: float, q1: float, q3: float, lo: float, hi: float, unit: str = "") -> str:
    """``median`` alone (n=1), ``median (min..max)`` for n <= 4, ``median [q1..q3]`` for n >= 5.

    Quartiles of 2 to 4 values are interpolations between them; the range says more then.
    """
    if not n:
        return "-"
    f = lambda v: fmt_number(v, unit)  # noqa: E731
    if n == 1 or lo == hi:
        return f(median)
    if n <= 4:
        return f"{f(median)} ({f(lo)}..{f(hi)})"
    return f"{f(median)} [{f(q1)}..{f(q3)}]"


def fmt_p(p: float) -> str:
    """A p-value: three decimals, scientific below 0.001, ``-`` without a test."""
    if missing(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def fmt_pct(v: float) -> str:
    return "-" if missing(v) else f"{v:+.1f}%"
