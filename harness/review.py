"""``balloon-harness review``: the RFC review answered point by point from measured data.

Reads the results folders the review command ran (``DIR/review-designs``,
``DIR/mechanisms``, ``DIR/mechanisms-phases``) and writes ``DIR/review.md``,
``DIR/review.html`` and ``DIR/plots/*.png``: one section per point of
:data:`harness.review_points.POINTS`, each with the question, a table per step that
answers it (median, spread, n, reached k/n), a plot showing every run, and a one-line
answer computed from the same numbers.

Why one intermediate form (:class:`Section`, :class:`TableBlock`) rendered twice rather than
HTML converted from Markdown: the two must say the same and no new dependency is wanted.
Why "not measured" lines instead of errors: the review is assembled from scenarios that are
run (and fail, or are added) independently; a missing folder, arm, step or column says so
in its place and the rest of the report still stands.
"""

from __future__ import annotations

import functools
import html
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from harness.metrics import METRICS, returned_fraction, thp_lost_per_returned_mib
from harness.report import fmt_number
from harness.results import RUN_DONE, atomic_write, load_results
from harness.review_points import (
    COLUMNS,
    FILL_STEP,
    POINTS,
    REVIEW_SCENARIOS,
    WHOLE_RUN,
    ReviewPoint,
    Table,
)
from harness.statistics import ScenarioInfo, as_dict, as_list, reached_as_float, scenario_info, summary_stats

# Decimals by unit for the columns harness.report.fmt_number does not know.
DECIMALS = {"ratio": 2, "bool": 2, "s": 1, "MiB": 1, "GiB/s": 2, "GiB*min": 2, "GiB·min": 2, "MB/s": 0}
FMT_NUMBER_UNITS = {"ratio", "bool", "s", "MiB", "kB", "count", "blocks", "pages"}
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


@functools.lru_cache(maxsize=1)
def review_columns() -> tuple[str, ...]:
    """Every column a point's table shows: the only ones aggregated, so the answers may read
    only these (:meth:`Evidence.stat` refuses others rather than answer NaN)."""
    return tuple(dict.fromkeys(c for p in POINTS for t in p.tables for c in t.columns))


def failed_runs(path: Path) -> list[str]:
    """Runs that ended in an error (error.txt, no completion mark): missing from the data."""
    runs = path / "runs"
    if not runs.is_dir():
        return []
    return sorted(d.name for d in runs.iterdir() if (d / "error.txt").exists() and not (d / RUN_DONE).exists())


def failure_reason(path: Path, run_id: str, limit: int = 160) -> str:
    """The first line of a failed run's error.txt, without its PIDs (so the same failure in
    several runs reads once), and whether the guest's OOM killer acted."""
    try:
        text = (path / "runs" / run_id / "error.txt").read_text(errors="replace")
    except OSError:
        return "no error.txt"
    first = re.sub(r"\bpid \d+", "pid N", text.splitlines()[0] if text else "")
    first = first if len(first) <= limit else first[:limit - 1] + "…"
    return first + (" (the guest's OOM killer acted)" if "OOM killer acted" in text else "")


PARTIAL_SUFFIX = " (failed later)"


def partial_arm(arm: str) -> str:
    """The name under which a failed run's finished steps are shown: never mixed with the
    complete runs of ``arm``, never hidden either."""
    return arm + PARTIAL_SUFFIX


def partial_rows(path: Path, failed: list[str]) -> pd.DataFrame:
    """The steps failed runs finished before they failed (``partial-summary.csv``, kept by the
    runner), under :func:`partial_arm` names."""
    frames = []
    for run_id in failed:
        csv = path / "runs" / run_id / "partial-summary.csv"
        if csv.is_file():
            d = pd.read_csv(csv)
            if not d.empty:
                d["arm"] = d["arm"].astype(str).map(partial_arm)
                frames.append(d)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_folder(root: Path, stem: str) -> Folder:
    """Read ``root/stem``; a folder that is absent or has no finished run is an empty Folder."""
    path = root / stem
    folder = Folder(stem, path)
    if not (path / "runs").is_dir():
        return folder
    res = load_results(path)
    folder.metadata, folder.failed = res.metadata, failed_runs(path)
    folder.info = scenario_info(path, res.metadata)
    reps = res.metadata.get("repetitions", folder.info.raw.get("repetitions"))
    folder.planned = int(reps) if isinstance(reps, (int, float)) else 0
    summary = pd.concat([res.summary, partial_rows(path, folder.failed)], ignore_index=True) \
        if folder.failed else res.summary
    if summary.empty:
        return folder
    folder.summary = derive(summary)
    # only what the points tabulate: summary_stats over every column would triple the time
    metrics = [c for c in review_columns() if c in folder.summary.columns]
    folder.stats = summary_stats(folder.summary, folder.info.arms, folder.info.steps, metrics=metrics)
    folder.by_step = {(str(a), str(st)): g for (a, st), g in folder.summary.groupby(["arm", "step"], sort=False)}
    folder.by_metric = {(r["arm"], r["step"], r["metric"]): r for r in folder.stats.to_dict("records")}
    return folder


# --- what the answers read -------------------------------------------------------------------

def unit_of(column: str) -> str:
    """The column's unit: harness.metrics' definition, else the review's own."""
    if column in METRICS and METRICS[column].unit:
        return METRICS[column].unit
    return COLUMNS[column].unit if column in COLUMNS else ""


def meaning_of(column: str) -> str:
    if column in METRICS:
        return METRICS[column].meaning
    return COLUMNS[column].meaning if column in COLUMNS else ""


def header_of(column: str) -> str:
    """The table header: the review's short one (units included), else the name and unit."""
    if column in COLUMNS:
        return COLUMNS[column].header
    unit = unit_of(column)
    return f"{column} ({unit})" if unit else column


def fmt(column: str, v: float) -> str:
    """One figure: harness.report.fmt_number for the units it knows, else by DECIMALS."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    unit = unit_of(column)
    if column in METRICS and unit in FMT_NUMBER_UNITS:
        return fmt_number(column, v)
    return f"{v:.{DECIMALS.get(unit, 0)}f}"


def fmt_spread(column: str, st: dict[str, Any]) -> str:
    """``median``, ``median (min..max)`` for 2-4 runs, ``median [q1..q3]`` for 5 or more
    (the convention of harness.report.fmt_spread, with the review's decimals)."""
    n = int(st["n"])
    if not n:
        return "-"
    if n == 1 or st["min"] == st["max"]:
        return fmt(column, st["median"])
    lo, hi = (st["min"], st["max"]) if n <= 4 else (st["q1"], st["q3"])
    bracket = "({}..{})" if n <= 4 else "[{}..{}]"
    return f"{fmt(column, st['median'])} " + bracket.format(fmt(column, lo), fmt(column, hi))


class Evidence:
    """The loaded folders, asked by arm, step and column. Absent data are NaN or (0, 0)."""

    def __init__(self, root: Path, scenario_stems: Optional[list[str]] = None):
        self.root = Path(root)
        self.folders = {s: load_folder(self.root, s) for s in stems(scenario_stems)}
        self.folders.update({s: load_folder(self.root, s) for p in POINTS for s in p.scenarios
                             if s not in self.folders})

    def folder(self, stem: str) -> Folder:
        if stem not in self.folders:
            self.folders[stem] = load_folder(self.root, stem)
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
        if column not in review_columns():
            raise KeyError(f"{column} is in no table of harness.review_points: add it to one to answer with it")
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


# --- sections --------------------------------------------------------------------------------

@dataclass
class TableBlock:
    """One table as cells, its notes, and its plot (relative to the review folder)."""

    table: Table
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: Optional[str] = None
    missing: Optional[str] = None
    columns: list[str] = field(default_factory=list)    # the columns shown (present in the data)


@dataclass
class Section:
    point: ReviewPoint
    blocks: list[TableBlock]
    answer: str
    notes: list[str]


def moves_memory(ev: Evidence, t: Table) -> bool:
    """True when any arm's step had a target (a reached k/n column makes sense)."""
    return any(ev.reached(t.scenario, t.step, a)[1] for a in ev.arms(t))


def n_cell(ev: Evidence, t: Table, arm: str) -> str:
    """Runs with the step, "2 of 3" when fewer than planned."""
    runs = len(ev.rows(t.scenario, t.step, arm))
    planned = ev.folder(t.scenario).planned
    partial = arm.endswith(PARTIAL_SUFFIX)   # a failed run's steps: no plan to fall short of
    return f"{runs} of {planned}" if planned and runs < planned and not partial else str(runs)


def shortfall_note(ev: Evidence, t: Table, arms: list[str]) -> Optional[str]:
    """"n=2 of 3 planned for arm (failed: run ids)" for arms with fewer runs than planned."""
    f = ev.folder(t.scenario)
    parts = []
    for arm in arms:
        runs = len(ev.rows(t.scenario, t.step, arm))
        if f.planned and runs < f.planned:
            failed = [r for r in f.failed if r.rsplit("-r", 1)[0] == arm]
            reasons = sorted({failure_reason(f.path, r) for r in failed})
            parts.append(f"n={runs} of {f.planned} planned for {arm}"
                         + (f" (failed: {', '.join(failed)}: {' / '.join(reasons)}; see runs/<run>/error.txt)"
                            if failed else ""))
    return "; ".join(parts) + "; missing runs are not in the figures" if parts else None


def table_block(ev: Evidence, t: Table) -> TableBlock:
    """The cells of one table (or its "not measured" line)."""
    block = TableBlock(t, f"{t.scenario} · {t.step}" + (f": {t.caption}" if t.caption else ""))
    block.missing = ev.missing(t)
    if block.missing:
        return block
    frame = ev.folder(t.scenario).summary
    arms = [a for a in ev.arms(t) if not ev.rows(t.scenario, t.step, a).empty]
    step_rows = pd.concat([ev.rows(t.scenario, t.step, a) for a in arms])
    block.columns = [c for c in t.columns if c in step_rows.columns and _col(step_rows, c).notna().any()]
    absent = [c for c in t.columns if c not in frame.columns]
    empty = [c for c in t.columns if c in frame.columns and c not in block.columns]
    with_reached = moves_memory(ev, t)
    block.header = ["arm", "n"] + (["reached"] if with_reached else []) + [header_of(c) for c in block.columns]
    for arm in arms:
        k, n = ev.reached(t.scenario, t.step, arm)
        cells = [arm, n_cell(ev, t, arm)] + ([f"{k}/{n}" if n else "-"] if with_reached else [])
        for c in block.columns:
            st = ev.stat(t.scenario, t.step, arm, c)
            cells.append("-" if st is None else fmt_spread(c, st))
        block.rows.append(cells)
    without = [a for a in t.arms if a not in arms]
    if without:  # say why, when runs of theirs failed
        block.notes.append(shortfall_note(ev, t, without)
                           or f"no runs of {', '.join(without)} in {ev.folder(t.scenario).path}")
    if absent:
        block.notes.append(f"not recorded in these results (an older harness?): {', '.join(absent)}")
    if empty:
        block.notes.append(f"no value in this step for: {', '.join(empty)}")
    short = shortfall_note(ev, t, [a for a in arms if not a.endswith(PARTIAL_SUFFIX)])
    if short:
        block.notes.append(short)
    if any(a.endswith(PARTIAL_SUFFIX) for a in arms):
        block.notes.append(f"'{PARTIAL_SUFFIX.strip()}': the steps runs finished before they failed (their "
                           "partial-summary.csv), shown apart from the complete runs")
    return block


def build_sections(ev: Evidence, plots: Optional[Path] = None) -> list[Section]:
    """Every point's section; with ``plots``, the PNGs are written there."""
    sections = []
    for point in POINTS:
        blocks = [table_block(ev, t) for t in point.tables]
        if plots is not None:
            for i, b in enumerate(blocks, 1):
                path = plot_block(ev, b, plots / f"{point.id}-{i}.png")
                b.plot = f"{plots.name}/{path.name}" if path else None
        missing = list(dict.fromkeys(b.missing for b in blocks if b.missing))
        answer = "; ".join(missing) if len(missing) and all(b.missing for b in blocks) else point.answer(ev)
        notes = point.context(ev) if point.context else []
        sections.append(Section(point, blocks, answer, notes))
    return sections


# --- plots -----------------------------------------------------------------------------------

def plot_block(ev: Evidence, b: TableBlock, path: Path) -> Optional[Path]:
    """Box plots per arm, one panel per column, every run a point (hollow red: target not
    reached). None when the table has no data."""
    if b.missing or not b.columns or not b.rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, arms = b.table, [r[0] for r in b.rows]
    ncols = 2 if len(b.columns) == 4 else min(3, len(b.columns))   # 4 panels: 2 x 2, not 3 + 1
    nrows = math.ceil(len(b.columns) / ncols)
    width = max(3.6, 0.9 * len(arms) + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.6 * nrows), squeeze=False)
    rng = np.random.default_rng(0)   # fixed jitter: the same plot for the same results
    for ax, col in zip(axes.flat, b.columns):
        _box_panel(ax, ev, t, arms, col, rng)
    for ax in list(axes.flat)[len(b.columns):]:
        ax.set_visible(False)
    fig.suptitle(f"{b.title}\nevery run a point (hollow red: target not reached) over a box plot per arm",
                 fontsize=9)
    # fixed margins, not tight_layout: that measures every label and doubles the time a plot takes
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16 / nrows, top=1 - 0.2 / nrows, wspace=0.3, hspace=0.45)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
    return path


def _box_panel(ax: Any, ev: Evidence, t: Table, arms: list[str], col: str, rng: np.random.Generator) -> None:
    boxes, positions = [], []
    for i, arm in enumerate(arms, 1):
        vals = ev.run_values(t.scenario, t.step, arm, col)
        flags = ev.reached_flags(t.scenario, t.step, arm).reindex(vals.index)
        ok, missed = vals.notna() & (flags != 0), vals.notna() & (flags == 0)
        x = i + rng.uniform(-0.12, 0.12, size=len(vals))
        ax.scatter(x[ok.to_numpy()], vals[ok], s=18, color="tab:blue", zorder=3)
        ax.scatter(x[missed.to_numpy()], vals[missed], s=22, facecolors="none", edgecolors="tab:red", zorder=3)
        if vals.notna().any():
            boxes.append(vals.dropna().to_numpy())
            positions.append(i)
    if boxes:
        ax.boxplot(boxes, positions=positions, widths=0.5, showfliers=False, medianprops={"color": "black"})
    ax.set_xticks(range(1, len(arms) + 1), arms, rotation=20, fontsize=7)
    ax.set_title(header_of(col), fontsize=8)


# --- the header ------------------------------------------------------------------------------

def header_lines(ev: Evidence, out: Path) -> list[tuple[str, str]]:
    """(label, text) pairs: when, the regenerating command, and each folder's host and runs."""
    lines = [("generated", time.strftime("%Y-%m-%d %H:%M:%S %z")),
             ("regenerate", f"balloon-harness review --out {out} --report-only"),
             ("complete missing runs", f"balloon-harness review --out {out}")]
    for stem, f in ev.folders.items():
        lines.append((stem, folder_line(ev, f)))
    return lines


def folder_line(ev: Evidence, f: Folder) -> str:
    if not f.present:
        return f"no results in {f.path}"
    host = as_dict(f.metadata.get("host"))
    who = ", ".join(str(v) for v in (host.get("hostname"), host.get("kernel"), host.get("cpu")) if v)
    cpus = f" ({host['cpus']} CPUs)" if host.get("cpus") else ""
    runs = f.summary[f.summary["step"] != WHOLE_RUN]["run_id"].nunique()
    planned = f.planned * len(f.info.arms) if f.planned and f.info.arms else 0
    return (f"host {who or '-'}{cpus}; date {f.metadata.get('created', '-')}; accel {ev.accel(f.stem) or '-'}; "
            f"reps {f.planned or '-'}; runs {runs}" + (f" of {planned} planned" if planned else "")
            + (f", failed {len(f.failed)}" if f.failed else ""))


def glossary(sections: list[Section]) -> list[tuple[str, str]]:
    """(column, meaning) for every column the tables show."""
    cols = list(dict.fromkeys(c for s in sections for b in s.blocks for c in b.table.columns))
    return [(c, meaning_of(c) + (f" [{unit_of(c)}]" if unit_of(c) else "")) for c in cols]


# --- Markdown --------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def md_table(b: TableBlock) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in b.header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(b.header))) + "|"]
    return lines + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]


def md_quote(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.split("\n")]


def render_markdown(sections: list[Section], header: list[tuple[str, str]]) -> str:
    """The review as Markdown: header, answers at a glance, one section per point, glossary."""
    out = ["# The RFC review answered from measured data", "",
           "Hui Zhu's RFC `virtio_balloon: VIRTIO_BALLOON_F_THP_ORDER` (March 2020) and the points of its "
           "review, each answered by the runs below. Figures: median over the runs; (a..b): min..max of 2-4 "
           "runs; [a..b]: IQR of 5 or more; n: runs with the step; reached k/n: runs that reached the target.",
           ""]
    out += [f"- **{label}**: `{text}`" if label in ("regenerate", "complete missing runs")
            else f"- **{label}**: {text}" for label, text in header]
    out += ["", "## Answers at a glance", ""]
    out += [f"- **{s.point.title}**: {s.answer}" for s in sections]
    for s in sections:
        out += ["", f"## {s.point.title}", "", f"*{s.point.who}*" + ("" if s.point.verbatim else
                " (paraphrase: the mail itself is not in the review text)"), ""]
        out += md_quote(s.point.question) + [""]
        if s.point.design:
            out += [s.point.design, ""]
        for b in s.blocks:
            out += [f"### {b.title}", ""]
            if b.missing:
                out += [b.missing, ""]
                continue
            out += md_table(b) + [""]
            out += [f"*{n}*" for n in b.notes] + ([""] if b.notes else [])
            if b.plot:
                out += [f"![{b.title}]({b.plot})", ""]
        out += [f"Note: {n}" for n in s.notes] + ([""] if s.notes else [])
        out += [f"**Answer:** {s.answer}"]
    out += ["", "## Columns", ""] + [f"- `{c}`: {m}" for c, m in glossary(sections)]
    return "\n".join(out) + "\n"


# --- HTML ------------------------------------------------------------------------------------

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .6em}
td{text-align:right;font-variant-numeric:tabular-nums}td:first-child{text-align:left}th{background:#f2f2f2}
blockquote{border-left:4px solid #999;margin:.6em 0;padding:.2em 1em;color:#444;background:#fafafa}
.answer{background:#eef6ee;border:1px solid #9c9;padding:.4em .8em}.note{color:#555;font-style:italic}
img{max-width:100%}code{background:#f2f2f2;padding:0 .2em}"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def html_table(b: TableBlock) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in b.header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_section(s: Section) -> str:
    who = _e(s.point.who) + ("" if s.point.verbatim else " (paraphrase: the mail itself is not in the review text)")
    quote = "".join(f"<p>{_e(p)}</p>" for p in s.point.question.split("\n\n"))
    parts = [f'<h2 id="{_e(s.point.id)}">{_e(s.point.title)}</h2>', f"<p><em>{who}</em></p>",
             f"<blockquote>{quote}</blockquote>"]
    if s.point.design:
        parts.append(f"<p>{_e(s.point.design)}</p>")
    for b in s.blocks:
        parts.append(f"<h3>{_e(b.title)}</h3>")
        if b.missing:
            parts.append(f"<p>{_e(b.missing)}</p>")
            continue
        parts.append(html_table(b))
        parts += [f'<p class="note">{_e(n)}</p>' for n in b.notes]
        if b.plot:
            parts.append(f'<p><img src="{_e(b.plot)}" alt="{_e(b.title)}"></p>')
    parts += [f'<p class="note">Note: {_e(n)}</p>' for n in s.notes]
    parts.append(f'<p class="answer"><strong>Answer:</strong> {_e(s.answer)}</p>')
    return "\n".join(parts)


def render_html(sections: list[Section], header: list[tuple[str, str]]) -> str:
    """The same content as :func:`render_markdown`, as one self-contained HTML page."""
    head = "".join(f"<li><strong>{_e(k)}</strong>: " + (f"<code>{_e(v)}</code>" if k in (
        "regenerate", "complete missing runs") else _e(v)) + "</li>" for k, v in header)
    glance = "".join(f'<li><a href="#{_e(s.point.id)}">{_e(s.point.title)}</a>: {_e(s.answer)}</li>'
                     for s in sections)
    cols = "".join(f"<li><code>{_e(c)}</code>: {_e(m)}</li>" for c, m in glossary(sections))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>RFC review answered</title><style>{CSS}</style></head><body>\n"
            "<h1>The RFC review answered from measured data</h1>\n"
            "<p>Figures: median over the runs; (a..b): min..max of 2-4 runs; [a..b]: IQR of 5 or more; "
            "n: runs with the step; reached k/n: runs that reached the target.</p>\n"
            f"<ul>{head}</ul>\n<h2>Answers at a glance</h2><ul>{glance}</ul>\n"
            + "\n".join(html_section(s) for s in sections)
            + f"\n<h2>Columns</h2><ul>{cols}</ul>\n</body></html>\n")


# --- entry point -----------------------------------------------------------------------------

@dataclass
class Review:
    markdown: Path
    html: Path
    plots: list[Path]
    sections: list[Section]


def write_review(out: Path, scenarios: Optional[list[str]] = None, plots: bool = True) -> Review:
    """Write ``out/review.md``, ``out/review.html`` and (unless ``plots`` is False: tests that
    read only the text) ``out/plots/*.png`` from ``out``'s folders."""
    out = Path(out)
    ev = Evidence(out, scenarios)
    sections = build_sections(ev, out / "plots" if plots else None)
    header = header_lines(ev, out)
    md = atomic_write(out / "review.md", lambda p: p.write_text(render_markdown(sections, header)))
    page = atomic_write(out / "review.html", lambda p: p.write_text(render_html(sections, header)))
    pngs = [out / b.plot for s in sections for b in s.blocks if b.plot]
    return Review(md, page, pngs, sections)
