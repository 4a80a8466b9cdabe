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
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.metrics import HEADLINE, METRICS, MOVE_KINDS, NUMERIC_COLUMNS
from harness.results import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REACHED_FRACTION = "reached_fraction"
# Every figure aggregated per arm and step: the numeric summary columns. ``reached`` (a
# yes/no per run) is summarised as reached_k / reached_n / reached_fraction instead.
STAT_METRICS = [m for m in NUMERIC_COLUMNS if m != "reached"]
# The figures compared, checked and tracked: the headline ones, with ``reached`` as a fraction.
HEADLINE_METRICS = [REACHED_FRACTION if m == "reached" else m for m in HEADLINE]
STATS_COLUMNS = ["arm", "step", "kind", "metric", "unit", "runs", "n", "median", "q1", "q3", "min", "max",
                 "reached_k", "reached_n", "reached_fraction"]


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


def step_positions(summary: pd.DataFrame) -> dict[str, float]:
    """Each step's position within its run (steps of a run are written in run order)."""
    if summary.empty:
        return {}
    pos = summary.groupby("run_id", sort=False).cumcount() if "run_id" in summary.columns \
        else pd.Series(range(len(summary)), index=summary.index)
    return pos.groupby(summary["step"], sort=False).min().astype(float).to_dict()


def ordered(summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
            step_order: Optional[list[str]] = None) -> tuple[list[str], list[str]]:
    """Arms in the scenario's order (then any others as met), steps in run order."""
    present_arms = list(dict.fromkeys(summary["arm"])) if not summary.empty else []
    arms = [a for a in (arm_order or []) if a in set(present_arms)]
    arms += [a for a in present_arms if a not in arms]
    present_steps = list(dict.fromkeys(summary["step"])) if not summary.empty else []
    pos = step_positions(summary)
    steps = [s for s in (step_order or []) if s in set(present_steps)]
    rest = [s for s in present_steps if s not in steps]
    steps += sorted(rest, key=lambda s: (pos.get(s, math.inf), present_steps.index(s)))
    return arms, steps


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
    g = long.groupby(keys + ["metric"], sort=False)["value"]
    stats = pd.DataFrame({
        "n": g.count(), "median": g.median(), "q1": g.quantile(0.25), "q3": g.quantile(0.75),
        "min": g.min(), "max": g.max()}).reset_index()

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


def step_overview(summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
                  step_order: Optional[list[str]] = None) -> pd.DataFrame:
    """One row per arm and step: kind, runs, reached_k, reached_n, reached_fraction."""
    cols = ["arm", "step", "kind", "runs", "reached_k", "reached_n", "reached_fraction"]
    stats = summary_stats(summary, arm_order, step_order)
    if stats.empty:
        return pd.DataFrame(columns=cols)
    return stats[cols].drop_duplicates(["arm", "step"]).reset_index(drop=True)



def write_summary_stats(out_dir: str | Path, summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
                        step_order: Optional[list[str]] = None) -> list[Path]:
    """Write ``summary_stats.csv`` and ``summary_stats.parquet`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = summary_stats(summary, arm_order, step_order)
    return [atomic_write(out_dir / "summary_stats.csv", lambda p: stats.to_csv(p, index=False)),
            atomic_write(out_dir / "summary_stats.parquet", lambda p: stats.to_parquet(p, index=False))]


# --- the scenario of a results folder, read leniently -------------------------------------

@dataclass
class ScenarioInfo:
    """What the analysis needs from a results folder's ``scenario.toml``.

    Read without the run-time checks (an arm's QEMU path need not exist on the machine
    that analyses the results), falling back to ``metadata.json``'s copy of the text.
    """

    name: str = ""
    arms: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    text: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None


def _default_step_label(i: int, step: dict[str, Any]) -> str:
    """The label load_scenario gives a step without one (kept in step with scenario.py)."""
    kind = step.get("kind")
    if kind == "run":
        return f"{i + 1}:run {str(step.get('command', '')).split()[0] if step.get('command') else ''}"
    if kind in MOVE_KINDS:
        return f"{i + 1}:{kind} {step.get('target_mib')}"
    if kind in ("background", "stop"):
        what = step.get("command") if kind == "background" else step.get("workload")
        return f"{i + 1}:{kind} {str(what or '').split()[0] if what else ''}"
    if kind == "sleep":
        return f"{i + 1}:sleep {float(step.get('seconds', 0)):g}s"
    return f"{i + 1}:measure"


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a table (a dict), else an empty one: metadata may lack any key."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def _read_metadata(out: Path) -> dict[str, Any]:
    import json
    try:
        meta = json.loads((out / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def scenario_info(out: str | Path, metadata: Optional[dict[str, Any]] = None) -> ScenarioInfo:
    """The scenario of results folder ``out`` (empty lists when none is recorded)."""
    out = Path(out)
    meta = metadata if metadata is not None else _read_metadata(out)
    scen = as_dict(meta.get("scenario"))
    toml_path = out / "scenario.toml"
    path: Optional[Path] = toml_path
    text: Optional[str] = toml_path.read_text() if toml_path.is_file() else None
    if text is None:
        text, path = (scen["text"] if isinstance(scen.get("text"), str) else None), None
    info = ScenarioInfo(name=scen["name"] if isinstance(scen.get("name"), str) else out.name,
                        text=text, path=path)
    if text is None:
        return info
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return info
    info.raw = raw
    if isinstance(raw.get("name"), str):
        info.name = raw["name"]
    info.arms = [a["name"] for a in as_list(raw.get("arms")) if isinstance(a, dict) and isinstance(a.get("name"), str)]
    info.steps = [s["label"] if isinstance(s.get("label"), str) else _default_step_label(i, s)
                  for i, s in enumerate(as_list(raw.get("steps"))) if isinstance(s, dict)]
    ref = as_dict(raw.get("reference"))
    info.reference = {arm: {k: float(v) for k, v in cols.items() if isinstance(v, (int, float))}
                      for arm, cols in ref.items() if isinstance(cols, dict)}
    return info


def headline_order() -> list[str]:
    """The headline figures in the order the report, compare and check show them."""
    return list(HEADLINE_METRICS)
