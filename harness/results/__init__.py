"""Results folders: the one place that writes and reads them.

:mod:`.layout` names every file of a folder; :mod:`.metrics` defines every summary column;
:mod:`.store` writes runs atomically; :mod:`.folder` reads a folder (summary, metadata,
runs, failures, the recorded scenario); :mod:`.identity` says whether two folders may be
compared or merged; :mod:`.merge` combines shards.
"""

from harness.results.store import Results, ResultsStore, atomic_write, load_results, write_frame, write_text

__all__ = ["Results", "ResultsStore", "atomic_write", "load_results", "write_frame", "write_text"]
