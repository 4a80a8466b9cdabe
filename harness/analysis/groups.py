"""Per arm and step statistics of the summary rows: medians, spreads, and "reached k/n".

Why medians and quartiles rather than means and standard deviations: a scenario has a
handful of repetitions (often 1 to 10), its figures are not normal (the THP ratio jumps
when an arm stops short, a slow boot skews settle times), and one outlier must not move
the headline. The median says what a typical run did, the IQR (q1..q3) how much runs
disagree, and min/max what the worst and best run did.

"reached k/n" travels with every figure: a THP ratio earned by ballooning less than asked
is not a win, so whoever reads a median must also see how many runs got there.

Pure functions on pandas frames (no VM); the report, ``compare``, ``check`` and the
history all read their numbers through here, so they agree with each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.render.numbers import fmt_number, fmt_spread
from harness.results import atomic_write, layout
from harness.results.folder import ordered
from harness.results.metrics import HEADLINE, METRICS, NUMERIC_COLUMNS

REACHED_FRACTION = "reached_fraction"
# Every figure aggregated per arm and step: the numeric summary columns. ``reached`` (a
# yes/no per run) is summarised as reached_k / reached_n / reached_fraction instead.
STAT_METRICS = [m for m in NUMERIC_COLUMNS if m != "reached"]
# The figures compared, checked and tracked: the headline ones, with ``reached`` as a fraction.
HEADLINE_METRICS = [REACHED_FRACTION if m == "reached" else m for m in HEADLINE]
STATS_COLUMNS = ["arm", "step", "kind", "metric", "unit", "runs", "n", "median", "q1", "q3", "min", "max",
                 "reached_k", "reached_n", "reached_fraction"]


def unit_of(metric: str) -> str:
    """The figure's unit from its definition (reached_fraction: a ratio)."""
    if metric == REACHED_FRACTION:
        return "ratio"
    return METRICS[metric].unit if metric in METRICS else ""


def fmt_metric(metric: str, v: Optional[float]) -> str:
    """One figure of ``metric`` as every table prints it."""
    return fmt_number(v, unit_of(metric))


def fmt_metric_spread(metric: str, st: Any) -> str:
    """A statistics row (n, median, q1, q3, min, max) of ``metric`` as a table cell."""
    return fmt_spread(int(st["n"]), st["median"], st["q1"], st["q3"], st["min"], st["max"], unit_of(metric))


def reached_as_float(values: pd.Series) -> pd.Series:
    """``reached`` as 1.0 / 0.0, NaN where a step has no target (run, sleep, measure)."""
    def one(v: Any) -> float:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return math.nan
        if isinstance(v, str):
            return 1.0 if v.strip().lower() in ("true", "yes", "1") else 0.0
        return 1.0 if bool(v) else 0.0
    return values.map(one).astype("float64")


def run_values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """One value per run (NaN dropped) of ``metric`` in ``rows``; reached as 0/1."""
    if metric in (REACHED_FRACTION, "reached"):
        if "reached" not in rows.columns:
            return np.array([], dtype=float)
        v = reached_as_float(rows["reached"])
    else:
        if metric not in rows.columns:
            return np.array([], dtype=float)
        v = pd.to_numeric(rows[metric], errors="coerce").astype("float64")
    return v.dropna().to_numpy()


def centre(metric: str, values: Iterable[float]) -> float:
    """The figure that stands for a group of runs: the median, or for reached the fraction."""
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if v.size == 0:
        return math.nan
    return float(v.mean()) if metric in (REACHED_FRACTION, "reached") else float(np.median(v))


def spread(frame: pd.DataFrame, keys: list[str], value: str = "value", centre_by_mean: bool = False,
           sort: bool = False) -> pd.DataFrame:
    """Per group of ``keys``: n, median (the mean with ``centre_by_mean``: a fraction of
    yes/no runs), q1, q3 (linear interpolation, pandas' default), min and max of ``value``."""
    g = frame.groupby(keys, sort=sort)[value]
    return pd.DataFrame({
        "n": g.count(), "median": g.mean() if centre_by_mean else g.median(), "q1": g.quantile(0.25),
        "q3": g.quantile(0.75), "min": g.min(), "max": g.max()}).reset_index()


def summary_stats(summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
                  step_order: Optional[list[str]] = None,
                  metrics: Optional[list[str]] = None) -> pd.DataFrame:
    """Tidy statistics: one row per arm, step and metric (see :data:`STATS_COLUMNS`).

    ``n`` counts the runs with a value for that metric (NaN is "not measured", not zero);
    ``runs`` the runs with a row for the step; ``reached_k``/``reached_n`` the runs whose
    balloon reached the target out of those with a target (0/0 and NaN fraction for steps
    that move no balloon). Quartiles use linear interpolation (pandas' default).
    """
    if summary is None or summary.empty:
        return pd.DataFrame(columns=STATS_COLUMNS)
    s = summary.reset_index(drop=True)
    wanted = [m for m in (metrics or STAT_METRICS) if m in s.columns]
    arms, steps = ordered(s, arm_order, step_order)
    keys = ["arm", "step"]
    values = s[keys + wanted].copy()
    for m in wanted:
        values[m] = pd.to_numeric(values[m], errors="coerce").astype("float64")
    long = values.melt(id_vars=keys, value_vars=wanted, var_name="metric").dropna(subset=["value"])
    stats = spread(long, keys + ["metric"])

    per_step = s.groupby(keys, sort=False)
    reached = reached_as_float(s["reached"]) if "reached" in s.columns else pd.Series(np.nan, index=s.index)
    info = pd.DataFrame({
        "kind": per_step["kind"].first() if "kind" in s.columns else None,
        "runs": per_step.size(),
        "reached_k": reached.groupby([s["arm"], s["step"]], sort=False).sum(min_count=0),
        "reached_n": reached.groupby([s["arm"], s["step"]], sort=False).count(),
    })
    info.index.names = keys
    info = info.reset_index()
    info["reached_k"] = info["reached_k"].fillna(0).astype(int)
    info["reached_n"] = info["reached_n"].fillna(0).astype(int)
    info["reached_fraction"] = [k / n if n else math.nan for k, n in zip(info["reached_k"], info["reached_n"])]

    out = stats.merge(info, on=keys, how="left")
    out["unit"] = out["metric"].map(lambda m: METRICS[m].unit if m in METRICS else "")
    arm_pos = {a: i for i, a in enumerate(arms)}
    step_pos = {st: i for i, st in enumerate(steps)}
    metric_pos = {m: i for i, m in enumerate(wanted)}
    out = out.assign(_a=out["arm"].map(arm_pos), _s=out["step"].map(step_pos), _m=out["metric"].map(metric_pos))
    out = out.sort_values(["_a", "_s", "_m"], kind="stable").drop(columns=["_a", "_s", "_m"])
    out["n"] = out["n"].astype(int)
    return out[STATS_COLUMNS].reset_index(drop=True)


def write_summary_stats(out_dir: str | Path, summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
                        step_order: Optional[list[str]] = None) -> list[Path]:
    """Write ``summary_stats.csv`` and ``summary_stats.parquet`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = summary_stats(summary, arm_order, step_order)
    stem = out_dir / layout.SUMMARY_STATS
    return [atomic_write(stem.with_suffix(".csv"), lambda p: stats.to_csv(p, index=False)),
            atomic_write(stem.with_suffix(".parquet"), lambda p: stats.to_parquet(p, index=False))]
