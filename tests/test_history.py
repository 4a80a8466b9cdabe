"""History: a Hive-partitioned Parquet dataset of every night; trend per night with the build
hashes that changed; tonight against the last nights; refusals (no VM)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.changepoints import e_divisive
from harness.analysis.check import check_results
from harness.analysis.groups import run_values
from harness.analysis.history import against_history, history_trend, holm
from harness.analysis.history_render import format_history_check, plot_trend
from harness.analysis.history_store import append_history, load_history
from harness.cli import main
from harness.errors import HarnessError
from harness.results.folder import open_folder

RATIO = "thp_lost_per_ballooned_mib"
NIGHTS = [("2024-05-01", 1.1, "q"), ("2024-05-02", 1.1, "q"), ("2024-05-03", 1.8, "z")]


def _night(d, i, day, ratio, sha, reps=5, name="syn"):
    return make_results(d / f"nightly-{day}", reps=reps, seed=i, name=name, created=f"{day}T02:00:00+0000",
                        arms={"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=ratio)},
                        qemu_sha=sha * 64)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    d = tmp_path_factory.mktemp("hist")
    folders = [_night(d, i, *n) for i, n in enumerate(NIGHTS)]
    for f in folders:
        assert append_history(f, d / "history") is not None
    return d / "history", folders


def test_dataset_is_hive_partitioned_and_readable_by_pandas(history):
    h, folders = history
    files = sorted((h / "summary").rglob("*.parquet"))
    assert len(files) == 3
    rel = files[0].relative_to(h / "summary").parts
    assert rel[0] == "scenario=syn" and rel[1] == "host=testhost" and rel[2] == "date=2024-05-01"
    assert rel[3] == f"{folders[0].name}.parquet"
    assert len(list((h / "metadata").rglob("*.json"))) == 3
    df = pd.read_parquet(h / "summary")
    assert {"scenario", "host", "date", "arm", "step", RATIO, "folder"} <= set(df.columns)
    assert df["folder"].nunique() == 3
    assert not [p for p in h.rglob(".*")]           # no temporary file left behind


def test_appending_twice_does_not_duplicate(history, tmp_path):
    h, folders = history
    before = len(load_history(h))
    append_history(folders[0], h)
    assert len(load_history(h)) == before


def test_three_nights_give_a_three_line_trend_and_a_png(history, tmp_path):
    h, _ = history
    png = tmp_path / "trend.png"
    t = history_trend(h, metric=RATIO, arm="thp-order")
    plot_trend(t, png)
    assert list(t.table["date"]) == [n[0] for n in NIGHTS]
    assert (t.table["n"] == 5).all()
    assert t.table["median"].iloc[2] > t.table["median"].iloc[1]          # the third night got worse
    assert t.table["changed"].iloc[:2].tolist() == ["", ""]
    assert "qemu patched sha256" in t.table["changed"].iloc[2]            # ... with a new QEMU build
    assert (t.table["q1"] <= t.table["median"]).all() and (t.table["median"] <= t.table["q3"]).all()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(history_trend(h, metric=RATIO).table) == 6                 # both arms: 3 nights each


# Eight nights of thp-order: five around 1.1 that drift from night to night (as much as the
# runs of one night spread), then a step to about 1.8 from the sixth night on.
DRIFT = [1.10, 1.17, 1.04, 1.13, 1.07, 1.80, 1.86, 1.77]
DAYS = [f"2024-06-{d:02d}" for d in range(1, len(DRIFT) + 1)]


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """(the history of nights 1-5, of all 8 nights, the 8 folders)."""
    d = tmp_path_factory.mktemp("nightly")
    folders = [_night(d, 10 + i, day, r, "q") for i, (day, r) in enumerate(zip(DAYS, DRIFT))]
    for i, f in enumerate(folders):
        append_history(f, d / "all")
        if i < 5:
            append_history(f, d / "steady")
    return d / "steady", d / "all", folders


def _row(c, arm="thp-order", metric=RATIO):
    r = c.rows[(c.rows["arm"] == arm) & (c.rows["metric"] == metric) & (c.rows["step"] == BALLOON_STEP)]
    assert len(r) == 1, c.rows
    return r.iloc[0]


def test_against_history_flags_a_regression_not_an_improvement(nightly):
    steady, _, folders = nightly
    worse = against_history(folders[5], steady, last=5)
    assert worse.nights == DAYS[:5]
    row = _row(worse)
    assert row["n_history"] == 5 and row["verdict"] == "worse" and row["regression"], row
    assert not (worse.regressions["arm"] == "baseline").any()
    assert check_results(folders[5], against_history=steady, last=5) == 1
    text = format_history_check(worse)
    assert "one value per night" in text and "REGRESSION" in text


def test_night_to_night_drift_is_expected_noise(nightly, tmp_path):
    """A night within the past nights' drift is no regression, though its runs differ
    from the pooled runs of those nights (which a run-level test would call worse)."""
    steady, _, folders = nightly
    tonight = _night(tmp_path, 40, "2024-06-06", 1.16, "q")
    c = against_history(tonight, steady, last=5)
    row = _row(c)
    assert row["verdict"] in ("undecided", "same") and not row["regression"], row
    # the night is the unit: the history's figure is the mean of the five nightly medians
    medians = [np.median(run_values(s[(s["arm"] == "thp-order") & (s["step"] == BALLOON_STEP)], RATIO))
               for s in (open_folder(f).summary for f in folders[:5])]
    assert row["median_history"] == pytest.approx(np.mean(medians))
    assert c.regressions.empty


def test_an_improving_night_is_seen_as_better_and_not_flagged(nightly, tmp_path):
    """A night whose THP ratio fell: the direction (lower is better here) makes it an
    improvement, not a regression; a rule that ignored direction would flag it."""
    _, every, _ = nightly
    better = _night(tmp_path, 7, "2024-06-09", 0.9, "q")
    c = against_history(better, every, last=3)
    assert c.nights == DAYS[-3:]
    row = _row(c)
    assert row["significant"] and row["verdict"] == "better", row
    assert c.regressions.empty, c.regressions
    assert check_results(better, against_history=every, last=3) == 0


def test_too_few_nights_say_n_too_small(history):
    h, folders = history
    c = against_history(folders[2], h, last=2)
    row = _row(c)
    assert row["verdict"] == "n too small" and row["reps_needed"] == 3 and not row["regression"]
    assert "n too small: 3 nights needed" in format_history_check(c)


def test_a_step_change_is_dated_to_its_night(nightly, capsys):
    _, every, _ = nightly
    t = history_trend(every, metric=RATIO, arm="thp-order")
    (found,) = t.changes[("thp-order", BALLOON_STEP)]
    assert found[0] == DAYS[5] and found[1].p_value <= 0.05 and found[1].after > found[1].before
    steady = history_trend(nightly[0], metric=RATIO, arm="thp-order")
    assert not steady.changes                                       # drift alone is no change point
    assert main(["history", str(every), "--metric", RATIO, "--arm", "thp-order"]) == 0
    assert f"change point: from {DAYS[5]}" in capsys.readouterr().out


def test_holm_adjusts_as_published():
    # Holm (1979) step-down: sorted p times m, m-1, ..., made monotone
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan, 0.005]))
    assert np.allclose(adjusted[[4, 0, 2, 1]], [0.02, 0.03, 0.06, 0.06]) and np.isnan(adjusted[3])


def test_e_divisive_finds_level_changes_and_no_change_in_noise():
    rng = np.random.default_rng(5)
    two = np.concatenate([rng.normal(0, 1, 15), rng.normal(4, 1, 10), rng.normal(0, 1, 12)])
    assert [c.index for c in e_divisive(two)] in ([15, 25], [15, 26])   # the second edge within a night
    false = sum(bool(e_divisive(rng.normal(0, 1, 20), permutations=99, seed=s)) for s in range(40))
    assert false <= 6                                               # about 5 % of 40 pure-noise series
    assert e_divisive(np.array([1.0, 2.0, 3.0])) == []              # too short to split


def test_no_history_yet_is_a_note_not_a_failure(tmp_path):
    out = _night(tmp_path, 0, "2024-05-01", 1.1, "q", reps=1)
    c = against_history(out, tmp_path / "none", last=3)
    assert "no history yet" in c.note and c.rows.empty
    assert check_results(out, against_history=tmp_path / "none") == 0


def test_a_folder_that_is_not_a_history_is_refused(tmp_path):
    out = _night(tmp_path, 0, "2024-05-01", 1.1, "q", reps=1)
    bad = tmp_path / "home"
    bad.mkdir()
    (bad / "notes.txt").write_text("mine")
    for call in (lambda: append_history(out, bad), lambda: history_trend(bad),
                 lambda: against_history(out, bad)):
        with pytest.raises(HarnessError, match="not a history folder"):
            call()
    assert (bad / "notes.txt").read_text() == "mine" and not (bad / "summary").exists()


def test_last_must_be_positive(history):
    h, folders = history
    with pytest.raises(HarnessError, match="--last must be at least 1"):
        against_history(folders[0], h, last=0)


def test_several_scenarios_need_a_choice(tmp_path, capsys):
    h = tmp_path / "h"
    append_history(_night(tmp_path / "a", 0, "2024-05-01", 1.1, "q", reps=1, name="one"), h)
    append_history(_night(tmp_path / "b", 0, "2024-05-01", 1.1, "q", reps=1, name="two"), h)
    with pytest.raises(HarnessError, match="several scenarios"):
        history_trend(h)
    assert len(history_trend(h, scenario="two", arm="thp-order").table) == 1
    assert main(["history", str(h)]) == 1 and "--scenario" in capsys.readouterr().err
    assert main(["history", str(h), "--scenario", "one", "--png", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert "2024-05-01" in out and (tmp_path / "t.png").exists()
    assert main(["history", str(h), "--scenario", "one", "--metric", "nope"]) == 1


def test_a_file_is_not_a_history(tmp_path):
    out = _night(tmp_path, 0, "2024-05-01", 1.1, "q", reps=1)
    f = tmp_path / "history.txt"
    f.write_text("mine")
    for call in (lambda: append_history(out, f), lambda: history_trend(f), lambda: against_history(out, f)):
        with pytest.raises(HarnessError, match="is not a history folder \\(it is a file\\)"):
            call()
    assert f.read_text() == "mine"


def test_an_empty_folder_becomes_a_history_and_an_empty_result_adds_nothing(tmp_path):
    h = tmp_path / "h"
    h.mkdir()
    assert load_history(h).empty
    empty = make_results(tmp_path / "empty", reps=1, failed=("baseline-r1", "thp-order-r1"))
    assert append_history(empty, h) is None and not list(h.rglob("*.parquet"))
    assert append_history(_night(tmp_path, 0, "2024-05-01", 1.1, "q", reps=1), h) is not None
    assert len(load_history(h)) == 6     # 2 arms x 3 steps


def test_partition_names_are_made_safe_and_stay_inside_the_history(tmp_path):
    """A scenario or host name with '/', '=', spaces or '..' becomes one safe path component:
    nothing is written outside the history, and the scenario is found by its own name."""
    out = make_results(tmp_path / "r", reps=1, name="rfc v1/x=y", host="../../evil=host")
    h = tmp_path / "deep" / "h"
    appended = append_history(out, h)
    assert appended is not None
    rel = appended.summary.relative_to(h / "summary").parts
    assert rel[:2] == ("scenario=rfc_v1_x_y", "host=.._.._evil_host") and len(rel) == 4
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["h"]
    assert set(load_history(h, scenario="rfc v1/x=y")["scenario"]) == {"rfc_v1_x_y"}


def test_a_merged_folder_is_filed_under_its_shards_hosts(tmp_path):
    from harness.results.merge import merge_results
    ids = [f"{arm}-r{rep}" for rep in (1, 2) for arm in ("baseline", "thp-order")]
    a = make_results(tmp_path / "s1", reps=2, run_ids=ids[0::2], host="host-b")
    b = make_results(tmp_path / "s2", reps=2, run_ids=ids[1::2], host="host-a")
    merged = merge_results(tmp_path / "merged", [a, b])
    appended = append_history(merged, tmp_path / "h")
    # both hosts, sorted; _host_of joins them with '+', which the partition's safe name turns into '_'
    assert appended is not None and appended.summary.relative_to(tmp_path / "h" / "summary").parts[1] == \
        "host=host-a_host-b"
    assert set(load_history(tmp_path / "h")["host"]) == {"host-a_host-b"}
