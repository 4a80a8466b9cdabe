"""``balloon-harness compare A B``: two results folders, or two arms, figure by figure.

For every arm (when comparing folders), step and headline figure: the medians of A and B,
the Hodges-Lehmann shift of B against A with its confidence interval, the two-sided
Mann-Whitney U p-value, and the decision of :mod:`harness.analysis.decide` (better,
worse, same, undecided, or "n too small: N reps/arm needed").

Comparing results of different scenarios or builds is refused (naming the difference)
unless ``force`` (:mod:`harness.results.identity`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.analysis.decide import Decision, decide
from harness.analysis.defaults import CONFIDENCE, DEFAULT_ALPHA
from harness.analysis.groups import HEADLINE_METRICS, fmt_metric, run_values
from harness.errors import HarnessError
from harness.render.numbers import fmt_p, fmt_pct
from harness.render.text import text_table
from harness.results.folder import ResultsFolder, ScenarioInfo, open_folder, ordered
from harness.results.identity import refuse_if_different
from harness.results.metrics import TABLE_KINDS

COMPARE_KINDS = TABLE_KINDS
COMPARISON_COLUMNS = ["arm_a", "arm_b", "step", "metric", "n_a", "median_a", "n_b", "median_b",
                      "change_pct", "shift", "ci_low", "ci_high", "p_value", "significant", "verdict",
                      "reps_needed", "note"]


@dataclass
class Side:
    """One side of a comparison: a folder, or one arm of it (``DIR:arm``)."""

    folder: ResultsFolder
    arm: Optional[str] = None

    @property
    def label(self) -> str:
        return f"{self.folder.path}:{self.arm}" if self.arm else str(self.folder.path)


def parse_side(spec: str) -> Side:
    """``DIR`` or ``DIR:arm``; refuses unknown folders and arms, naming the ones there are."""
    p = Path(spec)
    if p.is_dir() or ":" not in spec:
        return Side(open_folder(p))
    d, arm = spec.rsplit(":", 1)
    folder = open_folder(d)
    arms = folder.arm_order()
    if arm not in arms:
        raise HarnessError(f"{spec}: no arm named {arm!r} in {d} (arms with results: "
                           f"{', '.join(arms) or 'none'})")
    return Side(folder, arm)


def decision_row(d: Decision, arm_a: str, arm_b: str, step: str) -> dict[str, Any]:
    return {"arm_a": arm_a, "arm_b": arm_b, "step": step, "metric": d.metric, "n_a": d.n_a,
            "median_a": d.median_a, "n_b": d.n_b, "median_b": d.median_b, "change_pct": d.change_pct,
            "shift": d.shift, "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value,
            "significant": d.significant, "verdict": d.verdict, "reps_needed": d.reps_needed, "note": d.note}


def compare_rows(sa: pd.DataFrame, arm_a: str, sb: pd.DataFrame, arm_b: str, steps: list[str],
                 metrics: list[str], alpha: float) -> list[dict[str, Any]]:
    """One row per step and metric for arm_a of ``sa`` against arm_b of ``sb``."""
    rows = []
    ga = {k: v for k, v in sa[sa["arm"] == arm_a].groupby("step", sort=False)}
    gb = {k: v for k, v in sb[sb["arm"] == arm_b].groupby("step", sort=False)}
    for step in steps:
        ra, rb = ga.get(step), gb.get(step)
        for metric in metrics:
            va = run_values(ra, metric) if ra is not None else np.array([])
            vb = run_values(rb, metric) if rb is not None else np.array([])
            if va.size == 0 and vb.size == 0:
                continue
            rows.append(decision_row(decide(metric, va, vb, alpha), arm_a, arm_b, step))
    return rows


@dataclass
class Comparison:
    a: str
    b: str
    alpha: float
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _steps(summary: pd.DataFrame, info: ScenarioInfo) -> list[str]:
    s = summary[summary["kind"].isin(COMPARE_KINDS)] if "kind" in summary.columns else summary
    _, steps = ordered(s, info.arms, info.steps)
    return steps


def compare(a: str | Side, b: str | Side, alpha: float = DEFAULT_ALPHA, force: bool = False,
            metrics: Optional[list[str]] = None) -> Comparison:
    """Compare two folders (every common arm) or two arms (``DIR:arm`` on either side)."""
    if not 0 < alpha < 1:
        raise HarnessError(f"--alpha must be between 0 and 1, got {alpha}")
    sa = a if isinstance(a, Side) else parse_side(a)
    sb = b if isinstance(b, Side) else parse_side(b)
    notes = refuse_if_different([sa.folder, sb.folder], force)
    metrics = metrics or list(HEADLINE_METRICS)
    fa, fb = sa.folder, sb.folder
    if sa.arm or sb.arm:
        arm_a = sa.arm or sb.arm or ""
        arm_b = sb.arm or sa.arm or ""
        for side, arm in ((sa, arm_a), (sb, arm_b)):
            if arm not in side.folder.arm_order():
                raise HarnessError(f"{side.folder.path}: no arm named {arm!r} (arms with results: "
                                   f"{', '.join(side.folder.arm_order()) or 'none'})")
        pairs = [(arm_a, arm_b)]
    else:
        arms_a, arms_b = fa.arm_order(), fb.arm_order()
        pairs = [(x, x) for x in arms_a if x in arms_b]
        notes += [f"arm {x} only in A" for x in arms_a if x not in arms_b]
        notes += [f"arm {x} only in B" for x in arms_b if x not in arms_a]
    steps_a, steps_b = _steps(fa.summary, fa.scenario), _steps(fb.summary, fb.scenario)
    steps = [s for s in steps_a if s in steps_b]
    notes += [f"step {s!r} only in A" for s in steps_a if s not in steps_b]
    notes += [f"step {s!r} only in B" for s in steps_b if s not in steps_a]
    rows: list[dict[str, Any]] = []
    for arm_a, arm_b in pairs:
        rows += compare_rows(fa.summary, arm_a, fb.summary, arm_b, steps, metrics, alpha)
    return Comparison(sa.label, sb.label, alpha, pd.DataFrame(rows, columns=COMPARISON_COLUMNS), notes)


def _interval(metric: str, lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "-"
    return f"{fmt_metric(metric, lo)}..{fmt_metric(metric, hi)}"


def format_comparison(c: Comparison) -> str:
    """The comparison as a terminal table with its legend."""
    same_arm = (c.rows["arm_a"] == c.rows["arm_b"]).all() if not c.rows.empty else True
    header = ["arm" if same_arm else "arms", "step", "metric", "A", "n", "B", "n", "change", "shift",
              f"{CONFIDENCE:.0%} CI", "p", "decision"]
    rows = []
    for r in c.rows.itertuples():
        arm = r.arm_a if same_arm else f"{r.arm_a} vs {r.arm_b}"
        verdict = f"n too small: {r.reps_needed} reps/arm" if r.verdict == "n too small" and r.reps_needed \
            else r.verdict
        rows.append([arm, r.step, r.metric, fmt_metric(r.metric, r.median_a), str(r.n_a),
                     fmt_metric(r.metric, r.median_b), str(r.n_b), fmt_pct(r.change_pct),
                     fmt_metric(r.metric, r.shift), _interval(r.metric, r.ci_low, r.ci_high), fmt_p(r.p_value),
                     verdict])
    text = [f"A: {c.a}", f"B: {c.b}", ""]
    text.append(text_table(header, rows, left=3, last_left=True) if rows else "(no common arm and step with data)")
    text.append("")
    text.append(f"A, B: medians over runs (reached_fraction: fraction of runs that reached the target); change: "
                f"(B - A) / A; shift: Hodges-Lehmann estimate of B - A with its {CONFIDENCE:.0%} interval "
                f"('-': too few runs to bound it); p: two-sided Mann-Whitney U. Decision: better/worse when "
                f"p < {c.alpha:g} and the shift is at least the figure's effect floor; same when the whole "
                f"interval is within the floor; 'n too small' when this many runs cannot reach p < "
                f"{c.alpha:g} (with the repetitions per arm that can); undecided otherwise.")
    text += [f"note: {n}" for n in c.notes]
    return "\n".join(text)
