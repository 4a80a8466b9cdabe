"""Results on disk: tidy samples and per-step summaries as Parquet and CSV, plus metadata.

Each run is written to ``runs/<run_id>/`` the moment it ends, with a ``run.json``
marking it complete; the combined frames at the top are rebuilt from the runs.
So a crash or Ctrl-C keeps every finished run, and ``--resume`` knows what to skip.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SAMPLE_COLUMNS = ["run_id", "arm", "rep", "phase", "t", "source", "metric", "value"]

# Stable, documented in README.md ("The summary columns").
SUMMARY_COLUMNS = [
    "run_id", "arm", "rep", "step", "kind", "target_mib", "start_mib", "actual_mib", "reached",
    "outcome", "ballooned_mib",
    "host_ahp_before_kib", "host_ahp_after_kib",
    "qemu_ahp_before_kib", "qemu_ahp_after_kib", "qemu_rss_before_kib", "qemu_rss_after_kib",
    "rss_freed_kib", "thp_lost_kib", "thp_lost_per_ballooned_mib", "settle_seconds", "step_seconds",
    "thp_split_pmd_delta", "thp_split_page_delta", "thp_fault_alloc_delta", "thp_collapse_alloc_delta",
    "guest_ahp_before_kib", "guest_ahp_after_kib",
    "guest_free_order9_before", "guest_free_order9_after", "accel",
]
RUN_DONE = "run.json"


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
        self.runs_dir = self.out / "runs"
        self._lock = threading.Lock()

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def is_complete(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RUN_DONE).exists()

    def write_metadata(self, metadata: dict[str, Any]) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metadata.json"
        path.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def write_run(self, run_id: str, samples: pd.DataFrame, summary: pd.DataFrame,
                  info: dict[str, Any]) -> None:
        """Write one finished run, then mark it complete (the mark goes last)."""
        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        for name, frame in (("samples", samples), ("summary", summary)):
            frame.to_parquet(d / f"{name}.parquet", index=False)
            frame.to_csv(d / f"{name}.csv", index=False)
        (d / RUN_DONE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        self.combine()

    def combine(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild the top-level frames from every complete run."""
        with self._lock:
            samples, summary = _read_runs(self.runs_dir)
            self.out.mkdir(parents=True, exist_ok=True)
            for name, frame in (("samples", samples), ("summary", summary)):
                frame.to_parquet(self.out / f"{name}.parquet", index=False)
                frame.to_csv(self.out / f"{name}.csv", index=False)
            return samples, summary


def _complete_runs(runs_dir: Path) -> list[Path]:
    return sorted(p.parent for p in runs_dir.glob(f"*/{RUN_DONE}"))


def _read_runs(runs_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    samples, summary = [], []
    for d in _complete_runs(runs_dir):
        samples.append(pd.read_parquet(d / "samples.parquet"))
        summary.append(pd.read_parquet(d / "summary.parquet"))
    s = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=SAMPLE_COLUMNS)
    m = pd.concat(summary, ignore_index=True) if summary else pd.DataFrame(columns=SUMMARY_COLUMNS)
    return s, m


def load_results(out: str | Path) -> Results:
    """The frames of a results folder, for notebooks: ``load_results("results/rfc-v1")``."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no results folder at {out}")
    samples, summary = _read_runs(out / "runs")
    meta_path = out / "metadata.json"
    metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    runs = [json.loads((d / RUN_DONE).read_text()) for d in _complete_runs(out / "runs")]
    return Results(samples, summary, metadata, runs)
