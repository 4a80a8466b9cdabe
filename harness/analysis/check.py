"""``balloon-harness check``: a scenario's expectations against a results folder, as an exit code.

A nightly job must tell "the patch got worse" from "the runner broke", so the exit code
has three values and an infrastructure failure is never reported as a regression:

* 0: every expectation holds or is undecided (and, with a history, no headline figure got
  significantly worse);
* 1: an expectation failed (with ``strict``, or was undecided), or a headline figure is
  significantly worse than the last nights;
* 2: runs failed to produce data: a run left ``runs/<id>/error.txt``, or an arm and step an
  expectation needs has no summary row. Takes precedence over 1: with runs missing, a
  failed expectation may only be the missing runs' fault.

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

``--junit`` writes one JUnit testsuite (a testcase per expectation, per failed run and per
history comparison; failures carry the measured values, infrastructure problems are
``<error>``), ``--markdown`` a summary for a CI job page with links to the plots.
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, TextIO

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
from harness.analysis.defaults import (
    CONFIDENCE,
    DEFAULT_ALPHA,
    DEFAULT_LAST,
    EXIT_FAILED,
    EXIT_INFRA,
    EXIT_OK,
    alpha_problem,
)
from harness.analysis.expectations import Expectation, expectations_of, holds
from harness.analysis.groups import REACHED_FRACTION, centre, fmt_metric, run_values
from harness.analysis.history import HistoryCheck
from harness.analysis.history import against_history as compare_history
from harness.analysis.history_render import format_history_check
from harness.analysis.report import headline_table, legend, plot_all
from harness.errors import HarnessError
from harness.render.markdown import md_escape, md_table
from harness.results import atomic_write, layout
from harness.results.folder import ResultsFolder, open_folder, ordered

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


def check_results(out: str | Path, expectations: Optional[Sequence[Expectation]] = None,
                  junit: Optional[str | Path] = None, markdown: Optional[str | Path] = None,
                  against_history: Optional[str | Path] = None, last: int = DEFAULT_LAST,
                  alpha: float = DEFAULT_ALPHA,
                  stream: Optional[TextIO] = None, strict: bool = False) -> int:
    """Judge results folder ``out``; print the verdicts; write JUnit/Markdown; return the exit code.

    ``expectations`` default to the ``[[expect]]`` tables of ``out/scenario.toml``.
    ``against_history``: also compare with the last ``last`` nights of that history
    (``alpha`` is that test's level; each expectation carries its own). ``strict``: an
    expectation the runs cannot decide is a failure (exit 1) instead of a warning.
    """
    problem = alpha_problem(alpha)
    if problem:
        raise HarnessError(f"--alpha {problem}")
    stream = stream or sys.stdout
    folder = open_folder(out)
    exps = tuple(expectations) if expectations is not None else expectations_of(folder)
    verdicts = evaluate_all(exps, folder.summary)
    failed = folder.failed
    hist = None
    regressions = 0
    if against_history is not None:
        hist = compare_history(folder.path, against_history, last=last, alpha=alpha)
        regressions = len(hist.regressions)
    result = CheckResult(folder, verdicts, failed, hist, exit_code(verdicts, failed, regressions, strict), strict)
    print(format_check(result), file=stream)
    if junit:
        write_junit(result, Path(junit))
        print(f"junit: {junit}", file=stream)
    if markdown:
        write_markdown(result, Path(markdown))
        print(f"markdown: {markdown}", file=stream)
    return result.code


def format_check(r: CheckResult) -> str:
    lines = [f"check {r.folder.path} (scenario {r.folder.scenario.name}, "
             f"{len(r.folder.runs)} finished run(s))"]
    if r.verdicts:
        # One block per expectation, wrapped to a terminal's 100 columns: the evidence of a
        # decision (medians, shift, interval, p, Holm) is a sentence, not a table cell.
        width = max(len(v.status) for v in r.verdicts) + 2
        for v in r.verdicts:
            lines.append(f"{v.status.upper():<{width}}{v.expectation.name}")
            lines += textwrap.wrap(v.message, width=100, initial_indent=" " * width,
                                   subsequent_indent=" " * width, break_on_hyphens=False)
    else:
        lines.append("no expectations ([[expect]] in the scenario): only failed runs are checked")
    for run_id, why in r.failed.items():
        lines.append(f"FAILED RUN {run_id}: {why} (see runs/{run_id}/error.txt)")
    if r.history is not None:
        lines.append(format_history_check(r.history))
    lines.append(f"verdict: {r.outcome} (exit {r.code}: 0 all hold, 1 an expectation failed or a regression"
                 f"{' or is undecided' if r.strict else ''}, 2 runs failed to produce data)")
    return "\n".join(lines)


# --- JUnit --------------------------------------------------------------------------------

def junit_tree(r: CheckResult) -> ET.ElementTree:
    """One testsuite: a testcase per expectation, per failed run, per history comparison."""
    scen = r.folder.scenario.name
    suite = ET.Element("testsuite", name=f"balloon-harness check: {scen}",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), time="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="results", value=str(r.folder.path))
    ET.SubElement(props, "property", name="exit_code", value=str(r.code))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(classname: str, name: str, status: str, message: str, detail: str = "") -> None:
        counts["tests"] += 1
        tc = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        if status == FAIL or (status == UNDECIDED and r.strict):
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=message, type="expectation" if status == FAIL
                          else "undecided").text = detail or message
        elif status == UNDECIDED:   # never a silent pass: CI pages show it as skipped, with why
            counts["skipped"] += 1
            ET.SubElement(tc, "skipped", message=f"undecided: {message}")
        elif status == ERROR:
            counts["errors"] += 1
            ET.SubElement(tc, "error", message=message, type="infrastructure").text = detail or message
        else:
            ET.SubElement(tc, "system-out").text = message

    for v in r.verdicts:
        case(f"{scen}.{v.expectation.arm}", v.expectation.name, v.status, v.message)
    for run_id, why in r.failed.items():
        err = layout.run_dir(r.folder.path, run_id) / layout.ERROR
        case(f"{scen}.runs", f"run {run_id}", ERROR, f"run {run_id} failed: {why}",
             err.read_text(errors="replace")[-20000:])
    if not r.failed:
        case(f"{scen}.runs", "every run produced data", PASS, f"{len(r.folder.runs)} finished run(s)")
    hist = r.history
    if hist is not None and not hist.rows.empty:
        for h in hist.rows.itertuples():
            p = "no test" if math.isnan(h.p_value) else f"p = {h.p_value:.3g}"
            msg = (f"{h.metric}: now median {fmt_metric(h.metric, h.median_now)} (n={h.n_now}), last "
                   f"{len(hist.nights)} night(s) {fmt_metric(h.metric, h.median_history)} (n={h.n_history}), "
                   f"shift {fmt_metric(h.metric, h.shift)}, Mann-Whitney {p}, alpha {hist.alpha:g}: "
                   + ("significantly worse (beyond the effect floor)" if h.regression
                      else f"no regression ({h.verdict})"))
            case(f"{scen}.history.{h.arm}", f"{h.arm} {h.step}: {h.metric} vs last {hist.last} nights",
                 FAIL if h.regression else PASS, msg)
    for k, count in counts.items():
        suite.set(k, str(count))
    root = ET.Element("testsuites", name="balloon-harness", tests=str(counts["tests"]),
                      failures=str(counts["failures"]), errors=str(counts["errors"]))
    root.append(suite)
    ET.indent(root)
    return ET.ElementTree(root)



def write_junit(r: CheckResult, path: Path) -> Path:
    atomic_write(path, lambda p: junit_tree(r).write(p, encoding="utf-8", xml_declaration=True))
    return path


# --- Markdown -----------------------------------------------------------------------------

def markdown_text(r: CheckResult, base: Path) -> str:
    """The CI job page: outcome, expectations, failed runs, figures, history, plot links."""
    f = r.folder
    icon = {PASS: "✅ pass", FAIL: "❌ fail", ERROR: "⚠️ error",
            UNDECIDED: "❌ undecided (--strict)" if r.strict else "❔ undecided"}
    accel = sorted({str(a) for a in f.summary["accel"].dropna()}) if "accel" in f.summary.columns else []
    out = [f"## balloon-harness check: {f.scenario.name}: {r.outcome}", "",
           f"Results `{f.path}`; {len(f.runs)} finished run(s); accelerator: {', '.join(accel) or '-'}; "
           f"exit code {r.code} (0: all hold, 1: an expectation failed or a regression, 2: runs failed to "
           f"produce data).", ""]
    if r.verdicts:
        out += ["### Expectations", ""]
        out += md_table(["", "expectation", "measured"],
                         [[icon[v.status], v.expectation.name, v.message] for v in r.verdicts])
        out.append("")
    else:
        out += ["No expectations in the scenario (`[[expect]]`).", ""]
    if r.failed:
        out += ["### Failed runs", ""]
        out += [f"- `{run_id}`: {md_escape(why)} ([{layout.ERROR}]"
                f"({_rel(layout.run_dir(f.path, run_id) / layout.ERROR, base)}))"
                for run_id, why in r.failed.items()]
        out.append("")
    arms, steps = ordered(f.summary, f.scenario.arms, f.scenario.steps) if not f.summary.empty else ([], [])
    table = headline_table(f.summary, arms, steps, f.scenario.reference)
    if table.rows:
        out += ["### Figures (median and spread over the runs)", ""]
        out += md_table(table.header, table.rows)
        out += ["", "<details><summary>What the columns mean</summary>", "", "```",
                legend(table, width=120), "```", "", "</details>", ""]
    if r.history is not None:
        out += ["### Against history", "", "```", format_history_check(r.history), "```", ""]
    plots = sorted((f.path / layout.PLOTS).glob("*.png"))
    if plots:
        out += ["### Plots", ""]
        out += [f"![{p.stem}]({_rel(p, base)})" for p in plots]
        out.append("")
    return "\n".join(out)


def _rel(target: Path, base: Path) -> str:
    return Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()


def write_markdown(r: CheckResult, path: Path) -> Path:
    """Markdown for the CI page; draws the plots first when the folder has none."""
    if not list((r.folder.path / layout.PLOTS).glob("*.png")) and not r.folder.summary.empty:
        plot_all(r.folder.samples, r.folder.summary, r.folder.path / layout.PLOTS,
                 r.folder.scenario.arms, r.folder.scenario.steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = markdown_text(r, path.parent)
    atomic_write(path, lambda p: p.write_text(text + "\n"))
    return path
