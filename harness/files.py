"""Atomic file writes: the one way the harness puts a file under its final name.

A temporary sibling (a dot file, which dataset readers and globs skip) is written, then
renamed over the target, so a full disk or a crash leaves the old file or none, never a
truncated one that a reader would take for good. Used by the build cache and by results
folders alike.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place only if the body succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass  # gone (renamed), or cannot be removed: hidden, never read as a result


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary sibling of ``path`` (parents created), then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))
