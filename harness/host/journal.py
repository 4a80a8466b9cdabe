"""The journal of host changes: what to undo if the harness dies before it can.

Every change the harness makes to the host (a THP knob, huge pages added to a pool, a
hugetlbfs mount) is written here *before* it is made, and struck out after it is undone.
A harness killed with SIGKILL (or by the OOM killer, or a lost terminal) undoes nothing
itself; the next ``balloon-harness`` start calls :func:`recover_leftovers`, which undoes
the changes of every journal whose owner is gone and says what it did.

One file per owning process, ``<pid>-<start time>.json`` (the start time from
``/proc/PID/stat``: a recycled pid is not the owner), in ``/run/balloon-harness/host``:
``/run`` is emptied at boot, exactly when the host's knobs and pools reset by themselves.
Without a writable ``/run`` (not root), the cache folder holds it. Several harnesses may
share a host: a journal whose owner still runs is left alone, and one flock
(:func:`host_lock`) orders every change, undo and recovery.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

RUN_DIR = Path("/run/balloon-harness/host")
ENV_DIR = "BALLOON_HARNESS_HOST_JOURNAL"     # a folder instead of RUN_DIR (tests of recovery)


def journal_dir() -> Path:
    """``$BALLOON_HARNESS_HOST_JOURNAL``, else ``/run/balloon-harness/host`` where writable,
    else ``<cache>/host-journal``."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return Path(explicit)
    try:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        if os.access(RUN_DIR, os.W_OK):
            return RUN_DIR
    except OSError:
        pass
    from harness.artifacts.cache import cache_root
    return cache_root() / "host-journal"


def process_start(pid: int) -> Optional[int]:
    """Field 22 of ``/proc/PID/stat`` (clock ticks after boot), or None if no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


@contextlib.contextmanager
def host_lock(directory: Optional[Path] = None) -> Iterator[None]:
    """The lock every host change, undo and recovery holds (blocking; held for milliseconds)."""
    d = directory or journal_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Journal:
    """This process's journal. :meth:`record` before a change, :meth:`forget` after its undo;
    the file goes when the last entry does. Callers hold :func:`host_lock`."""

    def __init__(self, directory: Optional[Path] = None, pid: Optional[int] = None):
        self.directory = directory or journal_dir()
        self.pid = pid or os.getpid()
        self.start = process_start(self.pid)
        self.path = self.directory / f"{self.pid}-{self.start}.json"

    def entries(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.path.read_text())["entries"])
        except (OSError, ValueError, KeyError):
            return []

    def record(self, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path, {"pid": self.pid, "start": self.start, "entries": [*self.entries(), entry]})

    def forget(self, entry: dict[str, Any]) -> None:
        left = self.entries()
        if entry in left:
            left.remove(entry)
        if left:
            _write_atomic(self.path, {"pid": self.pid, "start": self.start, "entries": left})
        else:
            self.path.unlink(missing_ok=True)


def live_entries(directory: Optional[Path] = None, exclude_pid: Optional[int] = None) -> list[tuple[int, dict]]:
    """(owner pid, entry) of every journal whose owner still runs (other harnesses' changes)."""
    out: list[tuple[int, dict]] = []
    for _path, data in _journals(directory or journal_dir()):
        pid = int(data.get("pid", 0))
        if pid != exclude_pid and _owner_alive(data):
            out.extend((pid, e) for e in data.get("entries", []))
    return out


def _journals(directory: Path) -> list[tuple[Path, dict]]:
    out: list[tuple[Path, dict]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError) as e:
            log.warning("unreadable host journal %s (%s): left in place", path, e)
    return out


def _owner_alive(data: dict) -> bool:
    pid = int(data.get("pid", 0))
    return pid > 0 and process_start(pid) == data.get("start")


# ---- undo: one function per kind of entry -------------------------------------------
def undo(entry: dict[str, Any]) -> str:
    """Undo one journal entry; returns what was done, for the user."""
    kind = entry.get("type")
    if kind == "knob":
        Path(entry["path"]).write_text(str(entry["original"]))
        return f"restored {entry['name']} = {entry['original']}"
    if kind == "hugepages":
        nr = Path(entry["path"])
        current = int(nr.read_text())
        back = min(int(entry["added"]), current)
        nr.write_text(str(current - back))
        got = int(nr.read_text())
        return (f"gave back {back} huge pages of {entry['page_kib']} kB "
                f"(nr_hugepages {current} -> {got})")
    if kind == "mount":
        subprocess.run(["umount", entry["path"]], capture_output=True, text=True, check=False)
        with contextlib.suppress(OSError):
            os.rmdir(entry["path"])
        return f"unmounted {entry['path']}"
    raise ValueError(f"unknown host journal entry {entry!r}")


def recover_leftovers(directory: Optional[Path] = None) -> list[str]:
    """Undo what harnesses that died left on the host (their journals), newest change first.
    Returns one line per undone change (the CLI prints them); an undo that fails keeps its
    journal for the next start and says why."""
    d = directory or journal_dir()
    if not d.is_dir():
        return []
    said: list[str] = []
    with host_lock(d):
        for path, data in _journals(d):
            if _owner_alive(data):
                continue
            left = []
            for entry in reversed(data.get("entries", [])):
                try:
                    said.append(f"{undo(entry)} (left by balloon-harness pid {data.get('pid')}, which was killed)")
                except (OSError, ValueError) as e:
                    said.append(f"could not undo {entry} of dead pid {data.get('pid')}: {e}")
                    left.append(entry)
            if left:
                _write_atomic(path, {**data, "entries": list(reversed(left))})
            else:
                path.unlink(missing_ok=True)
    return said
