"""The artifact cache: damaged entries are found and rebuilt; builds take turns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.artifacts import cache


def _build(out: Path, log: Path) -> None:
    (out / "bin").mkdir()
    (out / "bin" / "tool").write_bytes(b"\x7fELF" + b"x" * 4096)


def test_truncated_file_is_detected_and_rebuilt(tmp_path, caplog):
    a = cache.ensure("thing", {"v": 1}, _build, root=tmp_path)
    tool = a.path / "bin" / "tool"
    with open(tool, "r+b") as f:
        f.truncate(100)
    assert "bytes" in cache.damage(a.path)
    assert cache.lookup("thing", {"v": 1}, root=tmp_path) is None
    assert any("damaged" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    b = cache.ensure("thing", {"v": 1}, _build, root=tmp_path)
    assert b.fresh and (b.path / "bin" / "tool").stat().st_size == 4100


def test_modified_or_missing_file_is_damage_but_a_touch_is_not(tmp_path):
    a = cache.ensure("thing", {"v": 1}, _build, root=tmp_path)
    tool = a.path / "bin" / "tool"
    os.utime(tool, ns=(1, 1))
    assert cache.damage(a.path) is None  # same bytes: only the mtime moved
    tool.write_bytes(b"\x7fELF" + b"y" * 4096)  # same size, other bytes
    assert "modified" in cache.damage(a.path)
    tool.unlink()
    assert "missing" in cache.damage(a.path)


def test_entries_of_older_versions_are_trusted_once_and_given_a_file_list(tmp_path):
    a = cache.ensure("thing", {"v": 1}, _build, root=tmp_path)
    (a.path / cache.COMPLETE_MARK).write_text("")  # as the first version of the harness wrote it
    assert cache.damage(a.path) is None
    assert "bin/tool" in (a.path / cache.COMPLETE_MARK).read_text()


@pytest.mark.build
def test_two_builds_at_once_take_turns_and_both_succeed(artifacts):
    """A third process holds the build lock; both builds wait (and say so), then succeed."""
    import fcntl
    lock_path = cache.cache_root() / "build.lock"
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, "-m", "harness", "build"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            for p in procs:
                with pytest.raises(subprocess.TimeoutExpired):
                    p.wait(timeout=3)  # both wait for the lock
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "another build holds" in err and "manifest:" in out
