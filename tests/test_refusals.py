"""The command line's refusals that fire before anything builds: each one line, exit 1 (2 for
``check``), nothing written, and (conftest.no_build_in_fast_tests) the build never reached.
Also ``merge --force``: what it overrides, and that it still refuses what it cannot merge."""

from __future__ import annotations

import json

import pytest
from synthetic import make_results
from toml_text import two_stock_arms

from harness.cli import main
from harness.errors import ConfigError
from harness.experiment.capacity import HostRoom, check_room

SCENARIO = two_stock_arms("refusals")


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    return path


def _one_line(capsys, *named: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("balloon-harness: error: "), err
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def test_a_folder_that_holds_results_is_refused_without_resume(tmp_path, scenario, capsys):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "metadata.json").write_text("{}\n")
    assert main(["run", str(scenario), "--out", str(out)]) == 1
    _one_line(capsys, "already holds results", "--resume")
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "runs"]


def test_a_file_as_out_is_refused(tmp_path, scenario, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["run", str(scenario), "--out", str(tmp_path / "f")]) == 1
    _one_line(capsys, "not a folder")


@pytest.mark.parametrize("argv, named", [
    (["--until-decided", "--shard", "1/2"], ["--until-decided", "--shard"]),
    (["--max-reps", "1"], ["--max-reps 1", "between 2"]),
    (["--max-reps", "-3"], ["--max-reps -3"]),
    (["--shard", "3/3", "--reps", "1"], ["--shard 3/3", "empty"]),
    (["--shard", "0/2"], ["--shard 0/2"]),
    (["--shard", "x"], ["--shard 'x'", "K/N"]),
    (["--jobs", "0"], ["--jobs", "at least 1"]),
    (["--jobs", "-2"], ["--jobs"]),
    (["--jobs", "many"], ["--jobs 'many'", "whole number or 'auto'"]),
    (["--reps", "0"], ["--reps 0"]),
    (["--reps", "100000"], ["--reps 100000", "at most"]),
])
def test_run_options_are_refused_in_one_line_before_the_build(tmp_path, scenario, capsys, argv, named):
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out), *argv]) == 1
    _one_line(capsys, *named)
    assert not out.exists()


def test_last_without_a_history_is_refused(tmp_path, capsys):
    folder = make_results(tmp_path / "r", reps=3)
    assert main(["check", str(folder), "--last", "3"]) == 2
    _one_line(capsys, "--last needs --against-history")


def test_a_missing_history_folder_is_refused(tmp_path, capsys):
    assert main(["history", str(tmp_path / "nope")]) == 1
    _one_line(capsys, "no such history folder", str(tmp_path / "nope"))


# ---- the host's room ------------------------------------------------------------------------

def test_a_guest_larger_than_the_host_s_memory_is_refused_with_the_numbers(tmp_path, capsys):
    room = HostRoom.now()
    path = tmp_path / "big.toml"
    path.write_text(SCENARIO.replace("memory_mib = 256", f"memory_mib = {room.memory_mib + 1024}")
                    .replace("target_mib = 200", "target_mib = 256"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys, f"{room.memory_mib + 1024} MiB", "MemAvailable")
    assert "one guest" in line and not (tmp_path / "out").exists()


def test_guests_at_once_are_counted_against_memory_and_cores():
    room = HostRoom(memory_mib=1000, cores=4)
    check_room(400, 2, jobs=2, runs=10, room=room)             # 800 MiB, 4 cores: fits
    check_room(900, 1, jobs=8, runs=1, room=room)              # one run: one guest at once
    with pytest.raises(ConfigError, match=r"3 guests at once \(--jobs 3\) of 400 MiB need 1200 MiB.* 1000 MiB"):
        check_room(400, 1, jobs=3, runs=10, room=room)
    with pytest.raises(ConfigError, match=r"one guest of 5 vCPU\(s\) need 5 cores; this host has 4"):
        check_room(100, 5, jobs=1, runs=1, room=room)
    with pytest.raises(ConfigError, match=r"2 guests at once \(--jobs 2\) of 3 vCPU\(s\) need 6 cores"):
        check_room(100, 3, jobs=2, runs=2, room=room)


def test_jobs_beyond_the_host_s_cores_are_refused_before_the_build(tmp_path, scenario, capsys):
    cores = HostRoom.now().cores
    assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--jobs", str(cores + 1),
                 "--reps", str(cores + 1)]) == 1
    _one_line(capsys, f"--jobs {cores + 1}", f"this host has {cores}")


# ---- merge --force ----------------------------------------------------------------------------

ALL = [f"{arm}-r{rep}" for rep in (1, 2, 3) for arm in ("baseline", "thp-order")]


def test_merge_force_merges_different_builds_and_says_so(tmp_path, capsys):
    a = make_results(tmp_path / "s1", reps=3, run_ids=ALL[0::2])
    b = make_results(tmp_path / "s2", reps=3, run_ids=ALL[1::2], qemu_sha="x" * 64)
    assert main(["merge", str(tmp_path / "refused"), str(a), str(b)]) == 1
    _one_line(capsys, "qemu patched sha256")
    assert not (tmp_path / "refused").exists()
    assert main(["merge", str(tmp_path / "merged"), str(a), str(b), "--force"]) == 0
    assert f"merged 2 shard(s) into {tmp_path / 'merged'}: 6 finished run(s)" in capsys.readouterr().out
    meta = json.loads((tmp_path / "merged" / "metadata.json").read_text())
    assert len(meta["shards"]) == 2


def test_merge_force_still_refuses_a_run_two_shards_disagree_on(tmp_path, capsys):
    import shutil
    a = make_results(tmp_path / "s1", reps=3, run_ids=ALL[0::2])
    b = make_results(tmp_path / "s2", reps=3, run_ids=ALL[1::2])
    other = make_results(tmp_path / "other", reps=3, seed=9, run_ids=[ALL[0]])
    shutil.copytree(other / "runs" / ALL[0], b / "runs" / ALL[0])
    assert main(["merge", str(tmp_path / "merged"), str(a), str(b), "--force"]) == 1
    _one_line(capsys, f"run {ALL[0]} is in two shards with different contents")
    assert not (tmp_path / "merged").exists()
