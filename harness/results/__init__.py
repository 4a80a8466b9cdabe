"""Results folders: the one place that writes and reads them.

:mod:`.layout` names every file of a folder; :mod:`.metrics` defines every summary column;
:mod:`.store` writes runs atomically; :mod:`.folder` reads a folder (summary, metadata,
runs, failures, the recorded scenario); :mod:`.identity` says whether two folders may be
compared or merged; :mod:`.merge` combines shards.

``from harness.results import load_results`` (notebooks) works as before; the frames'
module (pandas) is imported on that first use, not for ``layout`` or ``metrics``.
"""

from __future__ import annotations

import importlib
from typing import Any

_FROM_STORE = ("Results", "ResultsStore", "atomic_write", "load_results", "write_frame", "write_text")
__all__ = list(_FROM_STORE)


def __getattr__(name: str) -> Any:
    if name in _FROM_STORE:
        return getattr(importlib.import_module("harness.results.store"), name)
    raise AttributeError(f"module 'harness.results' has no attribute {name!r}")
