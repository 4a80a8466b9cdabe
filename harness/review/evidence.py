"""The review's results folders, read once and asked by arm, step and column.

:class:`Evidence` loads ``DIR/<scenario>`` through :func:`harness.results.folder.open_folder`,
adds the columns the review reads but older folders lack (:func:`derive`, with
:mod:`harness.results.metrics`' own definitions), shows the steps failed runs finished
apart, and answers the points' questions (medians, reached k/n, run values). Why "not
measured" instead of errors: the review is assembled from scenarios that are run (and
fail, or are added) independently; a missing folder, arm, step or column says so in its
place and the rest of the report still stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from harness.analysis.decide import Decision, decide
from harness.analysis.groups import REACHED_FRACTION, reached_as_float, summary_stats
from harness.render.numbers import fmt_number
from harness.render.numbers import fmt_spread as fmt_spread_unit
from harness.results import layout
from harness.results.folder import (
    ScenarioInfo,
    as_dict,
    as_list,
    open_folder,
    partial_arm,
    partial_rows,
)
from harness.results.metrics import METRICS, returned_fraction, thp_lost_per_returned_mib
from harness.review.tables import DERIVED, FILL_STEP, REVIEW_SCENARIOS, WHOLE_RUN, Table

FOOTPRINT_COLUMNS = ("rss_gib_min", "thp_gib_min", "step_seconds")
DEFAULT_SAMPLE_HZ = 5.0
EMPTY = pd.DataFrame()


def stems(scenarios: Optional[list[str]] = None) -> list[str]:
    """Folder names of the review's scenarios (file name without ``.toml``)."""
    return [Path(s).stem if s.endswith(".toml") else s for s in (scenarios or REVIEW_SCENARIOS)]


# --- derived columns -------------------------------------------------------------------------

def _ratio(num: pd.Series, den: pd.Series, floor: float = 0.0) -> pd.Series:
    """num / den where den > floor, else NaN (as harness.metrics.ratio, column-wise)."""
    num, den = pd.to_numeric(num, errors="coerce"), pd.to_numeric(den, errors="coerce")
    return (num / den.where(den > floor)).astype("float64")


def _rowwise(definition: Callable[[float, float], float], a: pd.Series, b: pd.Series) -> pd.Series:
    """harness.metrics' scalar definition applied to each row (one definition, not a twin)."""
    return pd.Series([definition(x, y) for x, y in zip(a, b)], index=a.index, dtype="float64")


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as floats; all-NaN when the folder predates it."""
    if name not in frame.columns:
        return pd.Series(math.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[name], errors="coerce").astype("float64")


def derive(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with the columns the review reads but older folders lack, computed from
    the columns they have (same definitions as harness.metrics), plus the review's own.

    A figure the runner recorded wins; only its gaps (an older folder: the whole column)
    are filled from the definition, which gives NaN wherever the runner's would.
    """
    s = summary.copy()
    s["returned_fraction"] = _col(s, "returned_fraction").fillna(
        _rowwise(returned_fraction, _col(s, "rss_freed_kib"), _col(s, "ballooned_mib")))
    s["thp_lost_per_returned_mib"] = _col(s, "thp_lost_per_returned_mib").fillna(
        _rowwise(thp_lost_per_returned_mib, _col(s, "thp_lost_kib"), _col(s, "rss_freed_kib")))
    s["thp_regained_kib"] = 0.0 - _col(s, "thp_lost_kib")   # 0.0 - x: no "-0" for an unchanged step
    s["thp_back_fraction"] = _ratio(_col(s, "qemu_ahp_after_kib"), _fill_thp(s))
    return pd.concat([s, _whole_run_rows(s)], ignore_index=True) if not s.empty else s


def _fill_thp(s: pd.DataFrame) -> pd.Series:
    """Per row, its run's QEMU AnonHugePages after the fill step (FILL_STEP, else the run's
    first step): what "all huge pages back" means for that run."""
    if s.empty or "run_id" not in s.columns:
        return pd.Series(math.nan, index=s.index, dtype="float64")
    ahp = _col(s, "qemu_ahp_after_kib")
    fill = ahp.where(s["step"] == FILL_STEP).groupby(s["run_id"]).transform("max")
    first = ahp.groupby(s["run_id"]).transform("first")
    return fill.fillna(first)


def _whole_run_rows(s: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the sums of its steps' integrals (a run's footprint)."""
    present = [c for c in FOOTPRINT_COLUMNS if c in s.columns]
    keys = [k for k in ("run_id", "arm", "rep", "accel") if k in s.columns]
    if "run_id" not in s.columns or not present:
        return pd.DataFrame()
    values = s[keys].copy()
    for c in present:
        values[c] = _col(s, c)
    rows = values.groupby(keys, sort=False, dropna=False)[present].sum(min_count=1).reset_index()
    rows["step"], rows["kind"] = WHOLE_RUN, "footprint"
    return rows


# --- one results folder ----------------------------------------------------------------------

@dataclass
class Folder:
    """A scenario's results folder as the review reads it (``summary`` empty: nothing finished)."""

    stem: str
    path: Path
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: ScenarioInfo = field(default_factory=ScenarioInfo)
    metadata: dict[str, Any] = field(default_factory=dict)
    planned: int = 0                                    # repetitions per arm the folder was started with
    failed: list[str] = field(default_factory=list)     # run ids with an error.txt and no run.json
    # indexes of summary and stats by (arm, step) and (arm, step, metric): the answers ask
    # hundreds of times, and a boolean mask over the frame each time costs seconds
    by_step: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    by_metric: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        return not self.summary.empty


def load_folder(root: Path, stem: str, columns: tuple[str, ...]) -> Folder:
    """Read ``root/stem``; a folder that is absent or has no finished run is an empty Folder.
    Statistics are computed for ``columns`` only (what the points tabulate)."""
    path = root / stem
    folder = Folder(stem, path)
    if not layout.runs_dir(path).is_dir():
        return folder
    results = open_folder(path)
    folder.metadata, folder.failed = results.metadata, sorted(results.failed)
    folder.info = results.scenario
    folder.planned = results.planned_reps
    summary = pd.concat([results.summary, partial_rows(path, folder.failed)], ignore_index=True) \
        if folder.failed else results.summary
    if summary.empty:
        return folder
    folder.summary = derive(summary)
    # only what the points tabulate: summary_stats over every column would triple the time
    metrics = [c for c in columns if c in folder.summary.columns]
    folder.stats = summary_stats(folder.summary, folder.info.arms, folder.info.steps, metrics=metrics)
    folder.by_step = {(str(a), str(st)): g for (a, st), g in folder.summary.groupby(["arm", "step"], sort=False)}
    folder.by_metric = {(r["arm"], r["step"], r["metric"]): r for r in folder.stats.to_dict("records")}
    return folder


# --- what the answers read -------------------------------------------------------------------

def unit_of(column: str) -> str:
    """The column's unit: its metric's declaration, else the review's own (derived columns)."""
    if column in METRICS:
        return METRICS[column].unit
    return DERIVED[column].unit if column in DERIVED else ""


def meaning_of(column: str) -> str:
    if column in METRICS:
        return METRICS[column].meaning
    return DERIVED[column].meaning if column in DERIVED else ""


def header_of(column: str) -> str:
    """The table header (units included): its metric's, else the derived column's, else the
    name and unit."""
    if column in METRICS:
        return METRICS[column].header
    if column in DERIVED:
        return DERIVED[column].header
    unit = unit_of(column)
    return f"{column} ({unit})" if unit else column


def fmt(column: str, v: float) -> str:
    """One figure, with its unit's decimals (:mod:`harness.render.numbers`)."""
    return fmt_number(v, unit_of(column))


def fmt_spread(column: str, st: dict[str, Any]) -> str:
    """A statistics row as a cell: median, (min..max) of 2-4 runs, [q1..q3] of 5 or more."""
    return fmt_spread_unit(int(st["n"]), st["median"], st["q1"], st["q3"], st["min"], st["max"], unit_of(column))


class Evidence:
    """The loaded folders, asked by arm, step and column. Absent data are NaN or (0, 0)."""

    def __init__(self, root: Path, tables: tuple[Table, ...], scenario_stems: Optional[list[str]] = None):
        self.root = Path(root)
        # every column a table shows: the only ones aggregated, so answers read only these
        # (:meth:`stat` refuses others rather than answer NaN)
        self.columns = tuple(dict.fromkeys(c for t in tables for c in t.columns))
        self.folders: dict[str, Folder] = {}
        for s in [*stems(scenario_stems), *(t.scenario for t in tables)]:
            self.folder(s)

    def folder(self, stem: str) -> Folder:
        if stem not in self.folders:
            self.folders[stem] = load_folder(self.root, stem, self.columns)
        return self.folders[stem]

    def has(self, stem: str) -> bool:
        return self.folder(stem).present

    def arms(self, t: Table) -> tuple[str, ...]:
        """The table's arms, each followed by its failed runs' partial twin when that has rows."""
        out: list[str] = []
        for a in t.arms:
            out.append(a)
            if not self.rows(t.scenario, t.step, partial_arm(a)).empty:
                out.append(partial_arm(a))
        return tuple(out)

    def rows(self, stem: str, step: str, arm: str) -> pd.DataFrame:
        """The arm's summary rows of the step, one per run (empty when none)."""
        return self.folder(stem).by_step.get((arm, step), EMPTY)

    def stat(self, stem: str, step: str, arm: str, column: str) -> Optional[dict[str, Any]]:
        """The summary_stats row (n, median, q1, q3, min, max, ...) or None."""
        if column not in self.columns:
            raise KeyError(f"{column} is in no table of harness.review.points: add it to one to answer with it")
        return self.folder(stem).by_metric.get((arm, step, column))

    def median(self, stem: str, step: str, arm: str, column: str) -> float:
        st = self.stat(stem, step, arm, column)
        return math.nan if st is None else float(st["median"])

    def max(self, stem: str, step: str, arm: str, column: str) -> float:
        st = self.stat(stem, step, arm, column)
        return math.nan if st is None else float(st["max"])

    def run_values(self, stem: str, step: str, arm: str, column: str) -> pd.Series:
        """One value per run (NaN kept, aligned with :meth:`reached_flags`)."""
        return _col(self.rows(stem, step, arm), column)

    def decide(self, t: Table, arm: str, other: str, column: str) -> Decision:
        """``arm`` against ``other`` in table ``t`` for ``column`` through the comparison core
        (``reached_fraction``: the runs' reached flags)."""
        def runs(a: str) -> pd.Series:
            if column == REACHED_FRACTION:
                return self.reached_flags(t.scenario, t.step, a)
            return self.run_values(t.scenario, t.step, a, column)
        return decide(column, runs(other).to_numpy(), runs(arm).to_numpy())

    def reached_flags(self, stem: str, step: str, arm: str) -> pd.Series:
        rows = self.rows(stem, step, arm)
        if rows.empty or "reached" not in rows.columns:
            return pd.Series(math.nan, index=rows.index, dtype="float64")
        return reached_as_float(rows["reached"])

    def reached(self, stem: str, step: str, arm: str) -> tuple[int, int]:
        """(k, n): runs that reached the target out of those whose step had one."""
        flags = self.reached_flags(stem, step, arm).dropna()
        return int(flags.sum()), int(len(flags))

    def reached_all(self, stem: str, step: str, arm: str) -> bool:
        k, n = self.reached(stem, step, arm)
        return n > 0 and k == n

    def accel(self, stem: str) -> str:
        """The accelerator of the folder's runs ("kvm", "tcg", "kvm+tcg"; "" when unknown)."""
        s = self.folder(stem).summary
        if s.empty or "accel" not in s.columns:
            return ""
        return "+".join(sorted({str(a) for a in s["accel"].dropna()}))

    def device(self, stem: str, arm: str) -> dict[str, Any]:
        """The arm's device properties as the scenario recorded them."""
        for a in as_list(self.folder(stem).info.raw.get("arms")):
            if isinstance(a, dict) and a.get("name") == arm:
                return as_dict(a.get("device"))
        return {}

    def sample_hz(self, stem: str) -> float:
        hz = as_dict(self.folder(stem).info.raw.get("timing")).get("host_sample_hz", DEFAULT_SAMPLE_HZ)
        return float(hz) if isinstance(hz, (int, float)) else DEFAULT_SAMPLE_HZ

    def fmt(self, column: str, v: float) -> str:
        return fmt(column, v)

    def missing(self, t: Table) -> Optional[str]:
        """Why a table has no data: no folder, no such step, or none of its arms."""
        f = self.folder(t.scenario)
        if not f.present:
            return f"not measured: {f.path} has no results"
        if not (f.summary["step"] == t.step).any():
            return f"not measured: {f.path} has no step '{t.step}'"
        if not any(not self.rows(t.scenario, t.step, a).empty for a in self.arms(t)):
            return f"not measured: {f.path} has no runs of {', '.join(t.arms)}"
        return None


