"""Results on disk: tidy samples and per-step summaries as Parquet and CSV, plus metadata.

Each run is written to ``runs/<run_id>/`` the moment it ends, with a ``run.json``
marking it complete; the combined frames at the top are rebuilt from the runs.
So a crash or Ctrl-C keeps every finished run, and ``--resume`` knows what to skip.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from harness.errors import ResultsWriteError
from harness.files import atomic_path
from harness.results import layout
from harness.results.layout import RUN_DONE
from harness.results.metrics import SAMPLE_COLUMNS, SUMMARY_COLUMNS


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """:func:`harness.files.atomic_path`, with OSError said as one line: which file, why, what to do."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except OSError as e:
        raise ResultsWriteError(f"cannot write {path}: {e.strerror or e} "
                                f"(free some space or pass another --out; finished runs are kept)") from e


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary sibling of ``path``, then rename it into place (parent
    folders created). The one way results, stats, reports and history files are written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(path) as tmp:
        write(tmp)
    return path


def write_frame(frame: pd.DataFrame, path_stem: Path) -> None:
    """``<stem>.parquet`` and ``<stem>.csv``, each written atomically."""
    for suffix, write in ((".parquet", lambda p: frame.to_parquet(p, index=False)),
                          (".csv", lambda p: frame.to_csv(p, index=False))):
        with _atomic(path_stem.with_suffix(suffix)) as tmp:
            write(tmp)


def write_text(path: Path, text: str) -> None:
    with _atomic(path) as tmp:
        tmp.write_text(text)


@dataclass
class Results:
    samples: pd.DataFrame
    summary: pd.DataFrame
    metadata: dict[str, Any]
    runs: list[dict[str, Any]]


class ResultsStore:
    """One results folder."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.runs_dir = layout.runs_dir(self.out)
        self._lock = threading.Lock()

    def run_dir(self, run_id: str) -> Path:
        """``runs/<run_id>``, checked to lie inside the results folder (layout.run_dir)."""
        return layout.run_dir(self.out, run_id)

    def is_complete(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RUN_DONE).exists()

    def write_metadata(self, metadata: dict[str, Any]) -> Path:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ResultsWriteError(f"cannot create results folder {self.out}: {e.strerror or e}") from e
        path = layout.within(self.out, self.out / layout.METADATA)
        write_text(path, json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def write_run(self, run_id: str, samples: pd.DataFrame, summary: pd.DataFrame,
                  info: dict[str, Any]) -> None:
        """Write one finished run, then mark it complete (the mark goes last)."""
        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        for name, frame in ((layout.SAMPLES, samples), (layout.SUMMARY, summary)):
            write_frame(frame, d / name)
        write_text(d / RUN_DONE, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        self.combine()

    def combine(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild the top-level frames from every complete run."""
        with self._lock:
            samples, summary = _read_runs(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            for name, frame in ((layout.SAMPLES, samples), (layout.SUMMARY, summary)):
                write_frame(frame, self.out / name)
            return samples, summary


def _read_runs(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    samples, summary = [], []
    for d in layout.complete_run_dirs(folder):
        samples.append(pd.read_parquet(d / f"{layout.SAMPLES}.parquet"))
        summary.append(pd.read_parquet(d / f"{layout.SUMMARY}.parquet"))
    s = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=SAMPLE_COLUMNS)
    m = pd.concat(summary, ignore_index=True) if summary else pd.DataFrame(columns=SUMMARY_COLUMNS)
    return s, m


def load_results(out: str | Path) -> Results:
    """The frames of a results folder, for notebooks: ``load_results("results/rfc-v1")``."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no results folder at {out}")
    samples, summary = _read_runs(out)
    meta_path = out / layout.METADATA
    metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    runs = [json.loads((d / RUN_DONE).read_text()) for d in layout.complete_run_dirs(out)]
    return Results(samples, summary, metadata, runs)
