"""The one statistical core: two groups of runs, one figure, one decision.

``compare``, ``check`` (relative expectations), ``check --against-history`` and the review
all decide through :func:`decide`, so they agree with each other.

Per figure it gives the medians, the Hodges-Lehmann shift (the median of all pairwise
differences B - A: the rank test's own estimate of how far B moved) with its
distribution-free confidence interval, the two-sided Mann-Whitney U p-value, and a verdict:

* ``better`` / ``worse``: p < alpha AND the shift is at least the figure's effect floor
  (:data:`harness.results.metrics.EFFECT_FLOORS`), in the metric's direction (``higher`` /
  ``lower`` for a figure that has none, such as a counter);
* ``same``: the whole confidence interval of the shift lies within the effect floor: any
  difference is too small to matter (a significant drift of 0.01 over many pooled nights);
* ``n too small``: with this many runs the test cannot reach alpha at all (3 runs against
  3 cannot go below p = 0.10 exactly, 0.064 with ties): ``reps_needed`` says how many runs
  per arm can;
* ``undecided``: the runs could decide but do not yet (more repetitions may).

Why ranks: a scenario has few repetitions (3 to 10), its figures are not normal (the THP
ratio jumps when an arm stops short; a slow boot skews settle times), and the question
"do B's runs tend to lie below A's" is what U answers without assuming a distribution.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from harness.analysis.defaults import CONFIDENCE, DEFAULT_ALPHA
from harness.analysis.groups import REACHED_FRACTION, centre
from harness.results.metrics import EFFECT_FLOORS, METRICS

BETTER, WORSE, SAME, UNDECIDED, N_TOO_SMALL, NO_DATA = (
    "better", "worse", "same", "undecided", "n too small", "no data")
HIGHER, LOWER = "higher", "lower"       # decided, for a figure with no better direction (a counter)
DECIDED = (BETTER, WORSE, SAME, HIGHER, LOWER)
MAX_REPS_SEARCHED = 50
EXACT_LIMIT = 20000      # m*n up to which the U distribution is counted exactly


@dataclass(frozen=True)
class Decision:
    """B against A for one figure."""

    metric: str
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    shift: float             # Hodges-Lehmann estimate of B - A
    ci_low: float            # CONFIDENCE interval of the shift (-inf/inf: too few runs to bound it)
    ci_high: float
    p_value: float           # two-sided Mann-Whitney U; NaN without a test
    alpha: float
    floor: float             # the figure's effect floor (0: any significant shift counts)
    verdict: str             # one of BETTER, WORSE, SAME, UNDECIDED, N_TOO_SMALL, NO_DATA
    reps_needed: int = 0     # with N_TOO_SMALL: runs per arm that can reach alpha
    note: str = ""

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_value) and self.p_value < self.alpha

    @property
    def change_pct(self) -> float:
        return change_pct(self.median_a, self.median_b)

    def verdict_text(self) -> str:
        """The verdict as a table cell: "better", "n too small: 4 reps/arm", ..."""
        if self.verdict == N_TOO_SMALL and self.reps_needed:
            return f"n too small: {self.reps_needed} reps/arm needed"
        return self.verdict

    def sentence(self, fmt: Any = None) -> str:
        """One sentence: the verdict with n, the shift and its interval, p."""
        f = fmt or (lambda v: f"{v:.3g}")
        if self.verdict == NO_DATA:
            return f"{self.metric}: no data on one side"
        ci = (f"[{f(self.ci_low)}..{f(self.ci_high)}]" if math.isfinite(self.ci_low) and math.isfinite(self.ci_high)
              else "unbounded")
        p = "no test" if math.isnan(self.p_value) else f"p = {self.p_value:.3g}"
        return (f"{self.verdict_text()} (n = {self.n_a} vs {self.n_b}; shift {f(self.shift)}, "
                f"{CONFIDENCE:.0%} CI {ci}; {p}; floor {f(self.floor)})")


def change_pct(a: float, b: float) -> float:
    """(b - a) / |a| in percent; NaN when a is 0 or unknown."""
    if math.isnan(a) or math.isnan(b) or a == 0:
        return math.nan
    return (b - a) / abs(a) * 100.0


def floor_of(metric: str) -> float:
    name = "reached" if metric == REACHED_FRACTION else metric
    return float(EFFECT_FLOORS.get(name, 0.0))


def better_of(metric: str) -> Optional[str]:
    name = "reached" if metric == REACHED_FRACTION else metric
    return METRICS[name].better if name in METRICS else None


def direction(metric: str, a: float, b: float) -> str:
    """"better" / "worse" for B against A by the metric's definition, "" when it has none or equal."""
    better = better_of(metric)
    if better is None or math.isnan(a) or math.isnan(b) or a == b:
        return ""
    return BETTER if (b > a) == (better == "higher") else WORSE


def mann_whitney(a: Any, b: Any) -> tuple[float, str]:
    """Two-sided Mann-Whitney U p-value, and a note when there is none."""
    from scipy.stats import mannwhitneyu
    a, b = _clean(a), _clean(b)
    if len(a) < 1 or len(b) < 1:
        return math.nan, NO_DATA
    if len(a) < 2 or len(b) < 2:
        return math.nan, N_TOO_SMALL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if math.isnan(p):
        return p, "no variation"
    return p, ""


@lru_cache(maxsize=256)
def attainable_p(m: int, n: int) -> float:
    """The smallest two-sided p the test can give for m against n runs (fully separated, no ties)."""
    if m < 2 or n < 2:
        return 1.0
    p, _ = mann_whitney(np.arange(m, dtype=float), np.arange(m, m + n, dtype=float))
    return p


def reps_needed(alpha: float, at_least: int = 2) -> int:
    """The fewest runs per arm (equal arms) for which the test can reach ``alpha``."""
    for k in range(max(1, at_least), MAX_REPS_SEARCHED + 1):
        if attainable_p(k, k) < alpha:
            return k
    return MAX_REPS_SEARCHED


@lru_cache(maxsize=256)
def _u_cdf_counts(m: int, n: int) -> tuple[int, ...]:
    """Counts of each U value 0..m*n under the null (no ties), by the standard recursion."""
    # f[i][j][u]: arrangements of i A's and j B's with statistic u; rolled over j.
    prev = [[1] + [0] * (m * n) for _ in range(m + 1)]   # j = 0: only u = 0
    for j in range(1, n + 1):
        cur = [[0] * (m * n + 1) for _ in range(m + 1)]
        cur[0][0] = 1
        for i in range(1, m + 1):
            for u in range(i * j + 1):
                # the largest element is a B (adds i to U) or an A
                cur[i][u] = (prev[i][u - i] if u >= i else 0) + cur[i - 1][u]
        prev = cur
    return tuple(prev[m])


def _ci_rank(m: int, n: int, confidence: float) -> int:
    """k: the interval is [D_(k), D_(mn+1-k)] of the sorted pairwise differences (1-based);
    0 when no order statistic gives that confidence (the interval is unbounded)."""
    tail = (1 - confidence) / 2
    if m * n <= EXACT_LIMIT:
        counts = _u_cdf_counts(m, n)
        total = float(sum(counts))
        cum, k = 0.0, 0
        for u, c in enumerate(counts):
            cum += c
            if cum / total > tail:
                break
            k = u + 1
        return k
    from scipy.stats import norm
    mean, sd = m * n / 2, math.sqrt(m * n * (m + n + 1) / 12)
    return max(0, int(math.floor(mean - norm.ppf(1 - tail) * sd)))


def hodges_lehmann(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(shift, low, high): the median of the pairwise differences b_j - a_i and its interval."""
    diffs = np.sort((b[None, :] - a[:, None]).ravel())
    shift = float(np.median(diffs))
    k = _ci_rank(len(a), len(b), confidence)
    if k < 1:
        return shift, -math.inf, math.inf
    return shift, float(diffs[k - 1]), float(diffs[len(diffs) - k])


def _clean(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[~np.isnan(v)]


def decide(metric: str, a: Any, b: Any, alpha: float = DEFAULT_ALPHA, floor: Optional[float] = None) -> Decision:
    """B's runs against A's runs for ``metric`` (one value per run; NaN dropped)."""
    va, vb = _clean(a), _clean(b)
    ma, mb = centre(metric, va), centre(metric, vb)
    fl = floor_of(metric) if floor is None else float(floor)
    if va.size == 0 or vb.size == 0:
        return Decision(metric, int(va.size), int(vb.size), ma, mb, math.nan, -math.inf, math.inf, math.nan,
                        alpha, fl, NO_DATA, note="no data on one side")
    shift, low, high = hodges_lehmann(va, vb)
    p, note = mann_whitney(va, vb)
    if note == "no variation":       # every run of both arms gave the same value
        p = 1.0
    same = math.isfinite(low) and math.isfinite(high) and -fl <= low and high <= fl if fl > 0 \
        else (va.size >= 2 and vb.size >= 2 and low == high == 0.0)
    sig = not math.isnan(p) and p < alpha
    relevant = abs(shift) >= fl if fl > 0 else shift != 0
    if sig and relevant:
        verdict = direction(metric, ma, mb) or direction(metric, 0.0, shift) or (HIGHER if shift > 0 else LOWER)
    elif same:
        verdict = SAME
    elif attainable_p(int(va.size), int(vb.size)) >= alpha:
        verdict = N_TOO_SMALL
    else:
        verdict = UNDECIDED
    needed = reps_needed(alpha, max(int(va.size), int(vb.size)) + 1) if verdict == N_TOO_SMALL else 0
    return Decision(metric, int(va.size), int(vb.size), ma, mb, shift, low, high, p, alpha, fl, verdict,
                    needed, note)
