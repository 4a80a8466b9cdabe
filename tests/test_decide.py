"""The comparison core (no VM): verdicts from the rank test, the Hodges-Lehmann shift and
the effect floor; "n too small" with the repetitions that can decide."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.decide import (
    ABOVE,
    BELOW,
    BH,
    HOLM,
    _ci_rank,
    adjust_p,
    adjusted,
    attainable_p,
    boschloo_p,
    decide,
    hodges_lehmann,
    kind_of,
    margin_p,
    newcombe_interval,
    rank_test_p,
    reps_needed,
)

RATIO = "thp_lost_per_ballooned_mib"     # lower is better, effect floor 0.05


def test_three_against_three_cannot_decide_and_says_how_many_can():
    d = decide(RATIO, [2.0, 2.01, 2.02], [1.0, 1.01, 1.02])
    assert d.verdict == "n too small" and d.reps_needed == 4 and not d.decided
    assert attainable_p(3, 3) >= 0.05 > attainable_p(4, 4)
    assert "4 reps/arm" in d.verdict_text()


def test_separated_runs_decide_by_the_metric_direction():
    a, b = [2.0, 2.1, 1.9, 2.05, 1.95, 2.02], [1.0, 1.1, 0.9, 1.05, 0.95, 1.02]
    assert decide(RATIO, a, b).verdict == "better"      # B loses fewer huge pages
    assert decide(RATIO, b, a).verdict == "worse"
    assert decide("returned_fraction", b, a).verdict == "better"   # higher is better there


def test_a_significant_drift_below_the_floor_is_not_a_regression():
    rng = np.random.default_rng(0)
    a = 2.0 + rng.normal(0, 0.002, 60)
    b = a + 0.01                                          # significant with 60 runs, but 0.01 < 0.05
    d = decide(RATIO, a, b)
    assert d.significant and d.verdict == "same" and abs(d.shift - 0.01) < 0.002
    assert decide(RATIO, a, b, floor=0.0).verdict == "worse"      # without a floor it would count


def test_hodges_lehmann_shift_and_interval_cover_the_true_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 30)
    b = rng.normal(3, 1, 30)
    shift, lo, hi = hodges_lehmann(a, b)
    assert lo < shift < hi and lo < 3 < hi and hi - lo < 2
    s1, lo1, hi1 = hodges_lehmann(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    assert s1 == 3.0 and math.isinf(lo1) and math.isinf(hi1)     # 3 vs 3: no 95 % interval exists


@pytest.mark.parametrize("alpha, n", [(0.05, 4), (0.01, 5)])
def test_reps_needed_is_the_smallest_that_can_reach_alpha(alpha, n):
    assert reps_needed(alpha) == n
    assert attainable_p(n, n) < alpha <= attainable_p(n - 1, n - 1)


def test_no_data_on_a_side():
    assert decide(RATIO, [], [1.0, 2.0]).verdict == "no data"


# --- pinned to published and hand-counted values (issue 26) -----------------------------------

def test_ties_get_the_exact_permutation_p_not_the_normal_approximation():
    """0 0 0 against 1 1 1: 2 of the 20 equally likely arrangements are as extreme, p = 0.100;
    scipy's default (normal approximation once runs tie) says 0.047 and called it better."""
    from scipy.stats import mannwhitneyu
    assert rank_test_p([0, 0, 0], [1, 1, 1]) == pytest.approx(0.1, abs=1e-12)
    assert mannwhitneyu([0, 0, 0], [1, 1, 1]).pvalue < 0.05          # the defect this replaces
    d = decide("thp_split_pmd_delta", [0, 0, 0], [1, 1, 1], floor=0.0)
    assert d.kind == "count" and d.p_value == pytest.approx(0.1) and d.verdict == "n too small"
    assert d.test == "Mann-Whitney U (exact)"


@pytest.mark.parametrize("seed", range(4))
def test_the_exact_p_is_scipys_full_permutation_test(seed):
    """The counted distribution of the rank sum equals scipy's permutation_test enumerating every
    arrangement (with ties: values drawn from a few integers)."""
    from scipy.stats import mannwhitneyu, permutation_test
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, 6).astype(float), rng.integers(0, 5, 5).astype(float)
    res = permutation_test((b, a), lambda x, y: mannwhitneyu(x, y, method="asymptotic").statistic,
                           permutation_type="independent", n_resamples=np.inf, alternative="two-sided")
    assert rank_test_p(a, b) == pytest.approx(res.pvalue, rel=1e-9)


@pytest.mark.parametrize("m, n, p", [(3, 3, 2 / 20), (4, 4, 2 / 70), (5, 5, 2 / 252), (4, 6, 2 / 210)])
def test_smallest_p_is_two_over_the_arrangements(m, n, p):
    """Fully separated runs: 2 / C(m+n, m), the exact tables' smallest two-sided p."""
    assert attainable_p(m, n) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("m, n, u_crit", [(4, 4, 0), (5, 5, 2), (6, 6, 5), (7, 7, 8), (8, 8, 13), (9, 9, 17),
                                          (10, 10, 23), (5, 10, 8), (8, 10, 17)])
def test_hodges_lehmann_interval_rank_matches_the_mann_whitney_tables(m, n, u_crit):
    """The 95 % interval is [D_(k), D_(mn+1-k)] with k = the tables' two-sided 0.05 critical U + 1
    (Hollander & Wolfe; Mann-Whitney critical value tables)."""
    assert _ci_rank(m, n, 0.95) == u_crit + 1
    a, b = np.arange(m, dtype=float), np.arange(n, dtype=float) * 1.37 + 0.5
    diffs = np.sort((b[None, :] - a[:, None]).ravel())
    _, lo, hi = hodges_lehmann(a, b)
    assert (lo, hi) == (diffs[u_crit], diffs[m * n - u_crit - 1])


def test_boschloo_matches_the_documented_and_hand_counted_values():
    from scipy.stats import boschloo_exact
    res = boschloo_exact([[74, 31], [43, 32]], alternative="greater")    # scipy's documented example
    assert res.statistic == pytest.approx(0.0483, abs=1e-4) and res.pvalue == pytest.approx(0.0355, abs=1e-4)
    # all of one arm against none of the other: the nuisance maximum is at 1/2, p = 2 / 2^(2n)
    for n in (3, 4, 5):
        assert boschloo_p(n, n, 0, n) == pytest.approx(2 / 2 ** (2 * n), rel=1e-6)
        assert boschloo_p(0, n, n, n) == pytest.approx(2 / 2 ** (2 * n), rel=1e-6)
    assert reps_needed(0.05, kind="proportion") == 3      # 2/2 vs 0/2 gives 1/8 at best


@pytest.mark.parametrize("k_a, n_a, k_b, n_b, low, high, places", [
    (48, 80, 56, 70, 0.0524, 0.3339, 4),     # Newcombe (1998), Stat Med 17:873, example (a), method 10
    (1, 34, 7, 34, 0.019, 0.340, 3),         # Fagerland, Lydersen & Laake (2015), Table: Newcombe hybrid score
])
def test_newcombe_interval_matches_the_published_examples(k_a, n_a, k_b, n_b, low, high, places):
    lo, hi = newcombe_interval(k_a, n_a, k_b, n_b)
    assert round(lo, places) == low and round(hi, places) == high


def test_yes_no_figures_are_a_difference_of_proportions_not_a_shift():
    """10/10 against 8/10: the shift estimator said 0 with interval [0, 0] and "same"."""
    d = decide("reached_fraction", [1.0] * 10, [1.0] * 8 + [0.0] * 2)
    assert d.kind == "proportion" and d.test == "Boschloo exact"
    assert d.shift == pytest.approx(-0.2) and d.median_a == 1.0 and d.median_b == 0.8
    assert round(d.ci_low, 4) == -0.5098 and round(d.ci_high, 4) == 0.1124
    assert d.verdict == "undecided" and d.p_value == pytest.approx(0.2633, abs=1e-4)
    assert decide("reached_fraction", [1.0] * 3, [0.0] * 3).verdict == "worse"     # p = 1/32
    with pytest.raises(ValueError, match="one 0 or 1 per run"):
        decide("reached_fraction", [1.0, 0.5], [1.0, 1.0])


def test_kinds_are_declared_on_the_metrics():
    from harness.results.metrics import KINDS, METRICS
    assert METRICS["reached"].kind == "proportion" and kind_of("reached_fraction") == "proportion"
    assert METRICS["thp_split_pmd_delta"].kind == "count"
    assert METRICS["thp_lost_per_returned_mib"].kind == "continuous"
    assert all(m.kind in KINDS for m in METRICS.values())


def test_holm_and_benjamini_hochberg_adjust_a_family():
    assert adjust_p([0.01, 0.02, 0.03], HOLM) == pytest.approx([0.03, 0.04, 0.04])
    assert adjust_p([0.01, 0.02, 0.03], BH) == pytest.approx([0.03, 0.03, 0.03])
    assert math.isnan(adjust_p([0.01, math.nan], HOLM)[1])      # no test: not in the family
    from statsmodels.stats.multitest import multipletests
    rng = np.random.default_rng(5)
    for size in (1, 2, 7, 30):
        p = np.round(rng.uniform(0, 0.2, size), 3)            # rounded: ties too
        for method in (HOLM, BH):
            assert adjust_p(p, method) == pytest.approx(multipletests(p, method=method)[1].tolist())
    a, b = [2.0, 2.1, 1.9, 2.05, 1.95], [1.0, 1.1, 0.9, 1.05, 0.95]
    alone = decide(RATIO, a, b)
    assert alone.verdict == "better" and alone.p_value == pytest.approx(2 / 252)
    family = adjusted([alone] * 8, HOLM)          # 8 x 2/252 > 0.05: 5 runs cannot decide 8 questions
    assert family[0].p_adjusted == pytest.approx(8 * 2 / 252) and not family[0].significant
    assert family[0].verdict == "n too small" and family[0].reps_needed == 6      # 2/924 * 8 < 0.05
    assert "Holm over 8" in family[0].sentence()


@pytest.mark.parametrize("seed", range(3))
def test_margin_tests_agree_with_the_interval(seed):
    """Non-inferiority: p < alpha exactly when the 95 % interval's bound clears the margin."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, 7), rng.normal(0.3, 1, 8)
    _, lo, hi = hodges_lehmann(a, b)
    for margin in np.linspace(-3, 3, 41):
        assert (margin_p(RATIO, a, b, margin, BELOW) < 0.05) == (hi < margin)
        assert (margin_p(RATIO, a, b, margin, ABOVE) < 0.05) == (lo > margin)
    lo_p, hi_p = newcombe_interval(18, 20, 20, 20)
    assert (margin_p("reached_fraction", [1.0] * 18 + [0.0] * 2, [1.0] * 20, -0.2, ABOVE) < 0.05) == (lo_p > -0.2)


def test_alpha_outside_its_range_is_refused():
    from harness.errors import HarnessError
    for bad in (0, 0.6, 1.5, -0.1):
        with pytest.raises(HarnessError, match=r"\(0, 0.5\]"):
            decide(RATIO, [1.0, 2.0], [1.0, 2.0], alpha=bad)
