"""Verdicts on a scenario's expectations: each judged pass, fail, undecided or error, and the
exit code they make. Evaluation only (it reads nothing but the summary frame it is given):
``balloon-harness check`` (:mod:`harness.analysis.check`) opens the folder and writes the
outputs, one module per format (:mod:`.check_text`, :mod:`.check_junit`, :mod:`.check_markdown`).

A relative expectation with a test says what it can decide: ``<``/``>`` superiority,
``<=``/``>=`` non-inferiority against the figure's effect floor, ``==`` equivalence within
it, ``!=`` a difference (see :mod:`harness.analysis.expectations`). It PASSES when the runs
show its claim, FAILS only when they show the opposite claim, and is UNDECIDED otherwise
(too few runs, or an interval that allows both): printed as such, a ``<skipped>`` testcase
in JUnit, never a silent pass. The evidence for and against every tested expectation is
Holm-adjusted over all of them, so the exit code is a family-wise decision: two identical
builds fail a scenario's expectations in at most alpha of nights, whatever their number.

An expectation whose figure is NaN in every run (nothing ballooned, so no ratio) is a
failure, not an infrastructure error: the runs worked and measured that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import pandas as pd

from harness.analysis.decide import (
    ABOVE,
    BELOW,
    HOLM,
    Decision,
    adjust_p,
    attainable_p,
    attainable_p_proportion,
    decide,
    margin_p,
    reps_needed,
)
from harness.analysis.defaults import CONFIDENCE, EXIT_FAILED, EXIT_INFRA, EXIT_OK
from harness.analysis.expectations import Expectation, holds
from harness.analysis.groups import REACHED_FRACTION, centre, fmt_metric, run_values
from harness.analysis.history import HistoryCheck
from harness.results.folder import ResultsFolder

PASS, FAIL, ERROR, UNDECIDED = "pass", "fail", "error", "undecided"


# What each relative operator claims about B's shift against A (B: the expectation's arm, A:
# ``than``), and which claim shown would contradict it (its failure).
PROCEDURES = {"<": "superiority", ">": "superiority", "<=": "non-inferiority", ">=": "non-inferiority",
              "==": "equivalence", "!=": "difference"}


@dataclass(frozen=True)
class Verdict:
    """One expectation judged: pass, fail, undecided (the runs cannot tell yet), or error
    (no data: the runs did not produce it)."""

    expectation: Expectation
    status: str
    message: str
    measured: float = math.nan
    n: int = 0
    other: float = math.nan
    other_n: int = 0
    p_value: float = math.nan         # the figure's two-sided test (rank test, Boschloo)
    p_adjusted: float = math.nan      # the p-value that decided the status, Holm-adjusted over the family
    procedure: str = ""               # superiority, non-inferiority, equivalence, difference
    decision: Optional[Decision] = None   # the figure's decision (shift, interval, floor), when tested
    reason: str = ""                  # why an undecided expectation is undecided


def _describe(metric: str, values, arm: str) -> str:
    if metric in (REACHED_FRACTION, "reached"):
        share = fmt_metric(REACHED_FRACTION, centre(metric, values))
        return f"{arm} reached {int(sum(values))}/{len(values)} = {share}"
    return f"{arm} median {fmt_metric(metric, centre(metric, values))} (n={len(values)})"


@dataclass
class _Claim:
    """A relative expectation with a test, before the family's adjustment: the evidence for
    it (``p_pass``) and against it (``p_fail``: the opposite claim shown), each with the
    condition the point estimate must meet (the shift beyond the effect floor)."""

    e: Expectation
    d: Decision
    both: str
    p_pass: float
    pass_point: bool
    p_fail: float
    fail_point: bool
    key: tuple


def _claim_ps(e: Expectation, w: np.ndarray, v: np.ndarray, d: Decision) -> tuple[float, bool, float, bool]:
    """(p_pass, pass_point, p_fail, fail_point) of ``e.op`` for B = v against A = w."""
    fl, sh, two = d.floor, d.shift, d.p_value
    lower = sh < 0 and sh <= -fl                       # B lower by at least the floor
    higher = sh > 0 and sh >= fl
    below = margin_p(e.metric, w, v, fl, BELOW)         # shown: the shift is under +floor
    above = margin_p(e.metric, w, v, -fl, ABOVE)        # shown: the shift is over -floor
    equal = max(below, above)
    return {"<": (two, lower, above, True), ">": (two, higher, below, True),
            "<=": (below, True, two, higher), ">=": (above, True, two, lower),
            "==": (equal, True, two, lower or higher), "!=": (two, lower or higher, equal, True)}[e.op]


def _run_key(rows: pd.DataFrame, metric: str) -> tuple:
    col = "reached" if metric == REACHED_FRACTION else metric
    if rows.empty or "run_id" not in rows.columns or col not in rows.columns:
        return ()
    return tuple(sorted(zip(rows["run_id"].astype(str), map(repr, rows[col].tolist()))))


def _prepare(e: Expectation, summary: pd.DataFrame) -> Verdict | _Claim:
    """An expectation judged outright (absolute, medians only, no data), or its claim to test."""
    def rows_of(arm: str) -> pd.DataFrame:
        if summary.empty:
            return summary
        return summary[(summary["arm"] == arm) & (summary["step"] == e.step)]

    mine = rows_of(e.arm)
    if mine.empty:
        return Verdict(e, ERROR, f"no results for arm {e.arm} at step {e.step!r}: its runs produced no data")
    v = run_values(mine, e.metric)
    m = centre(e.metric, v)
    if not e.relative:
        if v.size == 0:
            return Verdict(e, FAIL, f"{e.metric} not measured in any of {len(mine)} run(s) of {e.arm} "
                                    f"(NaN: e.g. nothing was ballooned)", n=0)
        value = float(e.value if e.value is not None else math.nan)
        ok = holds(e.op, m, value)
        return Verdict(e, PASS if ok else FAIL,
                       f"{_describe(e.metric, v, e.arm)} {e.op} {value:g}: {'holds' if ok else 'does not hold'}",
                       measured=m, n=int(v.size), procedure="absolute")
    than = e.than or ""
    theirs = rows_of(than)
    if theirs.empty:
        return Verdict(e, ERROR, f"no results for arm {e.than} at step {e.step!r}: its runs produced no data",
                       measured=m, n=int(v.size))
    w = run_values(theirs, e.metric)
    o = centre(e.metric, w)
    both = f"{_describe(e.metric, v, e.arm)} vs {_describe(e.metric, w, than)}"
    if v.size == 0 or w.size == 0:
        return Verdict(e, FAIL, f"{both}: {e.metric} not measured on one side", m, int(v.size), o, int(w.size))
    if e.test == "none":
        ok = holds(e.op, m, o)
        return Verdict(e, PASS if ok else FAIL, f"{both} (medians only): {'holds' if ok else 'does not hold'}",
                       m, int(v.size), o, int(w.size), procedure="medians")
    d = decide(e.metric, w, v, e.alpha, floor=e.margin)      # this arm (B) against the other (A)
    key = (e.arm, than, e.metric, e.op, e.alpha, e.margin, _run_key(mine, e.metric), _run_key(theirs, e.metric))
    return _Claim(e, d, both, *_claim_ps(e, w, v, d), key)


def _judge(c: _Claim, p_pass: float, p_fail: float, family: int) -> Verdict:
    """The status of a claim on its family-adjusted p-values, with the sentence that says why."""
    e, d = c.e, c.d
    proc = PROCEDURES[e.op]
    passed = not math.isnan(p_pass) and p_pass < e.alpha and c.pass_point
    failed = not passed and not math.isnan(p_fail) and p_fail < e.alpha and c.fail_point
    status = PASS if passed else FAIL if failed else UNDECIDED
    shown = p_fail if failed else p_pass
    raw = c.p_fail if failed else c.p_pass
    what = "difference" if d.kind == "proportion" else "shift"
    ci = (f"[{fmt_metric(e.metric, d.ci_low)}..{fmt_metric(e.metric, d.ci_high)}]"
          if math.isfinite(d.ci_low) and math.isfinite(d.ci_high) else "unbounded")
    adj = f", Holm {shown:.3g} over {family}" if family > 1 and not math.isnan(shown) else ""
    ptext = f"p = {raw:.3g}{adj}" if not math.isnan(raw) else "no test"
    why = ""
    if status == UNDECIDED:
        level = e.alpha / max(1, family)
        attainable = attainable_p_proportion if d.kind == "proportion" else attainable_p
        if math.isnan(c.p_pass) or attainable(d.n_a, d.n_b) >= level:
            why = (f" (n too small: {reps_needed(level, max(d.n_a, d.n_b) + 1, d.kind)} runs per arm can "
                   f"decide at alpha {e.alpha:g}" + (f" over {family} expectations)" if family > 1 else ")"))
        elif not c.pass_point and not math.isnan(p_pass) and p_pass < e.alpha:
            why = f" (significant, but the {what} is within the effect floor {fmt_metric(e.metric, d.floor)})"
        elif proc == "equivalence" and d.floor == 0:
            why = " (this figure has no effect floor: equality cannot be shown, only a difference)"
        else:
            why = " (the interval allows both outcomes: more runs may decide)"
    word = {PASS: "holds", FAIL: "does not hold", UNDECIDED: "undecided"}[status]
    msg = (f"{c.both}; {proc} ({d.test}, floor {fmt_metric(e.metric, d.floor)}): {what} "
           f"{fmt_metric(e.metric, d.shift)}, {CONFIDENCE:.0%} CI {ci}, {ptext}, alpha {e.alpha:g}: "
           f"{e.op} {word}{why}")
    return Verdict(e, status, msg, d.median_b, d.n_b, d.median_a, d.n_a, d.p_value, shown, proc, d,
                   why.strip(" ()"))


def evaluate(e: Expectation, summary: pd.DataFrame) -> Verdict:
    """Judge one expectation on the summary rows (a family of one)."""
    return evaluate_all([e], summary)[0]


def evaluate_all(expectations: Sequence[Expectation], summary: pd.DataFrame) -> list[Verdict]:
    """Judge every expectation; the tested ones as one family: the p-values for and against
    each are adjusted by Holm over the tested expectations, so that no expectation fails (or
    passes) by chance in more than alpha of nights, however many a scenario states. An
    expectation whose runs hold the very values of an earlier one (the same arms, figure and
    operator at a step that reads the same counters) is tested once."""
    prepared = [_prepare(e, summary) for e in expectations]
    claims: dict[tuple, _Claim] = {}
    for p in prepared:
        if isinstance(p, _Claim):
            claims.setdefault(p.key, p)
    unique = list(claims.values())
    passes = adjust_p([c.p_pass for c in unique], HOLM) if unique else []
    fails = adjust_p([c.p_fail for c in unique], HOLM) if unique else []
    family = sum(1 for c in unique if not math.isnan(c.p_pass))
    judged = {c.key: _judge(c, pp, pf, family) for c, pp, pf in zip(unique, passes, fails)}
    out = []
    for p in prepared:
        if isinstance(p, Verdict):
            out.append(p)
            continue
        first = judged[p.key]
        if first.expectation is p.e:
            out.append(first)
        else:
            out.append(replace(first, expectation=p.e,
                               message=f"{first.message} (the runs hold the values of "
                                       f"{first.expectation.name!r}: tested once, there)"))
    return out


@dataclass
class CheckResult:
    """Everything ``check`` decided, for the terminal, JUnit and Markdown alike."""

    folder: ResultsFolder
    verdicts: list[Verdict]
    failed: dict[str, str]
    history: Optional[HistoryCheck]
    code: int
    strict: bool = False

    @property
    def undecided(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == UNDECIDED]

    @property
    def outcome(self) -> str:
        text = {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_INFRA: "ERROR (infrastructure)"}[self.code]
        if self.undecided:
            text += (f" ({len(self.undecided)} undecided"
                     + (", a failure with --strict)" if self.strict else ": --strict makes that a failure)"))
        return text


def exit_code(verdicts: Sequence[Verdict], failed: dict[str, str], regressions: int = 0,
              strict: bool = False) -> int:
    """The exit code: 2 infrastructure, else 1 a failure or regression (with ``strict``, also
    an undecided expectation), else 0."""
    if failed or any(v.status == ERROR for v in verdicts):
        return EXIT_INFRA
    if regressions or any(v.status == FAIL or (strict and v.status == UNDECIDED) for v in verdicts):
        return EXIT_FAILED
    return EXIT_OK
