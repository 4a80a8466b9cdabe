"""History: a Hive-partitioned Parquet dataset of every night; trend per night with the build
hashes that changed; tonight against the last nights; refusals (no VM)."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.check import check_results
from harness.analysis.history import against_history, append_history, history_trend, load_history
from harness.cli import main
from harness.errors import HarnessError

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
    t = history_trend(h, metric=RATIO, arm="thp-order", png=png)
    assert list(t.table["date"]) == [n[0] for n in NIGHTS]
    assert (t.table["n"] == 5).all()
    assert t.table["median"].iloc[2] > t.table["median"].iloc[1]          # the third night got worse
    assert t.table["changed"].iloc[:2].tolist() == ["", ""]
    assert "qemu patched sha256" in t.table["changed"].iloc[2]            # ... with a new QEMU build
    assert (t.table["q1"] <= t.table["median"]).all() and (t.table["median"] <= t.table["q3"]).all()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(history_trend(h, metric=RATIO).table) == 6                 # both arms: 3 nights each


def test_against_history_flags_a_regression_not_an_improvement(history):
    h, folders = history
    worse = against_history(folders[2], h, last=2)
    assert worse.nights == ["2024-05-01", "2024-05-02"]
    reg = worse.regressions
    assert ((reg["arm"] == "thp-order") & (reg["metric"] == RATIO) & (reg["step"] == BALLOON_STEP)).any()
    assert not (reg["arm"] == "baseline").any()
    assert check_results(folders[2], against_history=h, last=2) == 1
    # the second night against the first: nothing significant changed
    assert check_results(folders[1], against_history=h, last=1) == 0


def test_an_improving_night_is_seen_as_better_and_not_flagged(history, tmp_path):
    """A night whose THP ratio fell as far as the bad night's rose: the same test finds it
    significant, and the direction (lower is better here) makes it an improvement, not a
    regression; a rule that ignored direction would flag both."""
    h, folders = history
    better = _night(tmp_path, 7, "2024-05-04", 0.4, "q")
    c = against_history(better, h, last=2)
    assert c.nights == ["2024-05-02", "2024-05-03"]
    row = c.rows[(c.rows["arm"] == "thp-order") & (c.rows["metric"] == RATIO) & (c.rows["step"] == BALLOON_STEP)]
    assert len(row) == 1 and row["significant"].iloc[0] and row["verdict"].iloc[0] == "better", row.T
    assert c.regressions.empty, c.regressions
    assert check_results(better, against_history=h, last=2) == 0


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
