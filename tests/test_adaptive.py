"""``--until-decided`` on synthetic folders (no VM): repetitions are added only to the arms
whose comparisons are open, one per round, until decided or the limit; what it spent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import BALLOON_STEP, ArmSpec, _run_frames, make_results

from harness.analysis.adaptive import attempted_reps, questions, until_decided
from harness.results import ResultsStore
from harness.results.folder import open_folder

RATIO = "thp_lost_per_ballooned_mib"


def _grower(out: Path, arms: dict[str, ArmSpec], seed: int = 7):
    """run_more for the loop: writes the asked repetitions as a real run would (ResultsStore)."""
    rng = np.random.default_rng(seed)
    asked: list[dict[str, int]] = []

    def run_more(more: dict[str, int]) -> None:
        asked.append(dict(more))
        store = ResultsStore(out)
        for arm, rep in more.items():
            samples, summary = _run_frames(f"{arm}-r{rep}", arm, rep, arms[arm], rng, "kvm")
            store.write_run(f"{arm}-r{rep}", samples, summary, {"run_id": f"{arm}-r{rep}", "arm": arm, "rep": rep})
    return run_more, asked


def test_a_clear_difference_stops_as_soon_as_the_test_can_decide(tmp_path):
    arms = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.0), "same": ArmSpec(ratio=2.0)}
    out = make_results(tmp_path / "r", arms=arms, reps=3)
    run_more, asked = _grower(out, arms)
    result = until_decided(out, run_more, max_reps=8)
    verdicts = {q.arm: d.verdict for q, d in result.final}
    assert verdicts["thp-order"] == "better"                   # decided at 4 runs a side (3 cannot)
    assert asked[0] == {"thp-order": 4, "baseline": 4, "same": 4}   # round 1: every open arm, alternating
    # decided: no more runs of it; the arm equal to the baseline stays open longer, never past the limit
    assert result.spent["thp-order"] == 4 and 4 < result.spent["same"] <= 8
    assert all("thp-order" not in more for more in asked[1:])
    assert "run(s) spent" in result.summary() and "against 24 for --reps 8" in result.summary()


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
