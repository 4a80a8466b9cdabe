"""No name leads a write out of its folder: run ids, step labels, a symlink planted in a results
folder, cache entries, and the default results folder of a path-like scenario name (the loader
refuses those: tests/test_properties_scenario.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.artifacts import cache
from harness.cli import runs
from harness.errors import BuildError, ResultsWriteError
from harness.experiment.workload import StepCommand, safe_name
from harness.results import ResultsStore, layout


@pytest.mark.parametrize("run_id", ["../x", "..", ".", "", "a/../../b", "/etc", "a\0b"])
def test_a_run_id_that_is_not_a_plain_name_is_refused(tmp_path, run_id):
    with pytest.raises(ResultsWriteError):
        ResultsStore(tmp_path / "out").run_dir(run_id)
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_out_of_the_results_folder_is_not_followed_for_writing(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    (out / "runs").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, out / "runs" / "a-r1")          # planted: runs/a-r1 -> ../../elsewhere
    with pytest.raises(ResultsWriteError, match="outside"):
        ResultsStore(out).run_dir("a-r1")
    os.symlink(outside / "metadata.json", out / "metadata.json")
    with pytest.raises(ResultsWriteError, match="outside"):
        ResultsStore(out).write_metadata({"x": 1})
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("label", ["..", ".", "../../etc/passwd", "/", "a/b", "", "x" * 400, "\u2028"])
def test_a_step_log_stays_in_the_steps_folder(tmp_path, label):
    name = safe_name(label)
    assert name not in ("", ".", "..") and "/" not in name and len(name) <= 101
    dest = tmp_path / "runs" / "a-r1" / "steps"
    path = StepCommand(None, label, "true", 1, "run").fetch_log(dest, "log text\n")  # type: ignore[arg-type]
    assert path is not None and path.parent == dest and path.read_text() == "log text\n"


@pytest.mark.parametrize("kind, key", [("..", "k"), ("qemu", "../x"), ("qemu", ""), ("a/b", "k")])
def test_a_cache_entry_outside_the_cache_is_refused(tmp_path, kind, key):
    with pytest.raises(BuildError, match="not a plain name"):
        cache._entry(tmp_path, kind, key)


def test_the_default_results_folder_is_inside_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = runs._default_out("rfc-v1", resume=False)
    assert out.parent == Path("results") and out.name.startswith("rfc-v1-2")
    with pytest.raises(ResultsWriteError, match="outside"):
        runs._default_out("../../x", resume=False)   # what a path-like name would have done
    assert layout.within(tmp_path, tmp_path / "a" / "b") == tmp_path / "a" / "b"
