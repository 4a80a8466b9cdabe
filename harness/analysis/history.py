"""Nightly history, what it says: the trend of a figure night by night (with the builds
that changed and the nights where the series changed level: E-divisive change points,
:mod:`harness.analysis.changepoints`), and tonight against the last N nights, per headline
figure, with the NIGHT as the unit (:func:`against_history`, what ``check
--against-history`` uses). Decisions only: the stored dataset is
:mod:`harness.analysis.history_store`, the text and plots
:mod:`harness.analysis.history_render`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.analysis.changepoints import ChangePoint, e_divisive
from harness.analysis.decide import N_TOO_SMALL, NO_DATA, SAME, UNDECIDED, WORSE, change_pct, direction, floor_of
from harness.analysis.defaults import CONFIDENCE, DEFAULT_ALPHA, DEFAULT_LAST, MIN_NIGHTS
from harness.analysis.groups import (
    HEADLINE_METRICS,
    REACHED_FRACTION,
    STAT_METRICS,
    centre,
    reached_as_float,
    run_values,
    spread,
)
from harness.analysis.history_store import check_history_dir, load_history, one_scenario, safe_name, unique_runs
from harness.errors import HarnessError
from harness.results.folder import open_folder, ordered
from harness.results.metrics import MOVE_KINDS, TABLE_KINDS


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
    changes: dict[tuple[str, str], list[tuple[str, ChangePoint]]] = field(default_factory=dict)

def history_trend(history_dir: str | Path, scenario: Optional[str] = None,
                  metric: str = "thp_lost_per_ballooned_mib", arm: Optional[str] = None,
                  step: Optional[str] = None) -> Trend:
    """One line per night (and arm and step): median, IQR, min/max, n, and what build changed.

    Steps default to the balloon steps (the headline figures are about them). Its plot:
    :func:`harness.analysis.history_render.plot_trend`.
    """
    history_dir = Path(history_dir)
    if metric not in (*STAT_METRICS, REACHED_FRACTION):
        raise HarnessError(f"unknown metric {metric!r}: one of the numeric summary columns or reached_fraction")
    value_col = "reached" if metric == REACHED_FRACTION else metric
    hist = load_history(history_dir, scenario, columns=["run_id", "arm", "step", "kind", "folder", "build",
                                                        "harness_revision", "run_uid", value_col])
    name = one_scenario(hist, history_dir, scenario)
    hist = unique_runs(hist[hist["scenario"] == name])
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
    name = safe_name(folder.scenario.name)
    hist = load_history(history_dir, name)
    me = folder.path.resolve().name
    mine = {str(r.get("run_uid")) for r in folder.runs if r.get("run_uid")}
    drop = (hist["folder"] == me) & (hist["created"] == str(folder.metadata.get("created", "")))
    if mine and "run_uid" in hist.columns:
        drop |= hist["run_uid"].isin(mine)
    hist = unique_runs(hist[~drop])
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
