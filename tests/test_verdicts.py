"""Expectations and ``check``: parsing refuses what is wrong naming file, key and reason; exit
codes 0 / 1 / 2; JUnit and Markdown for a CI page; options after a run (no VM)."""

from __future__ import annotations

import argparse
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.check import check_results
from harness.analysis.expectations import Expectation, parse_expectations
from harness.analysis.verdicts import FAIL, PASS, UNDECIDED, evaluate, evaluate_all
from harness.cli import analysis as cli_analysis
from harness.cli import main
from harness.errors import ConfigError
from harness.results import load_results

RATIO = "thp_lost_per_ballooned_mib"
ARMS = ["baseline", "thp-order"]
STEPS = ["usemem", BALLOON_STEP]
REACHED = {"arm": "thp-order", "step": BALLOON_STEP, "metric": "reached_fraction", "op": ">=", "value": 0.8}
BETTER = {"arm": "thp-order", "step": BALLOON_STEP, "metric": RATIO, "op": "<", "than": "baseline"}


# --- parsing ------------------------------------------------------------------------------

def test_parse_both_forms():
    exps = parse_expectations("s.toml", [REACHED, BETTER], ARMS, STEPS)
    assert exps[0] == Expectation("thp-order", BALLOON_STEP, "reached_fraction", ">=", value=0.8)
    assert exps[1].than == "baseline" and exps[1].value is None and exps[1].test == "mannwhitney"
    assert exps[1].alpha == 0.05 and "thp-order" in exps[1].name
    assert parse_expectations("s.toml", None, ARMS, STEPS) == ()


@pytest.mark.parametrize("change, key, reason", [
    ({"arm": "nope"}, "arm", "no arm named 'nope'"),
    ({"step": "balloon 1"}, "step", "no step labelled"),
    ({"metric": "bogus"}, "metric", "unknown metric"),
    ({"metric": "outcome"}, "metric", "not a number"),
    ({"op": "=>"}, "op", "must be one of"),
    ({"colour": "red"}, "colour", "unknown key"),
    ({"than": "baseline"}, "value", "exactly one of value"),
    ({"value": "high"}, "value", "must be a number"),
    ({"value": True}, "value", "must be a number"),
    ({"alpha": 1.5}, "alpha", "must be in (0, 0.5]"),
    ({"alpha": 0.6}, "alpha", "must be in (0, 0.5]"),
    ({"alpha": 0}, "alpha", "must be in (0, 0.5]"),
    ({"alpha": "low"}, "alpha", "must be a number"),
    ({"test": "t-test"}, "test", "must be one of"),
])
def test_bad_expectations_are_refused_naming_file_key_reason(change, key, reason):
    raw = {**REACHED, **change}
    with pytest.raises(ConfigError) as e:
        parse_expectations("scen.toml", [BETTER, raw], ARMS, STEPS)
    assert str(e.value).startswith(f"scen.toml: expect[1].{key}: ") and reason in str(e.value)


def test_relative_needs_another_known_arm():
    with pytest.raises(ConfigError, match=r"expect\[0\]\.than: no arm named 'x'"):
        parse_expectations("s", [{**BETTER, "than": "x"}], ARMS, STEPS)
    with pytest.raises(ConfigError, match=r"expect\[0\]\.than: must name another arm"):
        parse_expectations("s", [{**BETTER, "than": "thp-order"}], ARMS, STEPS)
    missing = {k: v for k, v in BETTER.items() if k != "op"}
    with pytest.raises(ConfigError, match=r"expect\[0\]\.op: required key is missing"):
        parse_expectations("s", [missing], ARMS, STEPS)
    with pytest.raises(ConfigError, match="s: expect: must be a list"):
        parse_expectations("s", {"arm": "x"}, ARMS, STEPS)


# --- exit codes, JUnit --------------------------------------------------------------------

def _junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite") if root.tag == "testsuites" else [root]
    assert len(suites) == 1
    return suites[0]


def test_exit_0_when_every_expectation_holds(tmp_path):
    out = make_results(tmp_path / "r", expect=[REACHED, BETTER])
    junit = tmp_path / "junit.xml"
    assert check_results(out, junit=junit) == 0
    suite = _junit(junit)
    cases = suite.findall("testcase")
    assert len(cases) == 3       # two expectations + "every run produced data"
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert not suite.findall(".//failure") and not suite.findall(".//error")


def test_exit_1_when_an_expectation_fails_with_measured_values(tmp_path, capsys):
    out = make_results(tmp_path / "r", expect=[REACHED, BETTER],
                       arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1, shrink=0.7)})
    junit = tmp_path / "junit.xml"
    assert check_results(out, junit=junit) == 1
    failures = _junit(junit).findall(".//failure")
    assert len(failures) == 1
    msg = failures[0].get("message")
    assert "reached 0/5" in msg and ">= 0.8" in msg
    assert "FAIL" in capsys.readouterr().out


def test_exit_2_for_a_failed_run_even_when_an_expectation_also_fails(tmp_path):
    out = make_results(tmp_path / "r", expect=[REACHED], failed=("baseline-r2",),
                       arms={"baseline": ArmSpec(), "thp-order": ArmSpec(ratio=1.1, shrink=0.5)})
    junit = tmp_path / "junit.xml"
    assert check_results(out, junit=junit) == 2
    suite = _junit(junit)
    errors = suite.findall(".//error")
    assert len(errors) == 1 and "baseline-r2" in errors[0].get("message")
    assert suite.get("errors") == "1" and suite.get("failures") == "1"


def test_exit_2_when_an_arm_needed_has_no_rows(tmp_path):
    out = make_results(tmp_path / "r", reps=2, expect=[BETTER], missing=("baseline-r1", "baseline-r2"))
    junit = tmp_path / "junit.xml"
    assert check_results(out, junit=junit) == 2
    err = _junit(junit).findall(".//error")
    assert len(err) == 1 and "baseline" in err[0].get("message")


def test_nan_figure_is_a_failure_not_infrastructure(tmp_path):
    out = make_results(tmp_path / "r", reps=3,
                       arms={"baseline": ArmSpec(), "thp-order": ArmSpec(shrink=0.0)})  # ballooned nothing
    e = Expectation("thp-order", BALLOON_STEP, RATIO, "<", value=1.5)
    v = evaluate(e, load_results(out).summary)
    assert v.status == FAIL and "not measured" in v.message
    assert check_results(out, expectations=[e]) == 1


def test_relative_semantics(tmp_path):
    s = load_results(make_results(tmp_path / "r", reps=5,
                                  arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1)})).summary
    ev = lambda **kw: evaluate(Expectation("thp-order", BALLOON_STEP, RATIO, than="baseline", **kw), s)  # noqa: E731
    assert ev(op="<").status == PASS and ev(op="<=").status == PASS and ev(op="!=").status == PASS
    assert ev(op=">").status == FAIL and ev(op=">=").status == FAIL and ev(op="==").status == FAIL
    assert ev(op="<").p_value < 0.05 and ev(op="<").measured < ev(op="<").other


def test_one_repetition_needs_test_none(tmp_path):
    s = load_results(make_results(tmp_path / "r", reps=1)).summary
    strict = evaluate(Expectation("thp-order", BALLOON_STEP, RATIO, "<", than="baseline"), s)
    # undecided, not failed: one run a side can show nothing either way (issue 26: "n too small"
    # is said, never a silent pass, and is a failure only with --strict)
    assert strict.status == UNDECIDED and "n too small" in strict.message and math.isnan(strict.p_value)
    medians = evaluate(Expectation("thp-order", BALLOON_STEP, RATIO, "<", than="baseline", test="none"), s)
    assert medians.status == PASS


def test_no_expectations_only_failed_runs_count(tmp_path, capsys):
    assert check_results(make_results(tmp_path / "ok", reps=1)) == 0
    capsys.readouterr()
    junit = tmp_path / "junit.xml"
    assert check_results(make_results(tmp_path / "bad", reps=1, failed=("thp-order-r1",)), junit=junit) == 2
    assert "thp-order-r1" in capsys.readouterr().out + junit.read_text()


# --- Markdown -----------------------------------------------------------------------------

def test_markdown_has_the_table_and_relative_links_to_plots(tmp_path):
    out = make_results(tmp_path / "r", reps=1, expect=[REACHED])
    md = tmp_path / "ci" / "summary.md"
    assert check_results(out, markdown=md) == 0
    text = md.read_text()
    assert "| arm | step | n | reached |" in text and "✅" in text
    links = [l.split("](", 1)[1].rstrip(")") for l in text.splitlines() if l.startswith("![")]
    assert links and all(not Path(l).is_absolute() and (md.parent / l).is_file() for l in links)


# --- command line -------------------------------------------------------------------------

def test_cli_check_bad_input_is_infrastructure(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 2
    assert "not a results folder" in capsys.readouterr().err
    out = make_results(tmp_path / "r", reps=1)
    assert main(["check", str(out), "--against-history", str(tmp_path / "h"), "--last", "0"]) == 2
    err = capsys.readouterr().err
    assert "--last must be at least 1" in err and "Traceback" not in err


def test_cli_check_refuses_a_bad_expectation_in_the_scenario(tmp_path, capsys):
    out = make_results(tmp_path / "r", reps=1, expect=[{**REACHED, "arm": "ghost"}])
    assert main(["check", str(out)]) == 2
    assert "expect[0].arm: no arm named 'ghost'" in capsys.readouterr().err


def _run_args(**kw) -> cli_analysis.AfterRun:
    p = argparse.ArgumentParser()
    cli_analysis.add_run_options(p)
    args = p.parse_args([])
    for k, v in kw.items():
        setattr(args, k, v)
    return cli_analysis.AfterRun.from_args(args)


def test_after_run_exit_codes_and_history(tmp_path):
    ok = make_results(tmp_path / "ok", reps=2, expect=[REACHED])
    assert cli_analysis.after_run(_run_args(), ok, 0) == 0
    assert cli_analysis.after_run(_run_args(), ok, 1) == 1           # no --check: the run's own code
    assert cli_analysis.after_run(_run_args(check=True), ok, 0) == 0
    assert cli_analysis.after_run(_run_args(check=True), ok, 1) == 2   # failed runs: infrastructure
    junit = tmp_path / "j.xml"
    assert cli_analysis.after_run(_run_args(junit=str(junit)), ok, 0) == 0 and junit.exists()
    hist = tmp_path / "hist"
    assert cli_analysis.after_run(_run_args(check=True, history=str(hist)), ok, 0) == 0
    assert list((hist / "summary").rglob("*.parquet"))
    notahistory = tmp_path / "notahistory"
    notahistory.mkdir()
    (notahistory / "important.txt").write_text("x")
    assert cli_analysis.after_run(_run_args(check=True, history=str(notahistory)), ok, 0) == 2


# --- rules that say what they can decide (issue 26) -----------------------------------------

SAME_ARMS = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=2.0)}


def _exp(op: str, metric: str = RATIO, step: str = BALLOON_STEP, **kw) -> Expectation:
    return Expectation("thp-order", step, metric, op, than="baseline", **kw)


def test_three_runs_cannot_show_not_worse_and_say_so(tmp_path, capsys):
    """Before, <= passed whenever nothing was significant: at 3 runs always."""
    out = make_results(tmp_path / "r", reps=3, arms=SAME_ARMS,
                       expect=[{**BETTER, "op": "<="}])
    v = evaluate_all([_exp("<=")], load_results(out).summary)[0]
    assert v.status == UNDECIDED and "n too small" in v.message and v.procedure == "non-inferiority"
    junit, md = tmp_path / "j.xml", tmp_path / "s.md"
    assert check_results(out, junit=junit, markdown=md) == 0
    text = capsys.readouterr().out
    assert "UNDECIDED" in text and "1 undecided" in text and "--strict" in text
    suite = _junit(junit)
    assert suite.get("skipped") == "1" and suite.findall(".//skipped")[0].get("message").startswith("undecided")
    assert "❔ undecided" in md.read_text()
    assert check_results(out, junit=junit, strict=True) == 1
    assert _junit(junit).findall(".//failure")[0].get("type") == "undecided"
    assert main(["check", str(out), "--strict"]) == 1


def test_equivalence_and_non_inferiority_pass_only_when_the_interval_shows_them(tmp_path):
    tight = {"baseline": ArmSpec(ratio=2.0, noise=0.005), "thp-order": ArmSpec(ratio=2.0, noise=0.005)}
    s = load_results(make_results(tmp_path / "eq", reps=8, arms=tight)).summary
    eq, ne = evaluate(_exp("=="), s), evaluate(_exp("!="), s)
    assert eq.status == PASS and eq.procedure == "equivalence" and eq.p_adjusted < 0.05
    assert ne.status == FAIL                              # equal within the floor: no difference
    assert evaluate(_exp("<="), s).status == PASS and evaluate(_exp(">="), s).status == PASS
    assert evaluate(_exp("<"), s).status == FAIL          # shown within the floor: cannot be lower by it
    wide = {"baseline": ArmSpec(ratio=2.0, noise=0.3), "thp-order": ArmSpec(ratio=2.0, noise=0.3)}
    s = load_results(make_results(tmp_path / "wide", reps=8, arms=wide)).summary
    v = evaluate(_exp("=="), s)
    assert v.status == UNDECIDED and "interval allows both" in v.message


def test_the_exit_code_is_holm_over_the_expectations(tmp_path):
    """One clear <, alone, passes at 5 runs (p = 2/252); eight at once need p < 0.05/8, which
    5 runs cannot give: each is undecided, saying how many runs can decide."""
    s = load_results(make_results(tmp_path / "r", reps=5)).summary
    metrics = [RATIO, "thp_lost_per_returned_mib", "thp_lost_kib", "host_ahp_after_kib"]
    alone = evaluate(_exp("<", metrics[0]), s)
    assert alone.status == PASS and alone.p_value == pytest.approx(2 / 252)
    exps = [_exp(op, m) for m in metrics for op in ("<", "!=")]
    judged = evaluate_all(exps, s)
    assert {v.status for v in judged} == {UNDECIDED}
    assert all("n too small: 6 runs per arm" in v.message and "over 8 expectations" in v.message for v in judged)
    assert "Holm" in judged[0].message


def test_a_figure_read_twice_is_tested_once(tmp_path):
    """host_ahp_after_kib after the balloon step and at the measure step that follows it are
    the same readings: one test, and the family counts it once."""
    s = load_results(make_results(tmp_path / "r", reps=5)).summary
    twice = evaluate_all([_exp(">", "host_ahp_after_kib"), _exp(">", "host_ahp_after_kib", step="after")], s)
    assert twice[0].status == twice[1].status == PASS and "tested once" in twice[1].message
    assert "Holm" not in twice[0].message          # a family of one


def test_yes_no_expectations_use_the_proportion_test(tmp_path):
    out = make_results(tmp_path / "r", reps=3,
                       arms={"baseline": ArmSpec(), "thp-order": ArmSpec(shrink=0.5)})
    v = evaluate(_exp("<", "reached_fraction"), load_results(out).summary)
    assert v.status == PASS and "Boschloo" in v.message and v.p_value == pytest.approx(1 / 32, rel=1e-6)


def test_alpha_is_checked_everywhere(tmp_path, capsys):
    out = make_results(tmp_path / "r", reps=1)
    assert main(["check", str(out), "--alpha", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--alpha must be in (0, 0.5]" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(out), str(out), "--alpha", "0.6"]) == 1
    err = capsys.readouterr().err
    assert "--alpha must be in (0, 0.5]" in err and len(err.strip().splitlines()) == 1


def test_strict_after_a_run_implies_check(tmp_path):
    after = _run_args(strict=True)
    assert after.check and after.strict
    out = make_results(tmp_path / "r", reps=3, arms=SAME_ARMS, expect=[{**BETTER, "op": "<="}])
    assert cli_analysis.after_run(after, out, 0) == 1
    assert cli_analysis.after_run(_run_args(check=True), out, 0) == 0
