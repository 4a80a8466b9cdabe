"""``check``'s terminal text: one block per expectation, the failed runs, the history, the
verdict line. Rendering only (the verdicts: :mod:`harness.analysis.verdicts`).
"""

from __future__ import annotations

import textwrap

from harness.analysis.history_render import format_history_check
from harness.analysis.verdicts import CheckResult


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
