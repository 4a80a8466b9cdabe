"""The comparison core (no VM): verdicts from the rank test, the Hodges-Lehmann shift and
the effect floor; "n too small" with the repetitions that can decide."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.decide import attainable_p, decide, hodges_lehmann, reps_needed

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
