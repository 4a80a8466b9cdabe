"""Nightly history: every finished results folder appended to one Parquet dataset.

Why a Hive-partitioned Parquet dataset: it is plain files (no database server on a
bare-metal runner), appending is writing one new file, and pandas, pyarrow and DuckDB
read it as one table filtered by folder names::

    history/summary/scenario=<name>/host=<hostname>/date=<YYYY-MM-DD>/<results-folder>.parquet
    history/metadata/scenario=<name>/host=<hostname>/date=<YYYY-MM-DD>/<results-folder>.json

    pd.read_parquet("history/summary")                       # every night, every host
    duckdb: SELECT * FROM read_parquet('history/summary/**/*.parquet', hive_partitioning=1)

Each file is written under a temporary name (a dot file, which dataset readers skip) and
renamed, so a reader never sees half a file and a crash leaves no broken one. The file's
name is the results folder's, in the partition of its own date and host, so appending
the same folder twice replaces it instead of counting it twice.

``history_trend`` answers "did it get worse, and since which build?" (one line per night,
with the build hashes that changed from the night before, and the nights where the series
changed level: E-divisive change points, :mod:`harness.analysis.changepoints`);
``against_history`` is what ``check --against-history`` uses: tonight against the last N
nights, per headline figure, with the NIGHT as the unit (see :func:`against_history`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.analysis.changepoints import ChangePoint, e_divisive
from harness.analysis.decide import (
    N_TOO_SMALL,
    NO_DATA,
    SAME,
    UNDECIDED,
    WORSE,
    change_pct,
    direction,
    floor_of,
)
from harness.analysis.defaults import CONFIDENCE, DEFAULT_ALPHA, DEFAULT_LAST, MIN_NIGHTS
from harness.analysis.groups import (
    HEADLINE_METRICS,
    REACHED_FRACTION,
    STAT_METRICS,
    centre,
    fmt_metric,
    reached_as_float,
    run_values,
    spread,
)
from harness.errors import HarnessError
from harness.render.numbers import fmt_p, fmt_pct
from harness.render.text import text_table
from harness.results import atomic_write
from harness.results.folder import as_dict, as_list, open_folder, ordered
from harness.results.identity import fingerprint
from harness.results.metrics import METRICS, MOVE_KINDS, SUMMARY_COLUMNS, TABLE_KINDS

PARTITIONS = ("scenario", "host", "date")
EXTRA_COLUMNS = ["folder", "created", "harness_revision", "scenario_sha256", "build", "run_uid"]
_STRING_COLUMNS = {"run_id", "arm", "step", "kind", "outcome", "accel", *EXTRA_COLUMNS}


def _schema():
    import pyarrow as pa
    fields = []
    for c in [*SUMMARY_COLUMNS, *EXTRA_COLUMNS]:
        if c in _STRING_COLUMNS:
            fields.append(pa.field(c, pa.string()))
        elif c == "rep":
            fields.append(pa.field(c, pa.int64()))
        elif c == "reached":
            fields.append(pa.field(c, pa.bool_()))
        else:
            fields.append(pa.field(c, pa.float64()))
    return pa.schema(fields)


def _partitioning():
    import pyarrow as pa
    import pyarrow.dataset as ds
    return ds.partitioning(pa.schema([(p, pa.string()) for p in PARTITIONS]), flavor="hive")


def _safe(value: str) -> str:
    """A partition value: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value) or "unknown"


def check_history_dir(history_dir: str | Path, create: bool = False) -> bool:
    """True when ``history_dir`` holds a history; False when absent or empty.

    Refuses a folder that exists, is not empty and has no ``summary/`` dataset: writing
    into someone's home or a results folder by a wrong argument must fail loudly.
    """
    h = Path(history_dir)
    if not h.exists():
        if create:
            h.mkdir(parents=True)
        return False
    if not h.is_dir():
        raise HarnessError(f"{h} is not a history folder (it is a file)")
    if (h / "summary").is_dir():
        return any((h / "summary").rglob("*.parquet"))
    if any(h.iterdir()):
        raise HarnessError(f"{h} is not a history folder: it is not empty and holds no summary/ dataset "
                           f"(refusing to use it; give an empty or new folder, or an existing history)")
    return False


# --- appending ----------------------------------------------------------------------------

def _date_of(metadata: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    created = metadata.get("created")
    if isinstance(created, str) and re.match(r"\d{4}-\d{2}-\d{2}", created):
        return created[:10]
    started = [float(r["started"]) for r in runs if isinstance(r.get("started"), (int, float))]
    if started:
        return dt.datetime.fromtimestamp(min(started)).strftime("%Y-%m-%d")
    return dt.date.today().isoformat()


def _host_of(metadata: dict[str, Any]) -> str:
    """The host partition: the recorded hostname, the shards' hosts joined by +, else this host."""
    def name(meta: Any) -> Optional[str]:
        host = as_dict(as_dict(meta).get("host"))
        return host["hostname"] if isinstance(host.get("hostname"), str) else None

    names = sorted({n for n in (name(s) for s in as_list(metadata.get("shards"))) if n})
    if names:
        return "+".join(names)
    return name(metadata) or socket.gethostname()



def history_frame(summary: pd.DataFrame, extra: dict[str, str]) -> pd.DataFrame:
    """The summary rows in the history's fixed column types (old folders: missing columns null)."""
    df = pd.DataFrame({c: summary[c] if c in summary.columns else None for c in SUMMARY_COLUMNS},
                      index=summary.index).reset_index(drop=True)
    for c in SUMMARY_COLUMNS:
        if c == "reached":
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                              else bool(v)).astype(object)
        elif c == "rep":
            df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype("int64")
        elif c in _STRING_COLUMNS:
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                              else str(v)).astype(object)
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in EXTRA_COLUMNS:
        df[c] = extra.get(c)
    return df


@dataclass
class Appended:
    summary: Path
    metadata: Path
    rows: int


def append_history(out: str | Path, history_dir: str | Path, date: Optional[str] = None) -> Optional[Appended]:
    """Append finished results folder ``out`` to ``history_dir``; None when it has no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_history_dir(history_dir, create=True)
    history_dir = Path(history_dir)
    folder = open_folder(out)
    if folder.summary.empty:
        return None
    meta = folder.metadata
    scen_text = folder.scenario.text
    fp = fingerprint(meta, folder.summary, scen_text)
    name = folder.path.resolve().name
    extra = {"folder": name, "created": str(meta.get("created", "")),
             "harness_revision": str(meta.get("harness_revision", "")),
             "scenario_sha256": fp.get("scenario", ""),
             "build": json.dumps({k: v for k, v in fp.items() if k != "accelerator"}, sort_keys=True)}
    part = Path(f"scenario={_safe(folder.scenario.name)}", f"host={_safe(_host_of(meta))}",
                f"date={date or _date_of(meta, folder.runs)}")
    frame = history_frame(folder.summary, extra)
    uids = {str(r.get("run_id")): str(r["run_uid"]) for r in folder.runs if r.get("run_uid")}
    frame["run_uid"] = frame["run_id"].map(lambda r: uids.get(str(r))).astype(object)
    table = pa.Table.from_pandas(frame, schema=_schema(), preserve_index=False)
    summary_path = history_dir / "summary" / part / f"{name}.parquet"
    meta_path = history_dir / "metadata" / part / f"{name}.json"
    atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"))
    atomic_write(summary_path, lambda p: pq.write_table(table, p))
    return Appended(summary_path, meta_path, table.num_rows)


# --- reading ------------------------------------------------------------------------------

def load_history(history_dir: str | Path, scenario: Optional[str] = None,
                 columns: Optional[list[str]] = None) -> pd.DataFrame:
    """Every stored summary row (with scenario, host and date columns), optionally one
    scenario and only some ``columns`` (reading fewer columns is faster)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    names = [*SUMMARY_COLUMNS, *EXTRA_COLUMNS, *PARTITIONS]
    if columns is not None:
        names = [c for c in names if c in set(columns) | set(PARTITIONS)]
    if not check_history_dir(history_dir):
        return pd.DataFrame(columns=names)
    schema = pa.schema([*_schema(), *[pa.field(p, pa.string()) for p in PARTITIONS]])
    dataset = ds.dataset(Path(history_dir) / "summary", format="parquet", partitioning=_partitioning(),
                         schema=schema)
    filt = (ds.field("scenario") == _safe(scenario)) if scenario else None
    # Many small files (one per night): one thread reads them faster than a pool on small hosts.
    table = dataset.to_table(columns=names, filter=filt, use_threads=False)
    df = table.to_pandas()
    for c in df.columns:  # plain object strings, whatever pandas' default string dtype
        if c in _STRING_COLUMNS or c in PARTITIONS:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def _one_scenario(hist: pd.DataFrame, history_dir: Path, scenario: Optional[str]) -> str:
    names = sorted(hist["scenario"].dropna().unique()) if not hist.empty else []
    if scenario:
        if not names:
            raise HarnessError(f"{history_dir}: no results of scenario {scenario!r} in the history")
        return _safe(scenario)
    if not names:
        raise HarnessError(f"{history_dir}: the history holds no results yet")
    if len(names) > 1:
        raise HarnessError(f"{history_dir} holds several scenarios ({', '.join(names)}): pass --scenario")
    return names[0]


def _builds_by_date(hist: pd.DataFrame) -> dict[str, dict[str, set[str]]]:
    out: dict[str, dict[str, set[str]]] = {}
    cols = [c for c in ("date", "build", "harness_revision") if c in hist.columns]
    for row in hist[cols].drop_duplicates().itertuples(index=False):
        keys = out.setdefault(row.date, {})
        try:
            build = json.loads(row.build) if isinstance(getattr(row, "build", None), str) else {}
        except ValueError:
            build = {}
        for k, v in build.items():
            keys.setdefault(k, set()).add(v)
        rev = getattr(row, "harness_revision", None)
        if rev:
            keys.setdefault("harness revision", set()).add(rev)
    return out


def changed_builds(hist: pd.DataFrame) -> dict[str, list[str]]:
    """date -> the build hashes (scenario, QEMU, module, harness revision) that differ from the night before."""
    by_date = _builds_by_date(hist)
    changed: dict[str, list[str]] = {}
    prev: Optional[dict[str, set[str]]] = None
    for date in sorted(by_date):
        cur = by_date[date]
        changed[date] = [] if prev is None else sorted(k for k in set(cur) | set(prev) if cur.get(k) != prev.get(k))
        prev = cur
    return changed


TREND_COLUMNS = ["date", "arm", "step", "metric", "n", "median", "q1", "q3", "min", "max", "folders", "changed"]


@dataclass
class Trend:
    scenario: str
    metric: str
    table: pd.DataFrame
    points: pd.DataFrame          # every run: date, arm, step, value
    png: Optional[Path] = None
    changes: dict[tuple[str, str], list[tuple[str, ChangePoint]]] = field(default_factory=dict)
    # (arm, step) -> [(the first night after the change, the change point)]


def history_trend(history_dir: str | Path, scenario: Optional[str] = None,
                  metric: str = "thp_lost_per_ballooned_mib", arm: Optional[str] = None,
                  step: Optional[str] = None, png: Optional[str | Path] = None) -> Trend:
    """One line per night (and arm and step): median, IQR, min/max, n, and what build changed.

    Steps default to the balloon steps (the headline figures are about them). ``png``:
    also draw the trend (every run as a point, the median line, the IQR band).
    """
    history_dir = Path(history_dir)
    if metric not in (*STAT_METRICS, REACHED_FRACTION):
        raise HarnessError(f"unknown metric {metric!r}: one of the numeric summary columns or reached_fraction")
    value_col = "reached" if metric == REACHED_FRACTION else metric
    hist = load_history(history_dir, scenario, columns=["run_id", "arm", "step", "kind", "folder", "build",
                                                        "harness_revision", "run_uid", value_col])
    name = _one_scenario(hist, history_dir, scenario)
    hist = _unique_runs(hist[hist["scenario"] == name])
    if arm is not None:
        if arm not in set(hist["arm"]):
            raise HarnessError(f"no arm named {arm!r} in the history of {name} "
                               f"(arms: {', '.join(sorted(hist['arm'].unique()))})")
        hist = hist[hist["arm"] == arm]
    if step is not None:
        if step not in set(hist["step"]):
            raise HarnessError(f"no step labelled {step!r} in the history of {name} "
                               f"(steps: {', '.join(sorted(hist['step'].unique()))})")
        rows = hist[hist["step"] == step]
    else:
        moves = hist["kind"].isin(MOVE_KINDS)
        rows = hist[moves] if moves.any() else hist
    changed = changed_builds(hist)
    arms, steps = ordered(rows.sort_values(["date", "folder", "run_id"]))
    values = (reached_as_float(rows["reached"]) if metric == REACHED_FRACTION
              else pd.to_numeric(rows[metric], errors="coerce").astype("float64"))
    pts = pd.DataFrame({"date": rows["date"], "arm": rows["arm"], "step": rows["step"], "value": values,
                        "folder": rows["folder"]}).dropna(subset=["value"])
    table = spread(pts, ["date", "arm", "step"], centre_by_mean=metric == REACHED_FRACTION, sort=True)
    table["folders"] = pts.groupby(["date", "arm", "step"], sort=True)["folder"].nunique().to_numpy()
    table["metric"] = metric
    table["changed"] = table["date"].map(lambda d: ", ".join(changed.get(d, [])))
    if not table.empty:
        table["_a"] = table["arm"].map({x: i for i, x in enumerate(arms)})
        table["_s"] = table["step"].map({x: i for i, x in enumerate(steps)})
        table = table.sort_values(["_a", "_s", "date"]).drop(columns=["_a", "_s"]).reset_index(drop=True)
    table["n"] = table["n"].astype(int)
    trend = Trend(name, metric, table[TREND_COLUMNS], pts[["date", "arm", "step", "value"]].reset_index(drop=True))
    trend.changes = change_points(trend.table)
    if png is not None:
        trend.png = plot_trend(trend, Path(png))
    return trend


def change_points(table: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, ChangePoint]]]:
    """Per arm and step, the nights where the series of nightly medians changed level
    (E-divisive means, permutation p <= 0.05, at least 3 nights a side)."""
    out: dict[tuple[str, str], list[tuple[str, ChangePoint]]] = {}
    for (a, st), g in table.groupby(["arm", "step"], sort=False):
        g = g.sort_values("date").dropna(subset=["median"])
        found = e_divisive(g["median"].to_numpy(dtype=float))
        if found:
            dates = list(g["date"])
            out[(a, st)] = [(dates[c.index], c) for c in found]
    return out


def format_trend(trend: Trend) -> str:
    """The trend as text: per arm and step, one line per night."""
    m = METRICS.get(trend.metric)
    unit = f" [{m.unit}]" if m and m.unit else ""
    lines = [f"history of {trend.scenario}: {trend.metric}{unit}" +
             (f", {m.better} is better" if m and m.better else "")]
    for (a, st), g in trend.table.groupby(["arm", "step"], sort=False):
        lines += ["", f"{a} / {st}:"]
        f = lambda v: fmt_metric(trend.metric, v)  # noqa: E731
        rows = [[r.date, str(r.n), f(r.median), f"{f(r.q1)}..{f(r.q3)}", f"{f(r.min)}..{f(r.max)}",
                 r.changed or "-"] for r in g.itertuples()]
        lines.append(text_table(["date", "n", "median", "IQR", "min..max", "changed since the night before"],
                                rows, left=1, last_left=True))
        found = trend.changes.get((a, st), [])
        nights = g["date"].nunique()
        if found:
            lines += [f"change point: from {d}: median {f(c.before)} -> {f(c.after)} (E-divisive, permutation "
                      f"p = {c.p_value:.3f})" for d, c in found]
        else:
            lines.append("change points: none" + (" (E-divisive needs 6 nights or more)" if nights < 6 else
                                                  " (E-divisive, permutation p <= 0.05)"))
    if trend.png:
        lines += ["", f"plot: {trend.png}"]
    return "\n".join(lines)


def plot_trend(trend: Trend, path: Path) -> Path:
    """Median per night (line), IQR (band), every run (points); dotted lines where a build changed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    dates = sorted(trend.table["date"].unique())
    x_of = {d: i for i, d in enumerate(dates)}
    fig, ax = plt.subplots(figsize=(max(6.0, min(20.0, 0.35 * len(dates) + 4)), 4.2))
    for (a, st), g in trend.table.groupby(["arm", "step"], sort=False):
        x = g["date"].map(x_of).to_numpy()
        line, = ax.plot(x, g["median"], marker="o", markersize=3, label=f"{a} / {st} (median)")
        ax.fill_between(x, g["q1"], g["q3"], color=line.get_color(), alpha=0.2)
        p = trend.points[(trend.points["arm"] == a) & (trend.points["step"] == st)]
        ax.scatter(p["date"].map(x_of), p["value"], s=8, color=line.get_color(), alpha=0.5)
    for d, ch in zip(trend.table["date"], trend.table["changed"]):
        if ch:
            ax.axvline(x_of[d] - 0.5, color="grey", linestyle=":", linewidth=0.8)
    for found in trend.changes.values():
        for d, _ in found:
            ax.axvline(x_of[d] - 0.5, color="red", linestyle="--", linewidth=0.8)
    step = max(1, len(dates) // 15)
    ax.set_xticks(range(0, len(dates), step), dates[::step], rotation=45, ha="right", fontsize=7)
    m = METRICS.get(trend.metric)
    ax.set_ylabel(f"{trend.metric}" + (f" [{m.unit}]" if m and m.unit else ""))
    ax.set_title(f"{trend.scenario}: {trend.metric} per night (dotted: a build changed; dashed: change point)",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- tonight against the last nights ------------------------------------------------------

HISTORY_CHECK_COLUMNS = ["arm", "step", "metric", "n_now", "median_now", "n_history", "median_history",
                         "change_pct", "shift", "ci_low", "ci_high", "p_value", "significant", "verdict",
                         "reps_needed", "regression", "p_holm"]


@dataclass
class HistoryCheck:
    history_dir: Path
    last: int
    alpha: float
    nights: list[str] = field(default_factory=list)
    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HISTORY_CHECK_COLUMNS))
    note: str = ""

    @property
    def regressions(self) -> pd.DataFrame:
        return self.rows[self.rows["regression"].astype(bool)] if not self.rows.empty else self.rows


def _unique_runs(hist: pd.DataFrame) -> pd.DataFrame:
    """One row per run and step: a run appended twice (a shard, then the merged folder it
    went into) counts once. Runs are told apart by ``run_uid`` (their run.json's id) where
    the history has it, else by folder, run id and date."""
    if hist.empty:
        return hist
    uid = hist["run_uid"] if "run_uid" in hist.columns else pd.Series(None, index=hist.index, dtype=object)
    fallback = hist["folder"].astype(str) + "/" + hist["run_id"].astype(str) + "@" + hist["date"].astype(str)
    key = uid.where(uid.notna() & (uid.astype(str) != ""), fallback)
    return hist.assign(_run=key).drop_duplicates(["_run", "step"], keep="last").drop(columns="_run")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN): the k-th smallest of m p-values is
    multiplied by (m - k + 1), then made monotone; rejecting where adjusted p < alpha keeps
    the chance of any false rejection in the family at most alpha."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def night_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One value per night (rows in date order) of every headline figure: the nightly median,
    for reached_fraction the fraction of the night's runs that reached (NaN: no data)."""
    cols = [m for m in HEADLINE_METRICS if m != REACHED_FRACTION and m in rows.columns]
    values = rows[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    table = values.groupby(rows["date"], sort=True).median()
    if "reached" in rows.columns:
        table[REACHED_FRACTION] = reached_as_float(rows["reached"]).groupby(rows["date"], sort=True).mean()
    return table


def night_decision(metric: str, nights: np.ndarray, now: float, alpha: float) -> dict[str, Any]:
    """Tonight's centre against the centres of past nights, the night being the unit.

    Runs of one night share that night's host state (page cache, khugepaged, the build),
    so pooling the runs of several nights as one sample mistakes night-to-night drift for
    a difference ("worse" in 14.8 % of nights against a nominal 2.5 %). Instead: how far
    tonight's centre lies from the past nights' centres, in units of their night-to-night
    spread, as a new observation from the same distribution would (Student's prediction
    interval: t = (now - mean) / (sd * sqrt(1 + 1/k)), k - 1 degrees of freedom).

    A rank test over nights (tonight's rank among k + 1 nights) would need 39 nights to
    reach 0.025 one-sided; the prediction interval can decide from MIN_NIGHTS nights on.
    Guard against its normality assumption: a "worse" or "better" also needs tonight
    outside the range of every past night and a shift of at least the effect floor.
    """
    from scipy.stats import t as student
    k = int(nights.size)
    floor = floor_of(metric)
    row: dict[str, Any] = {"n_history": k, "median_history": float(np.mean(nights)) if k else math.nan,
                           "shift": math.nan, "ci_low": -math.inf, "ci_high": math.inf, "p_value": math.nan,
                           "reps_needed": 0}
    if k == 0 or math.isnan(now):
        return {**row, "verdict": NO_DATA}
    if k < MIN_NIGHTS:
        return {**row, "verdict": N_TOO_SMALL, "reps_needed": MIN_NIGHTS}
    mean, sd = float(np.mean(nights)), float(np.std(nights, ddof=1))
    shift = now - mean
    scale = sd * math.sqrt(1 + 1 / k)
    half = float(student.ppf(1 - (1 - CONFIDENCE) / 2, k - 1)) * scale
    if scale > 0:
        p = float(2 * student.sf(abs(shift) / scale, k - 1))
    else:
        p = 1.0 if shift == 0 else 0.0
    outside = now > float(np.max(nights)) or now < float(np.min(nights))
    if p < alpha and abs(shift) >= floor and outside and shift != 0:
        verdict = direction(metric, mean, now) or ("higher" if shift > 0 else "lower")
    elif floor > 0 and -floor <= shift - half and shift + half <= floor:
        verdict = SAME
    else:
        verdict = UNDECIDED
    return {**row, "median_history": mean, "shift": shift, "ci_low": shift - half, "ci_high": shift + half,
            "p_value": p, "verdict": verdict}


def against_history(out: str | Path, history_dir: str | Path, last: int = DEFAULT_LAST,
                    alpha: float = DEFAULT_ALPHA) -> HistoryCheck:
    """Each headline figure of ``out`` against the last ``last`` nights, night by night.

    Same scenario and accelerator only; ``out``'s own runs (if appended already, as itself
    or as a shard) are left out. Each past night and tonight are reduced to their centre
    (median; reached_fraction: the fraction of runs that reached), and tonight is judged
    against the spread of the past nights' centres (:func:`night_decision`). Fewer than
    MIN_NIGHTS nights with data: "n too small", never a silent pass. A regression is a
    "worse" verdict whose Holm-adjusted p (over every row of the check) is below alpha.
    """
    if not isinstance(last, int) or last < 1:
        raise HarnessError(f"--last must be at least 1 night, got {last}")
    history_dir = Path(history_dir)
    check = HistoryCheck(history_dir, last, alpha)
    folder = open_folder(out)
    if not check_history_dir(history_dir):
        check.note = f"no history yet in {history_dir}: nothing to compare against"
        return check
    name = _safe(folder.scenario.name)
    hist = load_history(history_dir, name)
    me = folder.path.resolve().name
    mine = {str(r.get("run_uid")) for r in folder.runs if r.get("run_uid")}
    drop = (hist["folder"] == me) & (hist["created"] == str(folder.metadata.get("created", "")))
    if mine and "run_uid" in hist.columns:
        drop |= hist["run_uid"].isin(mine)
    hist = _unique_runs(hist[~drop])
    accel = sorted({str(a) for a in folder.summary.get("accel", pd.Series([], dtype=object)).dropna()})
    if accel and not hist.empty:
        hist = hist[hist["accel"].isin(accel)]
    if hist.empty:
        check.note = f"no earlier nights of {name} ({', '.join(accel) or 'any accelerator'}) in {history_dir}"
        return check
    check.nights = sorted(hist["date"].unique())[-last:]
    past = hist[hist["date"].isin(check.nights)]
    s = folder.summary
    s = s[s["kind"].isin(TABLE_KINDS)] if "kind" in s.columns else s
    arms, steps = ordered(s, folder.scenario.arms, folder.scenario.steps)
    rows = []
    for a in arms:
        for st in steps:
            now = s[(s["arm"] == a) & (s["step"] == st)]
            then = past[(past["arm"] == a) & (past["step"] == st)]
            if now.empty or then.empty:
                continue
            nightly = night_table(then)
            for metric in HEADLINE_METRICS:
                vn = run_values(now, metric)
                centres = nightly[metric].dropna().to_numpy(dtype=float) if metric in nightly else np.array([])
                if vn.size == 0 or centres.size == 0:
                    continue
                d = night_decision(metric, centres, centre(metric, vn), alpha)
                rows.append({"arm": a, "step": st, "metric": metric, "n_now": int(vn.size),
                             "median_now": centre(metric, vn), **d,
                             "change_pct": change_pct(d["median_history"], centre(metric, vn)),
                             "significant": not math.isnan(d["p_value"]) and d["p_value"] < alpha})
    # One exit code decides over every arm, step and figure: a regression must also pass
    # Holm's adjustment over them all, so the night fails falsely in at most alpha of nights.
    table = pd.DataFrame(rows, columns=[c for c in HISTORY_CHECK_COLUMNS if c not in ("regression", "p_holm")])
    table["p_holm"] = holm(table["p_value"].to_numpy(dtype=float)) if not table.empty else []
    table["regression"] = (table["verdict"] == WORSE) & (table["p_holm"] < alpha)
    check.rows = table[HISTORY_CHECK_COLUMNS]
    return check


def format_history_check(check: HistoryCheck) -> str:
    if check.note:
        return f"history: {check.note}"
    head = (f"against the last {len(check.nights)} night(s) in {check.history_dir} "
            f"({check.nights[0]}..{check.nights[-1]}), one value per night (its median): tonight against "
            f"the past nights' spread (Student prediction interval, at least {MIN_NIGHTS} nights), "
            f"alpha {check.alpha:g}, a regression also after Holm over the {len(check.rows)} rows:")
    if check.rows.empty:
        return head + " no common arm and step with data"
    rows = []
    for r in check.rows.itertuples():
        mark = "REGRESSION" if r.regression else (
            f"n too small: {r.reps_needed} nights needed" if r.verdict == N_TOO_SMALL else
            f"{r.verdict} (not after Holm: p {fmt_p(r.p_holm)})" if r.verdict == WORSE else r.verdict)
        rows.append([r.arm, r.step, r.metric, fmt_metric(r.metric, r.median_history), str(r.n_history),
                     fmt_metric(r.metric, r.median_now), str(r.n_now), fmt_pct(r.change_pct),
                     fmt_metric(r.metric, r.shift), fmt_p(r.p_value), mark])
    return head + "\n" + text_table(["arm", "step", "metric", "past nights", "nights", "tonight", "runs", "change",
                                      "shift", "p", ""], rows, left=3, last_left=True)
