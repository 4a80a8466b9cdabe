"""The decided sentences under the table (issue 26, item 10): one per relative expectation,
saying what the runs decided, with the evidence, and agreeing with `check`."""

from __future__ import annotations

from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.check import check_results
from harness.analysis.claims import decided_sentences
from harness.results.folder import open_folder

CLAIM = {"label": "claim", "arm": "thp-order", "than": "baseline", "step": BALLOON_STEP,
         "metric": "thp_lost_per_ballooned_mib", "op": "<"}
CONTROL = {"label": "control", "arm": "stock", "than": "baseline", "step": BALLOON_STEP,
           "metric": "thp_lost_per_ballooned_mib", "op": "==", "margin": 0.2}
ARMS = {"baseline": ArmSpec(ratio=2.0, noise=0.02), "thp-order": ArmSpec(ratio=1.0, noise=0.02),
        "stock": ArmSpec(ratio=2.0, noise=0.02)}


def _sentences(tmp_path, reps: int) -> tuple[list[str], int]:
    out = make_results(tmp_path / f"r{reps}", ARMS, reps=reps, expect=[CLAIM, CONTROL])
    with open("/dev/null", "w") as sink:
        code = check_results(out, stream=sink)
    return decided_sentences(open_folder(out)), code


def test_enough_runs_decide_the_claim_and_the_control(tmp_path):
    lines, code = _sentences(tmp_path, reps=5)
    text = " ".join(line.strip() for line in lines)
    assert "claim: HOLDS." in text and "control: HOLDS." in text
    assert "n = 5 vs 5" in text and "95% CI" in text and "p = " in text
    assert "equivalence margin 0.20" in text
    assert max(len(line) for line in lines) <= 100
    assert code == 0


def test_too_few_runs_say_undecided_and_how_many_would_decide(tmp_path):
    lines, code = _sentences(tmp_path, reps=3)
    text = " ".join(line.strip() for line in lines)
    assert "claim: UNDECIDED." in text and "n too small" in text
    assert code == 0       # undecided is not a failure without --strict, and says so in check


def test_a_scenario_without_claims_prints_no_sentence(tmp_path):
    out = make_results(tmp_path / "none", ARMS, reps=3)
    assert decided_sentences(open_folder(out)) == []


def test_margin_is_refused_on_an_absolute_expectation(tmp_path):
    import pytest

    from harness.errors import ConfigError
    bad = {**CLAIM, "margin": 0.1}
    del bad["than"]
    bad["value"] = 1.0
    with pytest.raises(ConfigError, match=r"expect\[0\]\.margin: only a relative expectation"):
        make_results(tmp_path / "bad", ARMS, reps=3, expect=[bad])
        check_results(tmp_path / "bad", stream=open("/dev/null", "w"))
