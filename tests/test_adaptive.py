"""``--until-decided`` on synthetic folders (no VM): repetitions are added only to the arms
whose comparisons are open, one per round, until decided or the limit; what it spent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic import BALLOON_STEP, ArmSpec, _run_frames, make_results

from harness.analysis.adaptive import attempted_reps, questions, until_decided
from harness.analysis.sequential import best_p, exact_p, family_share, pocock_boundary
from harness.errors import HarnessError
from harness.results import ResultsStore, layout
from harness.results.folder import open_folder
from harness.results.store import write_frame, write_text

RATIO = "thp_lost_per_ballooned_mib"


def _grower(out: Path, arms: dict[str, ArmSpec], seed: int = 7):
    """run_more for the loop: writes the asked repetitions as a real run would (ResultsStore).

    The files ResultsStore.write_run writes, in its order (frames, then the completion mark),
    with the combined frames rebuilt once at the end of the round rather than after each run:
    the loop reads the folder only when run_more returns, so it sees the same folder, and the
    round's n re-reads of every run (n^2 Parquet reads over a loop) were most of these tests' CPU."""
    rng = np.random.default_rng(seed)
    asked: list[dict[str, int]] = []

    def run_more(more: dict[str, int]) -> None:
        asked.append(dict(more))
        store = ResultsStore(out)
        for arm, rep in more.items():
            run_id = f"{arm}-r{rep}"
            samples, summary = _run_frames(run_id, arm, rep, arms[arm], rng, "kvm")
            d = store.run_dir(run_id)
            d.mkdir(parents=True, exist_ok=True)
            for name, frame in ((layout.SAMPLES, samples), (layout.SUMMARY, summary)):
                write_frame(frame, d / name)
            write_text(d / layout.RUN_DONE, json.dumps({"run_id": run_id, "arm": arm, "rep": rep}, indent=2,
                                                       sort_keys=True) + "\n")
        store.combine()
    return run_more, asked


def test_a_clear_difference_stops_as_soon_as_the_test_can_decide(tmp_path):
    arms = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.0), "same": ArmSpec(ratio=2.0)}
    out = make_results(tmp_path / "r", arms=arms, reps=3)
    run_more, asked = _grower(out, arms)
    result = until_decided(out, run_more, max_reps=8)
    verdicts = {q.arm: d.verdict for q, d in result.final}
    assert verdicts["thp-order"] == "better"
    assert asked[0] == {"thp-order": 4, "baseline": 4, "same": 4}   # round 1: every open arm, alternating
    # 3 arms, 2 questions: each gets half the family's alpha, spread over its looks
    (q, b), = [(q, b) for q, b in result.boundaries.items() if q.arm == "thp-order"]
    assert b.alpha == pytest.approx(0.025) and b.thresholds[0] < 0.025
    # fully separated runs cross at the first look whose best attainable p is under the boundary
    first = min(n for n in b.looks if best_p(n, n) < b.threshold_at(n))
    assert result.spent["thp-order"] == first == result.decided_at[q]
    # decided: no more runs of it; the arm equal to the baseline stays open longer, never past the limit
    assert first < result.spent["same"] <= 8
    assert all("thp-order" not in more for more in asked[first - 3:])
    text = result.summary()
    assert "run(s) spent" in text and "against 24 for --reps 8" in text
    assert "Pocock-type boundary at alpha 0.025" in text and f"n={first}: p<" in text and "(cannot reach)" in text


def test_a_decided_question_stays_decided(tmp_path):
    """Frozen at the look that decided it: the later runs of its (shared) baseline do not re-decide it."""
    arms = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.0), "same": ArmSpec(ratio=2.0, noise=0.3)}
    out = make_results(tmp_path / "r", arms=arms, reps=3)
    run_more, _ = _grower(out, arms, seed=3)
    result = until_decided(out, run_more, max_reps=9)
    (q, d), = [(q, d) for q, d in result.final if q.arm == "thp-order"]
    assert result.spent["baseline"] > result.decided_at[q]          # the baseline went on for the other question
    assert d.n_a == d.n_b == result.decided_at[q]                   # ... the decision kept its own runs
    assert d.alpha == result.boundaries[q].threshold_at(d.n_a)


def test_a_round_that_adds_no_run_ends_with_one_line(tmp_path):
    arms = {"baseline": ArmSpec(ratio=2.0, noise=0.3), "twin": ArmSpec(ratio=2.0, noise=0.3)}
    out = make_results(tmp_path / "r", arms=arms, reps=3)

    def boots_fail(more: dict[str, int]) -> None:     # what a failing boot leaves: error.txt only
        for arm, rep in more.items():
            d = out / "runs" / f"{arm}-r{rep}"
            d.mkdir(parents=True)
            (d / "error.txt").write_text("BootTimeout: the guest never answered SSH\n")

    for run_more in (boots_fail, lambda more: None):              # failed boots; a build that wrote nothing
        with pytest.raises(HarnessError) as e:
            until_decided(out, run_more, max_reps=10)
        assert "none finished" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("max_reps", [1, 31])
def test_max_reps_is_bounded(tmp_path, max_reps):
    out = make_results(tmp_path / "r", reps=2)
    with pytest.raises(HarnessError, match="--max-reps"):
        until_decided(out, lambda more: None, max_reps=max_reps)


def test_exact_p_is_scipys_exact_table():
    # published exact two-sided values: 3 vs 3 fully separated 0.1 (2/20); 5 vs 5: 2/252
    assert exact_p(np.array([[1.0, 2, 3]]), np.array([[4.0, 5, 6]]))[0] == pytest.approx(0.1)
    assert exact_p(np.arange(5.0)[None], np.arange(5.0, 10)[None])[0] == pytest.approx(2 / 252)
    assert best_p(4, 4) == pytest.approx(2 / 70)
    from scipy.stats import mannwhitneyu
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 9)), rng.random((50, 9))
    assert np.allclose(exact_p(x, y), mannwhitneyu(x, y, axis=1, method="exact").pvalue)


def test_the_boundary_holds_alpha_and_tightens_with_more_looks():
    b10, b20 = pocock_boundary(0.05, 3, 10), pocock_boundary(0.05, 3, 20)
    assert b10.crossing <= 0.05 and b20.crossing <= 0.05
    assert b20.threshold_at(10) < b10.threshold_at(10) < 0.05        # more looks, a stricter threshold
    assert pocock_boundary(0.05, 3, 10) is b10                       # cached, and deterministic:
    assert pocock_boundary.__wrapped__(0.05, 3, 10) == b10
    assert pocock_boundary(0.05, 10, 10).thresholds == (0.05,)       # one look: the plain test
    assert family_share(0.05, 2) == 0.025


def test_the_limit_ends_an_undecidable_comparison_and_says_so(tmp_path):
    arms = {"baseline": ArmSpec(ratio=2.0, noise=0.3), "twin": ArmSpec(ratio=2.0, noise=0.3)}
    out = make_results(tmp_path / "r", arms=arms, reps=2)
    run_more, asked = _grower(out, arms)
    result = until_decided(out, run_more, max_reps=5)
    assert attempted_reps(out) == {"baseline": 5, "twin": 5} and len(asked) == 3
    assert result.open and "open at the limit" in result.summary()


def test_questions_come_from_the_scenarios_relative_expectations(tmp_path):
    expect = [{"arm": "thp-order", "step": BALLOON_STEP, "metric": RATIO, "op": "<", "than": "baseline"},
              {"arm": "thp-order", "step": BALLOON_STEP, "metric": "reached_fraction", "op": ">=", "value": 0.5}]
    out = make_results(tmp_path / "r", reps=2, expect=expect)
    qs = questions(open_folder(out))
    assert [(q.arm, q.other, q.metric) for q in qs] == [("thp-order", "baseline", RATIO)]
    bare = make_results(tmp_path / "b", reps=2)
    assert [(q.arm, q.other, q.step) for q in questions(open_folder(bare))] == [("thp-order", "baseline", BALLOON_STEP)]


def test_decided_at_the_start_runs_nothing(tmp_path):
    out = make_results(tmp_path / "r", reps=6)
    result = until_decided(out, lambda more: pytest.fail(f"nothing to run, asked {more}"), max_reps=10)
    assert not result.open and result.spent == {"baseline": 6, "thp-order": 6}
