"""The significance level: its default and its bound, stated once.

A scenario's ``[[expect]]`` tables may set ``alpha`` (the scenario schema checks it) and every
command that decides takes ``--alpha`` (harness.analysis.defaults): both use these. A module of
its own, without pydantic, so that the command line's option defaults stay quick to import.
"""

from __future__ import annotations

from typing import Any, Optional

DEFAULT_ALPHA = 0.05     # significance level of every test (compare, check, history, review)
# alpha must lie in (0, ALPHA_MAX]: a level above one half calls more than half of the
# differences between equal arms real, which no decision should do (and 1.5 is a typo).
ALPHA_MAX = 0.5


def alpha_problem(alpha: Any) -> Optional[str]:
    """Why ``alpha`` is not a significance level the harness accepts; None when it is."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha != alpha:
        return f"must be a number in (0, {ALPHA_MAX:g}], got {alpha!r}"
    if not 0 < alpha <= ALPHA_MAX:
        return f"must be in (0, {ALPHA_MAX:g}] (a significance level such as {DEFAULT_ALPHA:g}), got {alpha:g}"
    return None
