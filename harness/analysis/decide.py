"""The one statistical core: two groups of runs, one figure, one decision.

``compare``, ``check`` (relative expectations), ``check --against-history``, ``--until-decided``
and the review all decide through :func:`decide`, so they agree with each other.

The figure's ``kind`` (declared on :class:`harness.results.metrics.Metric`) picks the test:

* **continuous** and **count** figures: the two-sided Wilcoxon-Mann-Whitney rank test with
  its EXACT permutation p-value, and the Hodges-Lehmann shift (the median of all pairwise
  differences B - A: the rank test's own estimate of how far B moved) with its
  distribution-free confidence interval. The p-value is counted exactly from the
  distribution of the rank sum given the runs' own ties (mid-ranks; :func:`rank_test_p`),
  not taken from scipy's default, which switches to the normal approximation as soon as
  two runs tie: 0 0 0 against 1 1 1 has exact p = 2/20 = 0.100 (the only two arrangements
  as extreme of the 20 equally likely ones), scipy's approximation says 0.047 and would
  call 3 runs against 3 "better". A count of the distribution (a dynamic programme over
  the pooled runs' doubled mid-ranks) rather than ``scipy.stats.permutation_test``
  because it is exact at any size the harness meets (35 pooled nights against 5 runs have
  4e7 arrangements: enumeration is too slow, the count takes milliseconds) and gives the
  same p-value (the tests check it against ``permutation_test`` with full enumeration).
  Beyond :data:`EXACT_RUNS` pooled runs the normal approximation with tie correction is
  used: with that many runs it is accurate.
* **proportion** figures (a yes/no per run: ``reached``, shown as ``reached_fraction``):
  Boschloo's exact unconditional test of two proportions (``scipy.stats.boschloo_exact``:
  more powerful than Fisher's, exact at any n) and Newcombe's hybrid score interval for
  the difference of proportions (statsmodels ``confint_proportions_2indep``, method
  "newcomb": well-behaved at 0/n and n/n, where a Wald interval collapses). The shift is
  the difference of proportions B - A. A shift estimator for continuous data said 10/10
  against 8/10 moved by 0 with interval [0, 0] and called it "same"; here it is a
  difference of -0.2 with interval [-0.51, 0.11], which decides nothing.

The verdict:

* ``better`` / ``worse``: p < alpha AND the shift is at least the figure's effect floor
  (:data:`harness.results.metrics.EFFECT_FLOORS`), in the metric's direction (``higher`` /
  ``lower`` for a figure that has none, such as a counter);
* ``same``: the whole confidence interval of the shift lies within the effect floor: any
  difference is too small to matter (a significant drift of 0.01 over many pooled nights);
* ``n too small``: with this many runs the test cannot reach alpha at all (3 runs against
  3 cannot go below p = 0.10 with the rank test): ``reps_needed`` says how many runs per
  arm can;
* ``undecided``: the runs could decide but do not yet (more repetitions may).

A caller that makes many decisions at once (``compare``, ``check``) adjusts the p-values
over its family (:func:`adjusted`); :attr:`Decision.significant` then reads the adjusted
p-value.

Why ranks for measured figures: a scenario has few repetitions (3 to 10), its figures are
not normal (the THP ratio jumps when an arm stops short; a slow boot skews settle times),
and the question "do B's runs tend to lie below A's" is what the rank test answers without
assuming a distribution.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from harness.analysis.defaults import CONFIDENCE, DEFAULT_ALPHA, alpha_problem
from harness.analysis.groups import REACHED_FRACTION, centre
from harness.errors import HarnessError
from harness.results.metrics import CONTINUOUS, EFFECT_FLOORS, METRICS, PROPORTION

BETTER, WORSE, SAME, UNDECIDED, N_TOO_SMALL, NO_DATA = (
    "better", "worse", "same", "undecided", "n too small", "no data")
HIGHER, LOWER = "higher", "lower"       # decided, for a figure with no better direction (a counter)
DECIDED = (BETTER, WORSE, SAME, HIGHER, LOWER)
MAX_REPS_SEARCHED = 50
EXACT_LIMIT = 20000      # m*n up to which the U distribution is counted exactly (the interval's rank)
EXACT_RUNS = 120         # pooled runs up to which the rank test's p-value is counted exactly
RANK_TEST = "Mann-Whitney U (exact)"
RANK_TEST_NORMAL = "Mann-Whitney U (normal approximation, tie-corrected)"
PROPORTION_TEST = "Boschloo exact"
HOLM, BH = "holm", "fdr_bh"             # statsmodels' names of the adjustments
ADJUSTMENT_NAMES = {HOLM: "Holm", BH: "Benjamini-Hochberg"}


@dataclass(frozen=True)
class Decision:
    """B against A for one figure."""

    metric: str
    n_a: int
    n_b: int
    median_a: float          # for a proportion: the fraction of A's runs that said yes
    median_b: float
    shift: float             # Hodges-Lehmann estimate of B - A (a proportion: the difference B - A)
    ci_low: float            # CONFIDENCE interval of the shift (-inf/inf: too few runs to bound it)
    ci_high: float
    p_value: float           # two-sided p of the kind's test; NaN without a test
    alpha: float
    floor: float             # the figure's effect floor (0: any significant shift counts)
    verdict: str             # one of BETTER, WORSE, SAME, UNDECIDED, N_TOO_SMALL, NO_DATA
    reps_needed: int = 0     # with N_TOO_SMALL: runs per arm that can reach alpha
    note: str = ""
    kind: str = CONTINUOUS   # the figure's kind (harness.results.metrics.KINDS)
    test: str = ""           # the test that gave p_value
    p_adjusted: float = math.nan   # p_value adjusted over the caller's family (NaN: not adjusted)
    adjustment: str = ""     # "Holm over 12", "Benjamini-Hochberg over 30", ""

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED

    @property
    def p_decisive(self) -> float:
        """The p-value the verdict used: adjusted when the caller adjusted it."""
        return self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted

    @property
    def significant(self) -> bool:
        p = self.p_decisive
        return not math.isnan(p) and p < self.alpha

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
        if not math.isnan(self.p_adjusted):
            p += f", adjusted {self.p_adjusted:.3g} ({self.adjustment})"
        what = "difference" if self.kind == PROPORTION else "shift"
        return (f"{self.verdict_text()} (n = {self.n_a} vs {self.n_b}; {what} {f(self.shift)}, "
                f"{CONFIDENCE:.0%} CI {ci}; {p}; floor {f(self.floor)})")


def change_pct(a: float, b: float) -> float:
    """(b - a) / |a| in percent; NaN when a is 0 or unknown."""
    if math.isnan(a) or math.isnan(b) or a == 0:
        return math.nan
    return (b - a) / abs(a) * 100.0


def _column(metric: str) -> str:
    return "reached" if metric == REACHED_FRACTION else metric


def floor_of(metric: str) -> float:
    return float(EFFECT_FLOORS.get(_column(metric), 0.0))


def better_of(metric: str) -> Optional[str]:
    name = _column(metric)
    return METRICS[name].better if name in METRICS else None


def kind_of(metric: str) -> str:
    """The figure's kind (continuous for a column the metrics do not define)."""
    name = _column(metric)
    return METRICS[name].kind if name in METRICS else CONTINUOUS


def direction(metric: str, a: float, b: float) -> str:
    """"better" / "worse" for B against A by the metric's definition, "" when it has none or equal."""
    better = better_of(metric)
    if better is None or math.isnan(a) or math.isnan(b) or a == b:
        return ""
    return BETTER if (b > a) == (better == "higher") else WORSE


# --- the rank test, exact under ties -------------------------------------------------------

def _rank_sum_tails(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(P(R >= r), P(R <= r)) of B's rank sum R under exchangeability, counted exactly.

    Mid-ranks of the pooled runs, doubled to integers; the number of ways each sum arises
    by choosing len(b) of them is counted by a dynamic programme over the pooled runs
    (float counts: relative precision is what the p-value needs)."""
    from scipy.stats import rankdata
    pooled = np.concatenate([a, b])
    ranks2 = np.rint(2 * rankdata(pooled)).astype(int)
    k = len(b)
    observed = int(ranks2[len(a):].sum())
    top = int(np.sort(ranks2)[-k:].sum())
    ways = np.zeros((k + 1, top + 1))
    ways[0, 0] = 1.0
    for r in ranks2:
        for j in range(k, 0, -1):      # each run joins a subset at most once
            ways[j, r:] += ways[j - 1, :top + 1 - r]
    dist = ways[k]
    total = dist.sum()
    return float(dist[observed:].sum() / total), float(dist[:observed + 1].sum() / total)


def rank_test_p(a: Any, b: Any, alternative: str = "two-sided") -> float:
    """The Wilcoxon-Mann-Whitney p-value of B against A, exact given the ties.

    ``alternative``: "two-sided" (2 x the smaller tail, at most 1: scipy's convention),
    "greater" (B tends to lie above A) or "less". Beyond :data:`EXACT_RUNS` pooled runs,
    scipy's normal approximation with tie correction."""
    va, vb = _clean(a), _clean(b)
    if len(va) + len(vb) > EXACT_RUNS:
        from scipy.stats import mannwhitneyu
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # mannwhitneyu's alternative is about its first sample: B "greater" than A
            return float(mannwhitneyu(vb, va, alternative=alternative, method="asymptotic").pvalue)
    upper, lower = _rank_sum_tails(va, vb)
    if alternative == "greater":
        return min(1.0, upper)
    if alternative == "less":
        return min(1.0, lower)
    return min(1.0, 2 * min(upper, lower))


def mann_whitney(a: Any, b: Any) -> tuple[float, str]:
    """Two-sided Mann-Whitney U p-value (exact under ties), and a note when there is none."""
    a, b = _clean(a), _clean(b)
    if len(a) < 1 or len(b) < 1:
        return math.nan, NO_DATA
    if len(a) < 2 or len(b) < 2:
        return math.nan, N_TOO_SMALL
    if np.ptp(np.concatenate([a, b])) == 0:
        return math.nan, "no variation"
    return rank_test_p(a, b), ""


@lru_cache(maxsize=256)
def attainable_p(m: int, n: int) -> float:
    """The smallest two-sided p the rank test can give for m against n runs (fully separated)."""
    if m < 2 or n < 2:
        return 1.0
    p, _ = mann_whitney(np.arange(m, dtype=float), np.arange(m, m + n, dtype=float))
    return p


# --- two proportions ------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def boschloo_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided Boschloo exact p-value for k_a/n_a against k_b/n_b."""
    from scipy.stats import boschloo_exact
    if n_a < 1 or n_b < 1:
        return math.nan
    if (k_a + k_b) in (0, n_a + n_b):       # every run said the same: nothing to test
        return 1.0
    root = logging.getLogger()
    root.addFilter(_quiet_shgo)      # scipy's optimiser logs its bounds on the root logger at INFO
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(boschloo_exact([[k_b, k_a], [n_b - k_b, n_a - k_a]], alternative="two-sided").pvalue)
    finally:
        root.removeFilter(_quiet_shgo)
    return min(1.0, p)


def _quiet_shgo(record: logging.LogRecord) -> bool:
    return "_shgo" not in record.pathname


@lru_cache(maxsize=1024)
def newcombe_interval(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Newcombe's hybrid score interval of the difference of proportions k_b/n_b - k_a/n_a."""
    from statsmodels.stats.proportion import confint_proportions_2indep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = confint_proportions_2indep(k_b, n_b, k_a, n_a, method="newcomb", compare="diff",
                                               alpha=1 - confidence)
    return max(-1.0, float(low)), min(1.0, float(high))


@lru_cache(maxsize=256)
def attainable_p_proportion(m: int, n: int) -> float:
    """The smallest two-sided Boschloo p for m against n runs (all of A no, all of B yes)."""
    return boschloo_p(0, m, n, n) if m >= 1 and n >= 1 else 1.0


def _counts(v: np.ndarray, metric: str) -> int:
    if not np.isin(v, (0.0, 1.0)).all():
        raise ValueError(f"{metric} is a proportion: one 0 or 1 per run, got {sorted(set(v.tolist()))[:5]}")
    return int(v.sum())


def reps_needed(alpha: float, at_least: int = 2, kind: str = CONTINUOUS) -> int:
    """The fewest runs per arm (equal arms) for which the kind's test can reach ``alpha``."""
    attainable = attainable_p_proportion if kind == PROPORTION else attainable_p
    for k in range(max(1, at_least), MAX_REPS_SEARCHED + 1):
        if attainable(k, k) < alpha:
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


# --- the decision ---------------------------------------------------------------------------

def _verdict(metric: str, ma: float, mb: float, shift: float, low: float, high: float, p: float,
             alpha: float, fl: float, enough: bool) -> str:
    """The verdict from the test's p, the shift and its interval (see the module's docstring);
    ``enough``: the runs can reach alpha at all."""
    same = math.isfinite(low) and math.isfinite(high) and -fl <= low and high <= fl if fl > 0 \
        else (enough and low == high == 0.0)
    sig = not math.isnan(p) and p < alpha
    relevant = abs(shift) >= fl if fl > 0 else shift != 0
    if sig and relevant:
        return direction(metric, ma, mb) or direction(metric, 0.0, shift) or (HIGHER if shift > 0 else LOWER)
    if same:
        return SAME
    return UNDECIDED if enough else N_TOO_SMALL


def decide(metric: str, a: Any, b: Any, alpha: float = DEFAULT_ALPHA, floor: Optional[float] = None) -> Decision:
    """B's runs against A's runs for ``metric`` (one value per run; NaN dropped), by the
    test of the metric's kind."""
    problem = alpha_problem(alpha)
    if problem:
        raise HarnessError(f"alpha {problem}")
    va, vb = _clean(a), _clean(b)
    ma, mb = centre(metric, va), centre(metric, vb)
    fl = floor_of(metric) if floor is None else float(floor)
    kind = kind_of(metric)
    m, n = int(va.size), int(vb.size)
    if m == 0 or n == 0:
        return Decision(metric, m, n, ma, mb, math.nan, -math.inf, math.inf, math.nan,
                        alpha, fl, NO_DATA, note="no data on one side", kind=kind)
    if kind == PROPORTION:
        k_a, k_b = _counts(va, metric), _counts(vb, metric)
        ma, mb = k_a / m, k_b / n
        shift = mb - ma
        low, high = newcombe_interval(k_a, m, k_b, n)
        p, note, test = boschloo_p(k_a, m, k_b, n), "", PROPORTION_TEST
        enough = attainable_p_proportion(m, n) < alpha
    else:
        shift, low, high = hodges_lehmann(va, vb)
        p, note = mann_whitney(va, vb)
        if note == "no variation":       # every run of both arms gave the same value
            p = 1.0
        test = RANK_TEST if m + n <= EXACT_RUNS else RANK_TEST_NORMAL
        enough = attainable_p(m, n) < alpha
    verdict = _verdict(metric, ma, mb, shift, low, high, p, alpha, fl, enough)
    needed = reps_needed(alpha, max(m, n) + 1, kind) if verdict == N_TOO_SMALL else 0
    return Decision(metric, m, n, ma, mb, shift, low, high, p, alpha, fl, verdict, needed, note, kind, test)


def redecide(d: Decision, p_adjusted: float, adjustment: str, level: Optional[float] = None) -> Decision:
    """``d`` decided again on its adjusted p-value (the shift and interval stay).

    ``level``: the per-test level at which the family could reach alpha at all (Holm's first
    step: alpha / family size); when the runs cannot reach it, the verdict says "n too small"
    with the repetitions that can."""
    if d.verdict == NO_DATA:
        return d
    enough = (attainable_p_proportion if d.kind == PROPORTION else attainable_p)(d.n_a, d.n_b) < (level or d.alpha)
    verdict = _verdict(d.metric, d.median_a, d.median_b, d.shift, d.ci_low, d.ci_high, p_adjusted, d.alpha,
                       d.floor, enough)
    needed = reps_needed(level or d.alpha, max(d.n_a, d.n_b) + 1, d.kind) if verdict == N_TOO_SMALL else 0
    return dataclasses.replace(d, p_adjusted=p_adjusted, adjustment=adjustment, verdict=verdict,
                               reps_needed=needed)


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted, p_(i) x (K - i + 1), made monotone, at most 1.
    The same arithmetic as statsmodels' ``multipletests(method="holm")`` (the tests compare
    them), which also runs a full ``gc.collect()`` per call: 40 ms on a loaded heap, too
    slow for the calibration's thousands of families."""
    order = np.argsort(p, kind="stable")
    k = len(p)
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(k, 0, -1)))
    out = np.empty(k)
    out[order] = adj
    return out


def adjust_p(p_values: Sequence[float], method: str) -> list[float]:
    """``p_values`` adjusted over their family: ``HOLM`` (family-wise error) or ``BH``
    (Benjamini-Hochberg, by statsmodels' ``multipletests``); NaN (no test) stays NaN and is
    not counted in the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        if method == HOLM:
            out[ok] = _holm(p[ok])
        else:
            from statsmodels.stats.multitest import multipletests
            out[ok] = multipletests(p[ok], method=method)[1]
    return out.tolist()


def adjusted(decisions: Sequence[Decision], method: str = HOLM) -> list[Decision]:
    """Every decision of one family decided again on its adjusted p-value (Holm: family-wise
    error at most alpha; Benjamini-Hochberg: false discovery rate at most alpha)."""
    size = sum(1 for d in decisions if not math.isnan(d.p_value))
    if size == 0:
        return list(decisions)
    label = f"{ADJUSTMENT_NAMES.get(method, method)} over {size}"
    level_of = (lambda d: d.alpha / size) if method == HOLM else (lambda d: d.alpha)
    padj = adjust_p([d.p_value for d in decisions], method)
    return [d if math.isnan(q) else redecide(d, q, label, level_of(d)) for d, q in zip(decisions, padj)]


# --- tests against a margin (check's non-inferiority and equivalence) -----------------------

ABOVE, BELOW = "above", "below"


def newcombe_margin_p(k_a: int, n_a: int, k_b: int, n_b: int, margin: float, side: str) -> float:
    """The p-value of "the difference B - A lies ``side`` ``margin``" read off Newcombe's
    interval: the smallest 1 - confidence at which the two-sided interval leaves the margin
    on the other side (so p < alpha exactly when the (1 - alpha) interval does)."""
    from scipy.optimize import brentq

    def gap(a: float) -> float:      # > 0: the (1 - a) interval already clears the margin
        low, high = newcombe_interval(k_a, n_a, k_b, n_b, 1 - a)
        return (low - margin) if side == ABOVE else (margin - high)

    lo_a, hi_a = 1e-12, 1 - 1e-12
    if gap(lo_a) > 0:
        return lo_a
    if gap(hi_a) <= 0:
        return 1.0
    return float(brentq(gap, lo_a, hi_a, xtol=1e-10))


def margin_p(metric: str, a: Any, b: Any, margin: float, side: str) -> float:
    """The p-value, on the scale of the two-sided tests (twice the one-sided p, so that it is
    below alpha when the CONFIDENCE interval clears the margin), that B's shift against A lies
    ``side`` (ABOVE / BELOW) ``margin``: non-inferiority and, two at once, equivalence.

    Measured figures: the exact rank test of A against B moved by ``margin`` (the test the
    Hodges-Lehmann interval inverts). Proportions: Newcombe's interval inverted."""
    va, vb = _clean(a), _clean(b)
    if va.size == 0 or vb.size == 0:
        return math.nan
    if kind_of(metric) == PROPORTION:
        return newcombe_margin_p(_counts(va, metric), int(va.size), _counts(vb, metric), int(vb.size), margin, side)
    if va.size < 2 or vb.size < 2:
        return math.nan
    one = rank_test_p(va, vb - margin, "greater" if side == ABOVE else "less")
    return min(1.0, 2 * one)
