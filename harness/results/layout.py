"""Every file name of a results folder, in one place.

    <folder>/metadata.json          host, builds, the scenario's text, shards (merge)
    <folder>/scenario.toml          the scenario as run (its text)
    <folder>/scenario.json          the scenario as resolved (the schema's record, read by the analysis)
    <folder>/samples.{parquet,csv}  every complete run's samples (rebuilt from runs/)
    <folder>/summary.{parquet,csv}  every complete run's summary rows (rebuilt from runs/)
    <folder>/summary_stats.{csv,parquet}   per arm, step and metric statistics (report)
    <folder>/plots/*.png
    <folder>/runs/<run_id>/run.json          written last: the run is complete
    <folder>/runs/<run_id>/{samples,summary}.{parquet,csv}
    <folder>/runs/<run_id>/frames.parquet    the 2 MiB frame map's readings (harness.results.frames)
    <folder>/runs/<run_id>/error.txt         the run failed (why, console tail)
    <folder>/runs/<run_id>/partial-{summary,samples}.csv, partial-moves.json
                                             the steps a failed run finished
    <folder>/runs/<run_id>/guest-<i>/        a fleet's guest (docs/fleet.md): its own summary,
                                             samples, frames.parquet, guest.json, or error.txt
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.errors import ResultsWriteError

METADATA = "metadata.json"
SCENARIO = "scenario.toml"
SCENARIO_RECORD = "scenario.json"
SAMPLES = "samples"              # stem: .parquet and .csv
SUMMARY = "summary"              # stem: .parquet and .csv
SUMMARY_STATS = "summary_stats"  # stem: .csv and .parquet
PLOTS = "plots"
PROBE_DELTAS = "probe_deltas"    # stem: the guest probes' change per run and step (report, issue 32)
RUNS = "runs"
RUN_DONE = "run.json"
ERROR = "error.txt"
PARTIAL_SUMMARY = "partial-summary.csv"
PARTIAL_SAMPLES = "partial-samples.csv"
PARTIAL_MOVES = "partial-moves.json"
FRAMES = "frames.parquet"


def run_id(arm: str, rep: int) -> str:
    """A run's id, and its folder's name: ``<arm>-r<rep>`` (the one place that says so)."""
    return f"{arm}-r{rep}"


def parse_run_id(run: str) -> Optional[tuple[str, int]]:
    """(arm, rep) of a run id, None when it is not one."""
    arm, sep, rep = run.rpartition("-r")
    return (arm, int(rep)) if sep and arm and rep.isdigit() else None


def within(root: Path, path: Path) -> Path:
    """``path``, once it is checked to lie inside ``root`` (both resolved): every file a
    run writes goes through here, so no name (a scenario's, an arm's, a step's) and no
    symlink can lead a write out of the results folder."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if path_r != root_r and root_r not in path_r.parents:
        raise ResultsWriteError(f"refusing to write {path} ({path_r}): it is outside {root} ({root_r})")
    return Path(path)


def runs_dir(folder: Path) -> Path:
    return Path(folder) / RUNS


def run_dir(folder: Path, run_id: str) -> Path:
    """``<folder>/runs/<run_id>``, refused if the id would lead outside ``runs/``."""
    path = runs_dir(folder) / run_id
    if run_id in ("", ".", "..") or "/" in run_id or "\0" in run_id:
        raise ResultsWriteError(f"run id {run_id!r} is not a plain folder name")
    within(runs_dir(folder), path)
    return path


def complete_run_dirs(folder: Path) -> list[Path]:
    """The folders of the runs that finished (their run.json exists), in run id order."""
    return sorted(p.parent for p in runs_dir(folder).glob(f"*/{RUN_DONE}"))


def failed_run_dirs(folder: Path) -> list[Path]:
    """The folders of the runs that failed: an error.txt and no run.json."""
    d = runs_dir(folder)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if (p / ERROR).exists() and not (p / RUN_DONE).exists())


# ---- issue 30: fleets (docs/fleet.md) ----
FLEET_GUEST_GLOB = "guest-*"


def frame_map_files(folder: Path) -> list[tuple[str, str, Path]]:
    """Every frame map of a folder's runs as (name, run id, path), in name order: a run's own
    ``runs/<run>/frames.parquet`` (name: the run id) and each fleet guest's
    ``runs/<run>/guest-<i>/frames.parquet`` (name: ``<run>-guest-<i>``)."""
    found = [(p.parent.name, p.parent.name, p) for p in runs_dir(folder).glob(f"*/{FRAMES}")]
    found += [(f"{p.parent.parent.name}-{p.parent.name}", p.parent.parent.name, p)
              for p in runs_dir(folder).glob(f"*/{FLEET_GUEST_GLOB}/{FRAMES}")]
    return sorted(found)
