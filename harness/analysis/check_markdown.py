"""``check --markdown``: the verdicts as a CI job page: outcome, expectations, failed runs,
the figures' table and legend, the history and links to the plots (drawn first when the
folder has none).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.analysis.history_render import format_history_check
from harness.analysis.report import headline_table, legend
from harness.analysis.report_plots import plot_all
from harness.analysis.verdicts import ERROR, FAIL, PASS, UNDECIDED, CheckResult
from harness.render.markdown import md_escape, md_table
from harness.results import atomic_write, layout
from harness.results.folder import ordered


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
