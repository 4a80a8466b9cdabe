"""Defaults and thresholds of the analysis, each stated once, by name.

Light on purpose (no pandas, no scipy): the CLI reads them for its option defaults.
"""

from __future__ import annotations

from typing import Any, Optional

DEFAULT_ALPHA = 0.05     # significance level of every test (compare, check, history, review)
# alpha must lie in (0, ALPHA_MAX]: a level above one half calls more than half of the
# differences between equal arms real, which no decision should do (and 1.5 is a typo).
ALPHA_MAX = 0.5
DEFAULT_LAST = 14        # nights of history check --against-history compares tonight with
MIN_NIGHTS = 3           # fewer nights cannot estimate the night-to-night spread: "n too small"
DEFAULT_MAX_REPS = 10    # run --until-decided: repetitions of an arm at the most
MAX_REPS_LIMIT = 30      # the largest --max-reps accepted (a night's worth of runs per arm)
CONFIDENCE = 0.95        # level of the shift's confidence interval
# The THP ratio alone rewards an arm for stopping short: the report flags it (and its plot
# draws the line) below these medians of shrink_fraction and returned_fraction.
RATIO = "thp_lost_per_ballooned_mib"
SHORT_SHRINK = 0.9       # below this median shrink_fraction, a good THP ratio was earned by stopping short
SHORT_RETURNED = 0.5     # below this median returned_fraction, by not returning the ballooned memory
# Exit codes of `check` (and `run --check`): 2 wins over 1, see harness.analysis.check.
EXIT_OK, EXIT_FAILED, EXIT_INFRA = 0, 1, 2


def alpha_problem(alpha: Any) -> Optional[str]:
    """Why ``alpha`` is not a significance level the harness accepts; None when it is."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha != alpha:
        return f"must be a number in (0, {ALPHA_MAX:g}], got {alpha!r}"
    if not 0 < alpha <= ALPHA_MAX:
        return f"must be in (0, {ALPHA_MAX:g}] (a significance level such as {DEFAULT_ALPHA:g}), got {alpha:g}"
    return None
