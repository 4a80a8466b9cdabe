"""``check --junit``: the verdicts as one JUnit testsuite, for CI pages: a testcase per
expectation, per failed run and per history comparison; failures carry the measured values,
infrastructure problems are ``<error>``, an undecided expectation is ``<skipped>`` (a
failure with ``--strict``), never a silent pass.
"""

from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.analysis.groups import fmt_metric
from harness.analysis.verdicts import ERROR, FAIL, PASS, UNDECIDED, CheckResult
from harness.results import atomic_write, layout


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
