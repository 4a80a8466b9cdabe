"""The decided sentences under a results table: one per claim the scenario states.

A table of medians invites the reader to decide by eye, and three runs against three
decide nothing. So a scenario states its claims as relative ``[[expect]]`` tables (the
RFC's scenario: thp-order keeps more of the host's huge pages per MiB returned than
baseline; and its control: Debian's stock build loses as many as the RFC build with the
feature off), and the first screen of ``run``/``reproduce``/``report`` says, for each,
what the runs decided: which arm, by how much, with its interval, p and n. The sentence
is ``check``'s judgement of the same expectations, as one family (Holm), so the table,
``check``'s exit code and the sentence never disagree.
"""

from __future__ import annotations

import math
import textwrap

from harness.analysis.defaults import CONFIDENCE
from harness.analysis.expectations import expectations_of
from harness.analysis.groups import fmt_metric
from harness.analysis.verdicts import FAIL, PASS, UNDECIDED, Verdict, evaluate_all
from harness.results.folder import ResultsFolder

WIDTH = 100
WORDS = {PASS: "holds", FAIL: "does not hold", UNDECIDED: "undecided"}


def sentence(v: Verdict) -> str:
    """One claim's decision: the claim, the word (holds, does not hold, undecided), and the
    evidence: both arms' centres, the shift with its interval, p (Holm-adjusted when the
    scenario states several claims), n on each side."""
    e, d = v.expectation, v.decision
    word = WORDS.get(v.status, v.status)
    head = f"{e.name}: {word.upper()}"
    if d is None:
        return f"{head}. {v.message}"
    f = lambda x: fmt_metric(e.metric, x)  # noqa: E731
    ci = (f"{f(d.ci_low)}..{f(d.ci_high)}" if math.isfinite(d.ci_low) and math.isfinite(d.ci_high)
          else "unbounded")
    p = "no test" if math.isnan(v.p_adjusted) else f"p = {v.p_adjusted:.2g}"
    what = "difference" if d.kind == "proportion" else "shift"
    body = (f"{e.arm} {f(d.median_b)} against {e.than} {f(d.median_a)} ({e.metric}); "
            f"{what} {f(d.shift)}, {CONFIDENCE:.0%} CI {ci}, {v.procedure} margin {f(d.floor)}, {p}, "
            f"n = {d.n_b} vs {d.n_a}")
    if v.status == UNDECIDED and v.reason:
        body += f"; {v.reason}"
    return f"{head}. {body}."


def decided_sentences(folder: ResultsFolder, width: int = WIDTH) -> list[str]:
    """The sentences of the folder scenario's relative expectations (absolute ones are
    ``check``'s business), each wrapped to ``width`` columns; none without expectations."""
    expectations = expectations_of(folder)
    if not expectations or folder.summary.empty:
        return []
    verdicts = evaluate_all(expectations, folder.summary)
    lines: list[str] = []
    for v in verdicts:
        if not v.expectation.relative or v.expectation.test == "none":
            continue
        lines += textwrap.wrap(sentence(v), width=width, subsequent_indent="    ", break_on_hyphens=False)
    return lines
