"""``balloon-harness compare A B``: two results folders, or two arms, figure by figure.

For every arm (when comparing folders), step and headline figure: the medians of A and B,
the shift of B against A with its confidence interval, the p-value of the figure's test
(:mod:`harness.analysis.decide`: rank test for measured figures, Boschloo for yes/no ones)
and the decision.

Only the PRIMARY figures decide (the scenario's ``primary = [...]``, by default THP lost per
returned MiB, reached and returned fraction): their p-values are adjusted by Holm over the
primary figures x arms x steps of the comparison, so that two identical builds are called
better or worse in at most alpha of comparisons however many arms and steps they have.
The other figures are described: their p-values are adjusted by Benjamini-Hochberg (false
discovery rate) and their verdict says only "higher" / "lower" / "same", never better or
worse. A figure whose values at a step are the very values of an earlier step (a measure
step right after a resize step reads the same host counters) is tested once, at the
first step.

Comparing results of different scenarios, builds or ``--jobs`` is refused (naming the
difference) unless ``force`` (:mod:`harness.results.identity`); when the two folders ran on
different hosts (or are forced past a ``--jobs`` difference), the host-wide figures are
left out of the decisions, with a note.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.analysis.decide import BETTER, BH, HIGHER, HOLM, LOWER, WORSE, Decision, adjusted, decide
from harness.analysis.defaults import CONFIDENCE, DEFAULT_ALPHA, alpha_problem
from harness.analysis.expectations import figure_name, primary_of
from harness.analysis.groups import HEADLINE_METRICS, fmt_metric, run_values
from harness.errors import HarnessError
from harness.render.numbers import fmt_p, fmt_pct
from harness.render.text import text_table
from harness.results.folder import ResultsFolder, ScenarioInfo, open_folder, ordered
from harness.results.identity import JOBS, folder_fingerprint, host_of, refuse_if_different
from harness.results.metrics import HOST_WIDE, TABLE_KINDS

COMPARE_KINDS = TABLE_KINDS
PRIMARY, DESCRIBED = "primary", "described"
COMPARISON_COLUMNS = ["arm_a", "arm_b", "step", "metric", "role", "kind", "n_a", "median_a", "n_b", "median_b",
                      "change_pct", "shift", "ci_low", "ci_high", "test", "p_value", "p_adjusted", "adjustment",
                      "significant", "verdict", "reps_needed", "note"]


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


def decision_row(d: Decision, arm_a: str, arm_b: str, step: str, role: str = PRIMARY) -> dict[str, Any]:
    return {"arm_a": arm_a, "arm_b": arm_b, "step": step, "metric": d.metric, "role": role, "kind": d.kind,
            "n_a": d.n_a, "median_a": d.median_a, "n_b": d.n_b, "median_b": d.median_b,
            "change_pct": d.change_pct, "shift": d.shift, "ci_low": d.ci_low, "ci_high": d.ci_high,
            "test": d.test, "p_value": d.p_value, "p_adjusted": d.p_adjusted, "adjustment": d.adjustment,
            "significant": d.significant, "verdict": d.verdict, "reps_needed": d.reps_needed, "note": d.note}


@dataclass
class _Tested:
    """One decision of a comparison before the family's adjustment."""

    arm_a: str
    arm_b: str
    step: str
    decision: Decision


def _run_keyed(rows: Optional[pd.DataFrame], metric: str) -> tuple:
    """Every run's value of ``metric`` (as text, NaN kept), keyed by run: two steps whose
    runs read the same values hold one figure, not two."""
    col = "reached" if metric == "reached_fraction" else metric
    if rows is None or rows.empty or "run_id" not in rows.columns or col not in rows.columns:
        return ()
    return tuple(sorted(zip(rows["run_id"].astype(str), map(repr, rows[col].tolist()))))


def compare_tested(sa: pd.DataFrame, arm_a: str, sb: pd.DataFrame, arm_b: str, steps: list[str],
                   metrics: list[str], alpha: float, notes: Optional[list[str]] = None) -> list[_Tested]:
    """One decision per step and metric for arm_a of ``sa`` against arm_b of ``sb``; a figure
    whose runs hold at a step the same values as at an earlier step is tested once (said in
    ``notes``)."""
    out = []
    ga = {k: v for k, v in sa[sa["arm"] == arm_a].groupby("step", sort=False)}
    gb = {k: v for k, v in sb[sb["arm"] == arm_b].groupby("step", sort=False)}
    seen: dict[tuple, str] = {}
    for step in steps:
        ra, rb = ga.get(step), gb.get(step)
        for metric in metrics:
            va = run_values(ra, metric) if ra is not None else np.array([])
            vb = run_values(rb, metric) if rb is not None else np.array([])
            if va.size == 0 and vb.size == 0:
                continue
            key = (metric, _run_keyed(ra, metric), _run_keyed(rb, metric))
            if key in seen and key[1] and key[2]:
                if notes is not None:
                    notes.append(f"{arm_a}{'' if arm_a == arm_b else ' vs ' + arm_b}: {metric} at step {step!r} "
                                 f"holds the values of step {seen[key]!r}: tested once, there")
                continue
            seen[key] = step
            out.append(_Tested(arm_a, arm_b, step, decide(metric, va, vb, alpha)))
    return out


def described(d: Decision) -> Decision:
    """A described figure's decision: a direction, never better or worse."""
    if d.verdict in (BETTER, WORSE, HIGHER, LOWER):
        return replace(d, verdict=HIGHER if d.shift > 0 else LOWER)
    return d


def decide_family(tested: list[_Tested], primary: list[str]) -> list[dict[str, Any]]:
    """The rows of a comparison: primary figures Holm-adjusted and decided, the others
    Benjamini-Hochberg-adjusted and described."""
    first = [t for t in tested if t.decision.metric in primary]
    rest = [t for t in tested if t.decision.metric not in primary]
    decided = dict(zip(map(id, first), adjusted([t.decision for t in first], HOLM)))
    decided.update(zip(map(id, rest), map(described, adjusted([t.decision for t in rest], BH))))
    primary_ids = set(map(id, first))
    return [decision_row(decided[id(t)], t.arm_a, t.arm_b, t.step, PRIMARY if id(t) in primary_ids else DESCRIBED)
            for t in tested]


def compare_rows(sa: pd.DataFrame, arm_a: str, sb: pd.DataFrame, arm_b: str, steps: list[str],
                 metrics: list[str], alpha: float, primary: Optional[list[str]] = None) -> list[dict[str, Any]]:
    """One row per step and metric for arm_a of ``sa`` against arm_b of ``sb``, adjusted as
    one family (the primary figures: ``primary``, by default every one of ``metrics``)."""
    return decide_family(compare_tested(sa, arm_a, sb, arm_b, steps, metrics, alpha),
                         list(primary if primary is not None else metrics))


@dataclass
class Comparison:
    a: str
    b: str
    alpha: float
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    primary: list[str] = field(default_factory=list)


def _steps(summary: pd.DataFrame, info: ScenarioInfo) -> list[str]:
    s = summary[summary["kind"].isin(COMPARE_KINDS)] if "kind" in summary.columns else summary
    _, steps = ordered(s, info.arms, info.steps)
    return steps


def compare(a: str | Side, b: str | Side, alpha: float = DEFAULT_ALPHA, force: bool = False,
            metrics: Optional[list[str]] = None, primary: Optional[list[str]] = None) -> Comparison:
    """Compare two folders (every common arm) or two arms (``DIR:arm`` on either side).

    ``metrics``: the figures shown (default: the headline ones); ``primary``: those that
    decide (default: the scenario's ``primary``, else the three headline ones; with
    ``metrics`` given, those of them that are primary, else all of them)."""
    problem = alpha_problem(alpha)
    if problem:
        raise HarnessError(f"--alpha {problem}")
    sa = a if isinstance(a, Side) else parse_side(a)
    sb = b if isinstance(b, Side) else parse_side(b)
    notes = refuse_if_different([sa.folder, sb.folder], force)
    fa, fb = sa.folder, sb.folder
    if metrics:      # the figures asked for: those of them the scenario calls primary, else all of them
        metrics = [figure_name(m) for m in metrics]
        if primary is None:
            primary = [m for m in primary_of(fa) if m in metrics] or list(metrics)
    primary = [figure_name(m) for m in (primary if primary is not None else primary_of(fa))]
    metrics = metrics or list(HEADLINE_METRICS)
    metrics += [m for m in primary if m not in metrics]
    host_a, host_b = host_of(fa), host_of(fb)
    jobs_a, jobs_b = folder_fingerprint(fa).get(JOBS), folder_fingerprint(fb).get(JOBS)
    why = (f"the folders ran on different hosts ({host_a}, {host_b})" if host_a and host_b and host_a != host_b
           else f"the folders ran different guests at once (--jobs {jobs_a}, {jobs_b})"
           if jobs_a and jobs_b and jobs_a != jobs_b else "")
    if why:
        dropped = [m for m in metrics if m in HOST_WIDE]
        metrics = [m for m in metrics if m not in HOST_WIDE]
        primary = [m for m in primary if m not in HOST_WIDE]
        if dropped:
            notes.append(f"{why}: host-wide figures left out ({', '.join(dropped)}): they measure the whole host")
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
    for m in primary:
        col = "reached" if m == "reached_fraction" else m
        if col not in fa.summary.columns and col not in fb.summary.columns:
            notes.append(f"deciding figure {m} is not in these folders' summaries (written before it "
                         f"existed?): nothing decides on it")
    tested: list[_Tested] = []
    for arm_a, arm_b in pairs:
        tested += compare_tested(fa.summary, arm_a, fb.summary, arm_b, steps, metrics, alpha, notes)
    rows = decide_family(tested, primary)
    return Comparison(sa.label, sb.label, alpha, pd.DataFrame(rows, columns=COMPARISON_COLUMNS), notes, primary)


def _interval(metric: str, lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "-"
    return f"{fmt_metric(metric, lo)}..{fmt_metric(metric, hi)}"


def _decision_cell(r: Any) -> str:
    verdict = f"n too small: {r.reps_needed} reps/arm" if r.verdict == "n too small" and r.reps_needed \
        else r.verdict
    return verdict if r.role == PRIMARY else f"({verdict})"


def format_comparison(c: Comparison) -> str:
    """The comparison as a terminal table with its legend: the primary figures first."""
    same_arm = (c.rows["arm_a"] == c.rows["arm_b"]).all() if not c.rows.empty else True
    header = ["arm" if same_arm else "arms", "step", "metric", "A", "n", "B", "n", "change", "shift",
              f"{CONFIDENCE:.0%} CI", "p", "p adj", "decision"]
    order = c.rows.assign(_p=(c.rows["role"] != PRIMARY).astype(int)).sort_values("_p", kind="stable") \
        if not c.rows.empty else c.rows
    rows = []
    for r in order.itertuples():
        arm = r.arm_a if same_arm else f"{r.arm_a} vs {r.arm_b}"
        rows.append([arm, r.step, r.metric, fmt_metric(r.metric, r.median_a), str(r.n_a),
                     fmt_metric(r.metric, r.median_b), str(r.n_b), fmt_pct(r.change_pct),
                     fmt_metric(r.metric, r.shift), _interval(r.metric, r.ci_low, r.ci_high), fmt_p(r.p_value),
                     fmt_p(r.p_adjusted), _decision_cell(r)])
    primary_rows = order[order["role"] == PRIMARY] if not order.empty else order
    holm = next((a for a in primary_rows["adjustment"] if a), "") if not primary_rows.empty else ""
    text = [f"A: {c.a}", f"B: {c.b}", f"deciding: {', '.join(c.primary) or 'none'}"
            + (f" ({holm})" if holm else ""), ""]
    text.append(text_table(header, rows, left=3, last_left=True) if rows else "(no common arm and step with data)")
    text.append("")
    text += textwrap.wrap(
                f"A, B: medians over runs (reached_fraction: fraction of runs that reached the target); change: "
                f"(B - A) / A; shift: Hodges-Lehmann estimate of B - A (reached_fraction: the difference of the "
                f"fractions) with its {CONFIDENCE:.0%} interval ('-': too few runs to bound it); p: two-sided, "
                f"exact Mann-Whitney U (Boschloo's exact test for reached_fraction); p adj: adjusted over the "
                f"comparison, Holm over the deciding figures x arms x steps, Benjamini-Hochberg over the others. "
                f"Decision, for the deciding figures only: better/worse when p adj < {c.alpha:g} and the shift is "
                f"at least the figure's effect floor; same when the whole interval is within the floor; 'n too "
                f"small' when this many runs cannot reach it (with the repetitions per arm that can); undecided "
                f"otherwise. In parentheses: a described figure, which decides nothing (higher/lower: p adj < "
                f"{c.alpha:g} beyond its floor).", width=100)
    text += [f"note: {n}" for n in c.notes]
    return "\n".join(text)
