"""The artifact cache: every build output lives in a folder keyed by its inputs.

A key is a hash of a JSON object describing everything that determines the
output (package versions, file hashes, flags). Same inputs, same folder: a second
build finds it complete and does nothing. A changed input makes a new key, so
only what depends on it is rebuilt. Outputs are built in a temporary sibling and
renamed into place, so an interrupted build never leaves a half-built artifact
that looks finished. The completion mark lists every file with its size, mtime
and hash: an entry damaged later (a truncated binary, a deleted file) is found
at the next look-up, removed and rebuilt, not booted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import BuildError
from harness.files import write_text_atomic

log = logging.getLogger("harness.build")

COMPLETE_MARK = ".complete"
MUTABLE = '"mutable"'   # the mark of a work area (a build tree): its files change by design
INPUTS_FILE = "inputs.json"


def cache_root() -> Path:
    """``$BALLOON_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/balloon-harness``, else ``~/.cache/...``."""
    explicit = os.environ.get("BALLOON_HARNESS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "balloon-harness"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_key(inputs: dict[str, Any]) -> str:
    """A short stable hash of the inputs (sorted JSON)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Artifact:
    """One finished cache entry: its kind, its key, where it is, what made it."""

    kind: str
    key: str
    path: Path
    inputs: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False  # built by this call (False: found in the cache)


@contextmanager
def _locked(lock_path: Path, waiting: str | None = None) -> Iterator[None]:
    """An exclusive flock on ``lock_path``; prints ``waiting`` once if another process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info(waiting)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


locked = _locked


@contextmanager
def build_lock(root: Path | None = None) -> Iterator[None]:
    """One ``build`` at a time per cache: a second process waits (and says so), then finds
    everything the first one built (apt and dpkg would also refuse to run twice)."""
    root = root or cache_root()
    with _locked(root / "build.lock", f"[build] another build holds {root / 'build.lock'}: waiting for it"):
        yield


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling and rename it over ``path`` (:mod:`harness.files`)."""
    write_text_atomic(path, text)


def _file_list(entry: Path) -> dict[str, list]:
    """relative path -> [size, mtime_ns, sha256] of every regular file of an entry."""
    files = {}
    for p in sorted(entry.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != COMPLETE_MARK:
            st = p.stat()
            files[p.relative_to(entry).as_posix()] = [st.st_size, st.st_mtime_ns, file_sha256(p)]
    return files


def damage(entry: Path) -> str | None:
    """Why a finished entry is no longer what was built (None: intact).

    Cheap: sizes and mtimes are compared; a file is hashed only when its mtime moved.
    Entries from before the file list was kept are trusted once and given one.
    """
    mark = entry / COMPLETE_MARK
    try:
        text = mark.read_text()
    except OSError:
        return "no completion mark"
    if not text.strip():
        mark.write_text(json.dumps(_file_list(entry)))
        return None
    if text.strip() == MUTABLE:
        return None
    try:
        files = json.loads(text)
    except ValueError:
        return "unreadable completion mark"
    for rel, (size, mtime_ns, sha) in files.items():
        p = entry / rel
        try:
            st = p.stat()
        except OSError:
            return f"{rel} is missing"
        if st.st_size != size:
            return f"{rel} has {st.st_size} bytes, {size} were built"
        if st.st_mtime_ns != mtime_ns and file_sha256(p) != sha:
            return f"{rel} was modified after the build"
    return None


def _intact(kind: str, key: str, path: Path) -> bool:
    if not (path / COMPLETE_MARK).exists():
        return False
    why = damage(path)
    if why is None:
        return True
    log.warning("cache entry %s/%s is damaged (%s): removing it, it will be rebuilt", kind, key, why)
    shutil.rmtree(path, ignore_errors=True)
    return False


def lookup(kind: str, inputs: dict[str, Any], root: Path | None = None) -> Artifact | None:
    """The finished, intact artifact for these inputs, or None."""
    key = input_key(inputs)
    path = _entry(root or cache_root(), kind, key)
    if _intact(kind, key, path):
        return Artifact(kind, key, path, inputs)
    return None


def _entry(root: Path, kind: str, key: str) -> Path:
    """``<root>/<kind>/<key>``, refused unless both are plain names inside the cache (they
    are the harness's own words and hashes; the check keeps it so)."""
    for part in (kind, key):
        if not part or part in (".", "..") or "/" in part or "\0" in part:
            raise BuildError(f"cache entry {kind}/{key}: not a plain name inside the cache {root}")
    return root / kind / key


def log_path(kind: str, key: str, root: Path | None = None) -> Path:
    """Build logs live beside the cache entries and outlive failed attempts."""
    return (root or cache_root()) / "logs" / f"{kind}-{key}.log"


def ensure(kind: str, inputs: dict[str, Any], build: Callable[[Path, Path], None],
           root: Path | None = None, mutable: bool = False) -> Artifact:
    """Return the cached artifact for ``inputs``, building it with ``build(dir, log)`` if absent.

    ``build`` fills an empty directory, appending its command output to ``log``;
    the directory is renamed into place only if it returns normally. A lock
    serialises concurrent builds of the same key.
    """
    root = root or cache_root()
    key = input_key(inputs)
    final = _entry(root, kind, key)
    with _locked(root / kind / f"{key}.lock"):
        if _intact(kind, key, final):
            return Artifact(kind, key, final, inputs)
        # A mutable entry (a build tree) is built where it will stay: build systems such as
        # meson record their absolute paths, so a tree renamed after configure is broken.
        tmp = final if mutable else root / kind / f".{key}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        if final.exists():  # an older interrupted attempt
            shutil.rmtree(final)
        tmp.mkdir(parents=True)
        log.debug("cache: building %s %s", kind, key)   # what tests read to see when builds happen
        try:
            log_file = log_path(kind, key, root)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            build(tmp, log_file)
            (tmp / INPUTS_FILE).write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
            (tmp / COMPLETE_MARK).write_text(MUTABLE if mutable else json.dumps(_file_list(tmp)))
            if tmp != final:
                tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Artifact(kind, key, final, inputs, fresh=True)
