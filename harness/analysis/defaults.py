"""Defaults and thresholds of the analysis, each stated once, by name.

Light on purpose (no pandas, no scipy): the CLI reads them for its option defaults.
"""

from __future__ import annotations

# The significance level of every test (compare, check, history, review) and its bound are
# the scenario's `alpha` key's default and bound (harness.results.significance).
from harness.results.significance import ALPHA_MAX, DEFAULT_ALPHA, alpha_problem  # noqa: F401

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
# The cover letter's columns (`cover-letter --width`): a mail's lines, quoted once or twice,
# stay within 80.
COVER_WIDTH = 72
# Exit codes of `check` (and `run --check`): 2 wins over 1, see harness.analysis.check.
EXIT_OK, EXIT_FAILED, EXIT_INFRA = 0, 1, 2

