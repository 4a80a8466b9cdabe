"""The artifact cache: every build output lives in a folder keyed by its inputs.

A key is a hash of a JSON object describing everything that determines the
output (package versions, file hashes, flags). Same inputs, same folder: a second
build finds it complete and does nothing. A changed input makes a new key, so
only what depends on it is rebuilt. Outputs are built in a temporary sibling and
renamed into place, so an interrupted build never leaves a half-built artifact
that looks finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

COMPLETE_MARK = ".complete"
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
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def lookup(kind: str, inputs: dict[str, Any], root: Path | None = None) -> Artifact | None:
    """The finished artifact for these inputs, or None."""
    key = input_key(inputs)
    path = (root or cache_root()) / kind / key
    if (path / COMPLETE_MARK).exists():
        return Artifact(kind, key, path, inputs)
    return None


def log_path(kind: str, key: str, root: Path | None = None) -> Path:
    """Build logs live beside the cache entries and outlive failed attempts."""
    return (root or cache_root()) / "logs" / f"{kind}-{key}.log"


def ensure(kind: str, inputs: dict[str, Any], build: Callable[[Path, Path], None],
           root: Path | None = None) -> Artifact:
    """Return the cached artifact for ``inputs``, building it with ``build(dir, log)`` if absent.

    ``build`` fills an empty directory, appending its command output to ``log``;
    the directory is renamed into place only if it returns normally. A lock
    serialises concurrent builds of the same key.
    """
    root = root or cache_root()
    key = input_key(inputs)
    final = root / kind / key
    with _locked(root / kind / f"{key}.lock"):
        if (final / COMPLETE_MARK).exists():
            return Artifact(kind, key, final, inputs)
        tmp = root / kind / f".{key}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        if final.exists():  # an older interrupted attempt
            shutil.rmtree(final)
        tmp.mkdir(parents=True)
        try:
            log = log_path(kind, key, root)
            log.parent.mkdir(parents=True, exist_ok=True)
            build(tmp, log)
            (tmp / INPUTS_FILE).write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
            (tmp / COMPLETE_MARK).write_text("")
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Artifact(kind, key, final, inputs, fresh=True)
