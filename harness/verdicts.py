"""``balloon-harness check``: a scenario's expectations against a results folder, as an exit code.

A nightly job must tell "the patch got worse" from "the runner broke", so the exit code
has three values and an infrastructure failure is never reported as a regression:

* 0: every expectation holds (and, with a history, no headline figure got significantly worse);
* 1: an expectation failed, or a headline figure is significantly worse than the last nights;
* 2: runs failed to produce data: a run left ``runs/<id>/error.txt``, or an arm and step an
  expectation needs has no summary row. Takes precedence over 1: with runs missing, a
  failed expectation may only be the missing runs' fault.

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
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

import pandas as pd

from harness.compare import Folder, fmt_value, mann_whitney, open_folder, render_table
from harness.experiment.expectations import Expectation, holds, parse_expectations
from harness.history import HistoryCheck
from harness.results import atomic_write
from harness.statistics import REACHED_FRACTION, centre, ordered, run_values

PASS, FAIL, ERROR = "pass", "fail", "error"
EXIT_OK, EXIT_FAILED, EXIT_INFRA = 0, 1, 2


@dataclass(frozen=True)
class Verdict:
    """One expectation judged: pass, fail, or error (no data: the runs did not produce it)."""

    expectation: Expectation
    status: str
    message: str
    measured: float = math.nan
    n: int = 0
    other: float = math.nan
    other_n: int = 0
    p_value: float = math.nan


def _describe(metric: str, values, arm: str) -> str:
    if metric in (REACHED_FRACTION, "reached"):
        return f"{arm} reached {int(sum(values))}/{len(values)} = {fmt_value(REACHED_FRACTION, centre(metric, values))}"
    return f"{arm} median {fmt_value(metric, centre(metric, values))} (n={len(values)})"


def evaluate(e: Expectation, summary: pd.DataFrame) -> Verdict:
    """Judge one expectation on the summary rows."""
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
                       measured=m, n=int(v.size))
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
                       m, int(v.size), o, int(w.size))
    p, note = mann_whitney(v, w)
    sig = not math.isnan(p) and p < e.alpha
    ok = {"<": m < o and sig, ">": m > o and sig, "<=": not (m > o and sig), ">=": not (m < o and sig),
          "==": not sig, "!=": sig}[e.op]
    ptext = f"Mann-Whitney p = {p:.3g}" if not math.isnan(p) else f"no test ({note})"
    why = "" if ok or e.op not in ("<", ">") or sig else " (medians in order but not significant)"
    return Verdict(e, PASS if ok else FAIL,
                   f"{both}, {ptext}, alpha {e.alpha:g}: {e.op} {'holds' if ok else 'does not hold'}{why}",
                   m, int(v.size), o, int(w.size), p)


def evaluate_all(expectations: Sequence[Expectation], summary: pd.DataFrame) -> list[Verdict]:
    return [evaluate(e, summary) for e in expectations]


def failed_runs(out: str | Path) -> dict[str, str]:
    """run id -> first line of its error.txt, for every run that failed."""
    failed = {}
    for err in sorted(Path(out).glob("runs/*/error.txt")):
        text = err.read_text(errors="replace").strip()
        failed[err.parent.name] = text.splitlines()[0] if text else "failed (empty error.txt)"
    return failed


def expectations_of(folder: Folder) -> tuple[Expectation, ...]:
    """The ``[[expect]]`` tables of the folder's scenario (read without run-time path checks)."""
    info = folder.scenario
    raw = info.raw.get("expect", [])
    if not raw:
        return ()
    steps = list(dict.fromkeys([*info.steps, *(folder.summary["step"] if not folder.summary.empty else [])]))
    path = info.path or (folder.path / "metadata.json")
    return parse_expectations(path, raw, info.arms, steps)


@dataclass
class CheckResult:
    """Everything ``check`` decided, for the terminal, JUnit and Markdown alike."""

    folder: Folder
    verdicts: list[Verdict]
    failed: dict[str, str]
    history: Optional[HistoryCheck]
    code: int

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_INFRA: "ERROR (infrastructure)"}[self.code]


def decide(verdicts: Sequence[Verdict], failed: dict[str, str], regressions: int = 0) -> int:
    """The exit code: 2 infrastructure, else 1 a failure or regression, else 0."""
    if failed or any(v.status == ERROR for v in verdicts):
        return EXIT_INFRA
    if regressions or any(v.status == FAIL for v in verdicts):
        return EXIT_FAILED
    return EXIT_OK


def check_results(out: str | Path, expectations: Optional[Sequence[Expectation]] = None,
                  junit: Optional[str | Path] = None, markdown: Optional[str | Path] = None,
                  against_history: Optional[str | Path] = None, last: int = 7, alpha: float = 0.05,
                  stream: Optional[TextIO] = None) -> int:
    """Judge results folder ``out``; print the verdicts; write JUnit/Markdown; return the exit code.

    ``expectations`` default to the ``[[expect]]`` tables of ``out/scenario.toml``.
    ``against_history``: also compare with the last ``last`` nights of that history
    (``alpha`` is that test's level; each expectation carries its own).
    """
    stream = stream or sys.stdout
    folder = open_folder(out)
    exps = tuple(expectations) if expectations is not None else expectations_of(folder)
    verdicts = evaluate_all(exps, folder.summary)
    failed = failed_runs(folder.path)
    hist = None
    regressions = 0
    if against_history is not None:
        from harness.history import against_history as compare_history
        hist = compare_history(folder.path, against_history, last=last, alpha=alpha)
        regressions = len(hist.regressions)
    result = CheckResult(folder, verdicts, failed, hist, decide(verdicts, failed, regressions))
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
        rows = [[v.status.upper(), v.expectation.name, v.message] for v in r.verdicts]
        lines.append(render_table(["", "expectation", "measured"], rows, left=3))
    else:
        lines.append("no expectations ([[expect]] in the scenario): only failed runs are checked")
    for run_id, why in r.failed.items():
        lines.append(f"FAILED RUN {run_id}: {why} (see runs/{run_id}/error.txt)")
    if r.history is not None:
        from harness.history import format_history_check
        lines.append(format_history_check(r.history))
    lines.append(f"verdict: {r.outcome} (exit {r.code}: 0 all hold, 1 an expectation failed or a regression, "
                 f"2 runs failed to produce data)")
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
    counts = {"tests": 0, "failures": 0, "errors": 0}

    def case(classname: str, name: str, status: str, message: str, detail: str = "") -> None:
        counts["tests"] += 1
        tc = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        if status == FAIL:
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=message, type="expectation").text = detail or message
        elif status == ERROR:
            counts["errors"] += 1
            ET.SubElement(tc, "error", message=message, type="infrastructure").text = detail or message
        else:
            ET.SubElement(tc, "system-out").text = message

    for v in r.verdicts:
        case(f"{scen}.{v.expectation.arm}", v.expectation.name, v.status, v.message)
    for run_id, why in r.failed.items():
        err = r.folder.path / "runs" / run_id / "error.txt"
        case(f"{scen}.runs", f"run {run_id}", ERROR, f"run {run_id} failed: {why}",
             err.read_text(errors="replace")[-20000:])
    if not r.failed:
        case(f"{scen}.runs", "every run produced data", PASS, f"{len(r.folder.runs)} finished run(s)")
    hist = r.history
    if hist is not None and not hist.rows.empty:
        for h in hist.rows.itertuples():
            p = "no test" if math.isnan(h.p_value) else f"p = {h.p_value:.3g}"
            msg = (f"{h.metric}: now median {fmt_value(h.metric, h.median_now)} (n={h.n_now}), last "
                   f"{len(hist.nights)} night(s) {fmt_value(h.metric, h.median_history)} (n={h.n_history}), "
                   f"Mann-Whitney {p}, alpha {hist.alpha:g}: "
                   + ("significantly worse" if h.regression else "no significant regression"))
            case(f"{scen}.history.{h.arm}", f"{h.arm} {h.step}: {h.metric} vs last {hist.last} nights",
                 FAIL if h.regression else PASS, msg)
    for k, count in counts.items():
        suite.set(k, str(count))
    suite.set("skipped", "0")
    root = ET.Element("testsuites", name="balloon-harness", tests=str(counts["tests"]),
                      failures=str(counts["failures"]), errors=str(counts["errors"]))
    root.append(suite)
    ET.indent(root)
    return ET.ElementTree(root)



def write_junit(r: CheckResult, path: Path) -> Path:
    atomic_write(path, lambda p: junit_tree(r).write(p, encoding="utf-8", xml_declaration=True))
    return path


# --- Markdown -----------------------------------------------------------------------------

def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]]


def markdown_text(r: CheckResult, base: Path) -> str:
    """The CI job page: outcome, expectations, failed runs, figures, history, plot links."""
    from harness.report import headline_table, legend
    f = r.folder
    icon = {PASS: "✅ pass", FAIL: "❌ fail", ERROR: "⚠️ error"}
    accel = sorted({str(a) for a in f.summary["accel"].dropna()}) if "accel" in f.summary.columns else []
    out = [f"## balloon-harness check: {f.scenario.name}: {r.outcome}", "",
           f"Results `{f.path}`; {len(f.runs)} finished run(s); accelerator: {', '.join(accel) or '-'}; "
           f"exit code {r.code} (0: all hold, 1: an expectation failed or a regression, 2: runs failed to "
           f"produce data).", ""]
    if r.verdicts:
        out += ["### Expectations", ""]
        out += _md_table(["", "expectation", "measured"],
                         [[icon[v.status], v.expectation.name, v.message] for v in r.verdicts])
        out.append("")
    else:
        out += ["No expectations in the scenario (`[[expect]]`).", ""]
    if r.failed:
        out += ["### Failed runs", ""]
        out += [f"- `{run_id}`: {_md_escape(why)} ([error.txt]({_rel(f.path / 'runs' / run_id / 'error.txt', base)}))"
                for run_id, why in r.failed.items()]
        out.append("")
    arms, steps = ordered(f.summary, f.scenario.arms, f.scenario.steps) if not f.summary.empty else ([], [])
    table = headline_table(f.summary, arms, steps, f.scenario.reference)
    if table.rows:
        out += ["### Figures (median and spread over the runs)", ""]
        out += _md_table(table.header, table.rows)
        out += ["", "<details><summary>What the columns mean</summary>", "", "```",
                legend(table, width=120), "```", "", "</details>", ""]
    if r.history is not None:
        from harness.history import format_history_check
        out += ["### Against history", "", "```", format_history_check(r.history), "```", ""]
    plots = sorted((f.path / "plots").glob("*.png"))
    if plots:
        out += ["### Plots", ""]
        out += [f"![{p.stem}]({_rel(p, base)})" for p in plots]
        out.append("")
    return "\n".join(out)


def _rel(target: Path, base: Path) -> str:
    return Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()


def write_markdown(r: CheckResult, path: Path) -> Path:
    """Markdown for the CI page; draws the plots first when the folder has none."""
    if not list((r.folder.path / "plots").glob("*.png")) and not r.folder.summary.empty:
        from harness.report import plot_all
        plot_all(r.folder.samples, r.folder.summary, r.folder.path / "plots",
                 r.folder.scenario.arms, r.folder.scenario.steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = markdown_text(r, path.parent)
    atomic_write(path, lambda p: p.write_text(text + "\n"))
    return path
