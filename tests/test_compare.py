"""``compare``: medians, change, Mann-Whitney p, the Hodges-Lehmann shift and the decision; DIR:arm; refusals naming the
difference; missing metadata; bad input as one line (no VM)."""

from __future__ import annotations

import json
import math

import pytest
from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.compare import compare
from harness.analysis.decide import mann_whitney
from harness.cli import main
from harness.errors import HarnessError
from harness.results.identity import fingerprint

RATIO = "thp_lost_per_ballooned_mib"          # a described figure (not primary by default)
RETURNED = "thp_lost_per_returned_mib"        # a primary figure


def _row(c, metric=RATIO, arm="thp-order", step=BALLOON_STEP):
    r = c.rows[(c.rows["arm_a"] == arm) & (c.rows["step"] == step) & (c.rows["metric"] == metric)]
    assert len(r) == 1, c.rows
    return r.iloc[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    a = make_results(d / "a", reps=6, seed=1, arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1)})
    b = make_results(d / "b", reps=6, seed=2, arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.6)})
    return a, b


def test_folders_every_arm_step_and_headline_metric(folders):
    a, b = folders
    c = compare(str(a), str(b))
    assert set(c.rows["arm_a"]) == {"baseline", "thp-order"}
    r = _row(c, RETURNED)
    assert r["median_b"] > r["median_a"] and r["change_pct"] > 0
    assert r["role"] == "primary" and r["adjustment"].startswith("Holm over")
    assert r["p_value"] < 0.05 and r["p_adjusted"] < 0.05 and r["significant"] and r["verdict"] == "worse"
    assert r["n_a"] == r["n_b"] == 6
    assert {"reached_fraction", "shrink_fraction", "rss_freed_kib", RATIO} <= set(c.rows["metric"])
    # the same loss per ballooned MiB is described, never a verdict of its own (issue 26: only
    # the primary figures decide; before, every headline figure was a better/worse verdict)
    d = _row(c, RATIO)
    assert d["role"] == "described" and d["verdict"] == "higher" and d["adjustment"].startswith("Benjamini")
    assert not c.rows[c.rows["role"] == "described"]["verdict"].isin(["better", "worse"]).any()


def test_a_negligible_change_is_measured_but_not_a_finding(folders, tmp_path):
    """B is A's runs (same seed) with the THP ratio 0.2 % higher: the change is measured as
    such, and is neither significant nor a verdict; the arm left alone shows no change at all.
    (A folder against itself would show 0 by construction.)"""
    a, _ = folders
    b = make_results(tmp_path / "b", reps=6, seed=1,
                     arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1 * 1.002)})
    c = compare(str(a), str(b))
    r = _row(c)
    assert r["median_b"] > r["median_a"] and r["change_pct"] == pytest.approx(0.2, abs=1e-6)
    assert r["p_value"] > 0.5 and not r["significant"] and r["verdict"] not in ("better", "worse")
    assert not c.rows["significant"].any() and not c.rows["verdict"].isin(["better", "worse"]).any()
    base = c.rows[c.rows["arm_a"] == "baseline"]
    assert (base["change_pct"].dropna() == 0).all() and (base["median_a"] == base["median_b"]).all()


def test_two_arms_of_one_folder(folders):
    a, _ = folders
    c = compare(f"{a}:baseline", f"{a}:thp-order")
    r = _row(c, RETURNED, arm="baseline")
    assert r["arm_b"] == "thp-order" and r["median_b"] < r["median_a"] and r["significant"]
    assert r["verdict"] == "better"


def test_n_too_small_gives_no_p_value(tmp_path):
    a = make_results(tmp_path / "a", reps=1)
    b = make_results(tmp_path / "b", reps=1, seed=3)
    r = _row(compare(str(a), str(b)))
    assert math.isnan(r["p_value"]) and r["verdict"] == "n too small" and not r["significant"]
    assert r["reps_needed"] == 4        # 4 against 4 can reach p < 0.05 (2/70), 3 against 3 cannot


def test_mann_whitney_helper():
    assert mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])[0] < 0.05
    assert mann_whitney([1, 2, 3], [1, 2, 3])[0] > 0.5
    p, note = mann_whitney([1.0], [2.0, 3.0])
    assert math.isnan(p) and note == "n too small"


@pytest.mark.parametrize("kw, named", [
    ({"qemu_sha": "x" * 64}, "qemu patched sha256"),
    ({"module_sha": "y" * 64}, "module patched sha256"),
    ({"accel": "tcg"}, "accelerator"),
    ({"name": "other"}, "scenario"),
])
def test_different_builds_or_scenarios_are_refused_naming_the_difference(tmp_path, kw, named):
    a = make_results(tmp_path / "a", reps=2)
    b = make_results(tmp_path / "b", reps=2, **kw)
    with pytest.raises(HarnessError) as e:
        compare(str(a), str(b))
    assert named in str(e.value) and "--force" in str(e.value)
    c = compare(str(a), str(b), force=True)
    assert not c.rows.empty and any(named in n for n in c.notes)


def test_missing_metadata_keys_do_not_crash(tmp_path):
    a = make_results(tmp_path / "a", reps=2)
    b = make_results(tmp_path / "b", reps=2)
    (b / "metadata.json").write_text(json.dumps({"created": "x"}))
    c = compare(str(a), str(b))      # scenario.toml still agrees; builds cannot be checked: said so
    assert not c.rows.empty and any("cannot check" in n for n in c.notes)
    assert fingerprint({}) == {} and fingerprint({"build_manifest": None, "guest_modules": {"x": None}}) == {}


def test_bad_input_is_one_line(tmp_path, folders, capsys):
    a, _ = folders
    with pytest.raises(HarnessError, match="no arm named 'nope'.*baseline, thp-order"):
        compare(f"{a}:nope", str(a))
    with pytest.raises(HarnessError, match="not a results folder"):
        compare(str(tmp_path), str(a))
    assert main(["compare", str(tmp_path / "missing"), str(a)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("balloon-harness: error:") and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_prints_the_table_with_decisions(folders, capsys, tmp_path):
    a, b = folders
    assert main(["compare", str(a), str(b), "--alpha", "0.05"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("thp-order") and RETURNED in l)
    assert line.rstrip().endswith("worse") and ".." in line        # decision, and the shift's interval
    assert "Mann-Whitney" in out and "Hodges-Lehmann" in out and "Holm" in out
    line = next(l for l in out.splitlines() if l.startswith("thp-order") and RATIO in l)
    assert line.rstrip().endswith("(higher)")                      # described: a direction, no verdict
    # 3 runs against 3 (the default reproduce): a decision or how many runs could make one
    c3 = make_results(tmp_path / "c3", reps=3, arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1)})
    assert main(["compare", f"{c3}:baseline", f"{c3}:thp-order"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("baseline") and RATIO in l)
    assert "n too small: 4 reps/arm" in line                      # one test at alpha: 4 runs can
    line = next(l for l in out.splitlines() if l.startswith("baseline") and RETURNED in l)
    assert "n too small: 5 reps/arm" in line     # Holm over 3 primary figures: p < 0.05/3 needs 5 runs


# --- what cannot be compared, and what decides (issue 26) -------------------------------------

def test_a_jobs_2_folder_against_a_jobs_1_folder_is_refused(tmp_path):
    a = make_results(tmp_path / "a", reps=4)
    b = make_results(tmp_path / "b", reps=4, jobs=2)
    with pytest.raises(HarnessError, match=r"guests at once \(--jobs\) differs.*--force"):
        compare(str(a), str(b))
    c = compare(str(a), str(b), force=True)
    assert any("--jobs 1, 2" in n and "host-wide figures left out" in n and "host_ahp_after_kib" in n
               for n in c.notes)
    assert "host_ahp_after_kib" not in set(c.rows["metric"]) and "thp_split_pmd_delta" not in set(c.rows["metric"])
    with pytest.raises(HarnessError, match="--jobs"):
        from harness.results.merge import merge_results
        merge_results(tmp_path / "m", [a, b])


def test_jobs_of_a_folder_older_than_the_key():
    from harness.results.identity import jobs_of
    serial = [{"started": 0.0, "wall_seconds": 30.0}, {"started": 31.0, "wall_seconds": 30.0}]
    overlapping = [{"started": 0.0, "wall_seconds": 30.0}, {"started": 10.0, "wall_seconds": 30.0}]
    assert jobs_of({"jobs": 2}, overlapping) == "2"
    assert jobs_of({}, serial) == "1" and jobs_of({}, overlapping) is None and jobs_of({}, [{}]) is None


def test_old_folders_without_jobs_say_it_is_unknown(tmp_path):
    a = make_results(tmp_path / "a", reps=2, jobs=None)      # synthetic runs overlap in time
    b = make_results(tmp_path / "b", reps=2, jobs=None)
    c = compare(str(a), str(b))
    assert any("cannot check" in n and "--jobs" in n and "unknown" in n for n in c.notes)


def test_other_hosts_leave_the_host_wide_figures_out(tmp_path):
    a = make_results(tmp_path / "a", reps=4)
    b = make_results(tmp_path / "b", reps=4, host="otherhost")
    c = compare(str(a), str(b))
    assert any("different hosts (testhost, otherhost)" in n for n in c.notes)
    assert "host_ahp_after_kib" not in set(c.rows["metric"]) and RETURNED in set(c.rows["metric"])


def test_the_scenario_names_the_figures_that_decide(tmp_path):
    a = make_results(tmp_path / "a", reps=6, arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1)})
    text = (a / "scenario.toml").read_text()
    (a / "scenario.toml").write_text(f'primary = ["{RATIO}", "reached"]\n' + text)
    c = compare(f"{a}:baseline", f"{a}:thp-order")
    assert c.primary == [RATIO, "reached_fraction"]
    r = _row(c, RATIO, arm="baseline")
    assert r["role"] == "primary" and r["verdict"] == "better" and r["adjustment"] == "Holm over 2"
    assert _row(c, RETURNED, arm="baseline")["role"] == "described"
    (a / "scenario.toml").write_text('primary = ["bogus"]\n' + text)
    with pytest.raises(HarnessError, match=r"scenario.toml: primary: unknown figure 'bogus'"):
        compare(f"{a}:baseline", f"{a}:thp-order")


def test_figures_asked_for_decide_when_none_of_them_is_primary(folders):
    a, b = folders
    only = compare(str(a), str(b), metrics=[RATIO])
    assert set(only.rows["metric"]) == {RATIO} and set(only.rows["role"]) == {"primary"}
    assert _row(only, RATIO)["verdict"] == "worse"
    mixed = compare(str(a), str(b), metrics=[RATIO, RETURNED])
    assert _row(mixed, RATIO)["role"] == "described" and _row(mixed, RETURNED)["role"] == "primary"


def test_a_figure_read_twice_is_compared_once(folders):
    a, b = folders
    c = compare(str(a), str(b))
    after = c.rows[(c.rows["step"] == "after") & (c.rows["metric"] == "host_ahp_after_kib")]
    assert after.empty and any("'after' holds the values of step" in n for n in c.notes)


def test_equal_arms_are_never_better_or_worse_on_many_figures(tmp_path):
    """Five identical arms: every figure of every arm and step compared, none decided better or worse
    (one folder; the rate over many folders is benchmarks/calibration.py's)."""
    arms = {f"arm{i}": ArmSpec(ratio=2.0, noise=0.1) for i in range(5)}
    a = make_results(tmp_path / "a", reps=5, arms=arms, seed=11)
    b = make_results(tmp_path / "b", reps=5, arms=arms, seed=12)
    c = compare(str(a), str(b))
    assert len(c.rows) > 40 and not c.rows["verdict"].isin(["better", "worse"]).any()
