"""``merge``: shard folders into one; refusals for mixed scenarios, builds and conflicting
run ids; each shard's metadata kept (no VM)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from synthetic import make_results

from harness.cli import main
from harness.errors import HarnessError
from harness.results import load_results
from harness.results.merge import merge_results

ALL = [f"{arm}-r{rep}" for rep in (1, 2, 3) for arm in ("baseline", "thp-order")]


def _shards(d, **second):
    a = make_results(d / "shard-1", reps=3, run_ids=ALL[0::2], host="host-a")
    b = make_results(d / "shard-2", reps=3, run_ids=ALL[1::2], host="host-b", **second)
    return a, b


def test_merge_combines_every_run_and_keeps_each_hosts_metadata(tmp_path):
    a, b = _shards(tmp_path)
    out = merge_results(tmp_path / "merged", [a, b])
    res = load_results(out)
    assert sorted(r["run_id"] for r in res.runs) == sorted(ALL)
    # The merged frames are the shards' frames, row for row and value for value.
    for frame in ("summary", "samples"):
        want = pd.concat([getattr(load_results(a), frame), getattr(load_results(b), frame)])
        got = getattr(res, frame)
        assert len(want) and len(got) == len(want)
        keys = [c for c in ("run_id", "step", "phase", "t", "source", "metric") if c in got.columns]
        pd.testing.assert_frame_equal(got.sort_values(keys).reset_index(drop=True),
                                      want.sort_values(keys).reset_index(drop=True)[list(got.columns)])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"), res.summary)
    assert (out / "scenario.toml").read_text() == (a / "scenario.toml").read_text()
    assert (out / "summary.parquet").exists()   # summary_stats.csv: the `merge` command's (test_cli_merge)
    meta = json.loads((out / "metadata.json").read_text())
    assert [s["host"]["hostname"] for s in meta["shards"]] == ["host-a", "host-b"]
    assert set(meta["accelerator"]) == set(ALL)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_identical_run_in_two_shards_is_taken_once(tmp_path):
    a, b = _shards(tmp_path)
    shutil.copytree(a / "runs" / ALL[0], b / "runs" / ALL[0])
    res = load_results(merge_results(tmp_path / "merged", [a, b]))
    assert sorted(r["run_id"] for r in res.runs) == sorted(ALL)


def test_conflicting_run_in_two_shards_is_refused(tmp_path):
    a, b = _shards(tmp_path)
    other = make_results(tmp_path / "other", reps=3, seed=9, run_ids=[ALL[0]])
    shutil.copytree(other / "runs" / ALL[0], b / "runs" / ALL[0])
    with pytest.raises(HarnessError, match=f"run {ALL[0]} is in two shards with different contents"):
        merge_results(tmp_path / "merged", [a, b])
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("kw, named", [({"qemu_sha": "x" * 64}, "qemu patched sha256"),
                                       ({"name": "other"}, "scenario"), ({"accel": "tcg"}, "accelerator")])
def test_mixed_scenarios_or_builds_are_refused_naming_the_difference(tmp_path, kw, named):
    a, b = _shards(tmp_path, **kw)
    with pytest.raises(HarnessError) as e:
        merge_results(tmp_path / "merged", [a, b])
    assert named in str(e.value) and "merge" in str(e.value)


def test_bad_input(tmp_path, capsys):
    a, b = _shards(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(HarnessError, match="not empty"):
        merge_results(tmp_path / "busy", [a, b])
    with pytest.raises(HarnessError, match="not a results folder"):
        merge_results(tmp_path / "m", [a, tmp_path / "busy"])
    assert main(["merge", str(tmp_path / "m2"), str(a), str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("balloon-harness: error:") and len(err.splitlines()) == 1
    assert main(["merge", str(tmp_path / "m3"), str(a), str(b)]) == 0
    assert "6 finished run(s)" in capsys.readouterr().out


def test_merge_into_one_of_its_shards_is_refused_and_leaves_it_alone(tmp_path):
    a, b = _shards(tmp_path)
    before = sorted(p.relative_to(a) for p in a.rglob("*"))
    with pytest.raises(HarnessError, match="not empty"):
        merge_results(a, [a, b])
    assert sorted(p.relative_to(a) for p in a.rglob("*")) == before


def test_a_shard_that_does_not_say_its_scenario_is_refused(tmp_path):
    a, b = _shards(tmp_path)
    (b / "scenario.toml").unlink()
    meta = json.loads((b / "metadata.json").read_text())
    del meta["scenario"]
    (b / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(HarnessError, match="neither scenario.toml nor the scenario in metadata.json"):
        merge_results(tmp_path / "merged", [a, b])
    assert not (tmp_path / "merged").exists()


def test_scenario_files_that_differ_are_refused_even_when_the_metadata_agrees(tmp_path):
    a, b = _shards(tmp_path)
    (b / "scenario.toml").write_text((b / "scenario.toml").read_text().replace("target_mib = 624", "target_mib = 600"))
    with pytest.raises(HarnessError, match="different scenario"):
        merge_results(tmp_path / "merged", [a, b])
    assert not (tmp_path / "merged").exists()


def test_a_merge_left_half_done_is_replaced(tmp_path):
    """A crashed merge leaves ``.merged.merging``: the next merge starts it afresh, and nothing
    of the left folder (a stray run) gets into the result."""
    a, b = _shards(tmp_path)
    stale = tmp_path / ".merged.merging"
    shutil.copytree(make_results(tmp_path / "stray", reps=1, seed=5, name="syn") / "runs", stale / "runs")
    (stale / "runs" / "stray-r9").mkdir()
    out = merge_results(tmp_path / "merged", [a, b])
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(ALL)
    assert not stale.exists()
