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

This module is the command's flow: open the folder, judge (:mod:`harness.analysis.verdicts`,
and against the history :mod:`harness.analysis.history`), then write each output with its
one owner: the terminal text (:mod:`.check_text`), ``--junit`` (:mod:`.check_junit`: one
testsuite, a testcase per expectation, per failed run and per history comparison) and
``--markdown`` (:mod:`.check_markdown`: a summary for a CI job page with links to the plots).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, TextIO

from harness.analysis.check_junit import write_junit
from harness.analysis.check_markdown import write_markdown
from harness.analysis.check_text import format_check
from harness.analysis.defaults import DEFAULT_ALPHA, DEFAULT_LAST, alpha_problem
from harness.analysis.expectations import Expectation, expectations_of
from harness.analysis.history import against_history as compare_history
from harness.analysis.verdicts import CheckResult, evaluate_all, exit_code
from harness.errors import HarnessError
from harness.results.folder import open_folder


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
