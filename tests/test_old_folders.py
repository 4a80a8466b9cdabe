"""Results folders written before the analysis moved into its packages (no run_uid, fewer
summary columns, no combined frames, no repetitions in the metadata) still load, compare,
check, report, go into a history and into the review (no VM)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from synthetic import ArmSpec, make_results

from harness.analysis.history import history_trend
from harness.analysis.history_store import append_history
from harness.cli import main
from harness.results import layout
from harness.results.folder import open_folder
from harness.review.document import write_review

# columns the summary gained after the first nightly folders were written
LATER_COLUMNS = ["mechanism", "thp_lost_per_returned_mib", "event_seconds", "moved_gib_per_s", "returned_gib_per_s",
                 "rss_gib_min", "thp_gib_min", "thp_rise_seconds", "workload_mb_s", "guest_mem_total_after_kib"]


def old_folder(out: Path, **kw) -> Path:
    make_results(out, **kw)
    for d in layout.complete_run_dirs(out):
        for suffix in (".parquet", ".csv"):
            path = d / f"{layout.SUMMARY}{suffix}"
            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            frame = frame.drop(columns=[c for c in LATER_COLUMNS if c in frame.columns])
            frame.to_parquet(path, index=False) if suffix == ".parquet" else frame.to_csv(path, index=False)
        info = json.loads((d / layout.RUN_DONE).read_text())
        info.pop("run_uid", None)
        (d / layout.RUN_DONE).write_text(json.dumps(info))
    for stem in (layout.SUMMARY, layout.SAMPLES):
        for suffix in (".parquet", ".csv"):
            (out / f"{stem}{suffix}").unlink(missing_ok=True)
    meta = json.loads((out / layout.METADATA).read_text())
    meta.pop("repetitions", None)
    (out / layout.METADATA).write_text(json.dumps(meta))
    return out


def test_an_old_folder_loads_compares_checks_and_reports(tmp_path, capsys):
    arms = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.0)}
    a = old_folder(tmp_path / "a", arms=arms, reps=5)
    f = open_folder(a)
    assert len(f.runs) == 10 and not f.failed and "thp_lost_per_returned_mib" not in f.summary.columns
    assert main(["compare", f"{a}:baseline", f"{a}:thp-order"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "thp_lost_per_ballooned_mib" in l)
    assert line.rstrip().endswith("(lower)")     # described: only the primary figures decide (issue 26)
    assert "deciding figure thp_lost_per_returned_mib is not in these folders" in out
    assert main(["check", str(a)]) == 0
    assert main(["report", str(a), "--wide"]) == 0
    assert "thp-order" in capsys.readouterr().out


def test_an_old_folder_goes_into_a_history(tmp_path):
    a = old_folder(tmp_path / "a", reps=3)
    hist = tmp_path / "hist"
    assert append_history(a, hist) is not None and append_history(a, hist) is not None   # again: replaced
    assert int(history_trend(hist).table["n"].max()) == 3


def test_a_shard_then_its_merged_folder_count_each_run_once(tmp_path):
    """The measured defect: a shard checked into the history, then the merged folder, gave n = 8 for 6 runs."""
    ids = [f"{a}-r{r}" for r in (1, 2, 3) for a in ("baseline", "thp-order")]
    s1 = make_results(tmp_path / "s1", reps=3, run_ids=ids[0::2])
    s2 = make_results(tmp_path / "s2", reps=3, run_ids=ids[1::2])
    for d in (s2 / "runs").iterdir():              # two shards of one plan: the same drawn runs
        shutil.rmtree(d)
    shutil.rmtree(s1 / "runs")
    full = make_results(tmp_path / "full", reps=3)
    shutil.copytree(full / "runs", s1 / "runs")
    for run in ids[1::2]:
        shutil.rmtree(s1 / "runs" / run)
        shutil.copytree(full / "runs" / run, s2 / "runs" / run)
    assert main(["merge", str(tmp_path / "merged"), str(s1), str(s2)]) == 0
    hist = tmp_path / "hist"
    append_history(s1, hist)
    append_history(tmp_path / "merged", hist)
    trend = history_trend(hist, metric="thp_lost_per_ballooned_mib")
    assert sorted(trend.table["n"]) == [3, 3]     # per arm: its 3 runs, not 3 + the shard's again


def test_a_folder_given_twice_is_refused(tmp_path, capsys):
    a = make_results(tmp_path / "a", reps=2)
    assert main(["merge", str(tmp_path / "m"), str(a), str(tmp_path / "a" / ".." / "a")]) == 1
    assert "given twice" in capsys.readouterr().err


def test_an_old_folder_in_the_review_says_what_it_lacks(tmp_path):
    old_folder(tmp_path / "review-designs", arms={"baseline": ArmSpec(), "rfc-v1": ArmSpec(ratio=0.7)}, reps=3,
               name="review-designs")
    rv = write_review(tmp_path, plots=False)
    assert {s.point.id for s in rv.sections} >= {"fallback", "upstream"}
    assert "review-designs" in rv.markdown.read_text()
