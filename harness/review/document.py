"""The review document: one section per point of :data:`harness.review.points.POINTS`, each
with the question, a table per step that answers it (median, spread, n, reached k/n), a
plot showing every run, and the answer computed from the same numbers; written as
``DIR/review.md``, ``DIR/review.html`` and ``DIR/plots/*.png``.

Why one intermediate form (:class:`Section`, :class:`TableBlock`) rendered twice rather than
HTML converted from Markdown: the two must say the same and no new dependency is wanted.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.analysis.framemaps import write_frame_maps
from harness.render.boxplot import Group, box_panel
from harness.render.html import esc as _e
from harness.render.html import html_table as render_html_table
from harness.render.markdown import md_quote
from harness.render.markdown import md_table as render_md_table
from harness.results import atomic_write, layout
from harness.results.folder import PARTIAL_SUFFIX, as_dict, failure_reason
from harness.review.evidence import Evidence, Folder, _col, fmt_spread, header_of, meaning_of, unit_of
from harness.review.points import POINTS, ReviewPoint
from harness.review.tables import WHOLE_RUN, Table

# --- sections --------------------------------------------------------------------------------

@dataclass
class TableBlock:
    """One table as cells, its notes, and its plot (relative to the review folder)."""

    table: Table
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: Optional[str] = None
    missing: Optional[str] = None
    columns: list[str] = field(default_factory=list)    # the columns shown (present in the data)


@dataclass
class Section:
    point: ReviewPoint
    blocks: list[TableBlock]
    answer: str
    notes: list[str]


def moves_memory(ev: Evidence, t: Table) -> bool:
    """True when any arm's step had a target (a reached k/n column makes sense)."""
    return any(ev.reached(t.scenario, t.step, a)[1] for a in ev.arms(t))


def n_cell(ev: Evidence, t: Table, arm: str) -> str:
    """Runs with the step, "2 of 3" when fewer than planned."""
    runs = len(ev.rows(t.scenario, t.step, arm))
    planned = ev.folder(t.scenario).planned
    partial = arm.endswith(PARTIAL_SUFFIX)   # a failed run's steps: no plan to fall short of
    return f"{runs} of {planned}" if planned and runs < planned and not partial else str(runs)


def shortfall_note(ev: Evidence, t: Table, arms: list[str]) -> Optional[str]:
    """"n=2 of 3 planned for arm (failed: run ids)" for arms with fewer runs than planned."""
    f = ev.folder(t.scenario)
    parts = []
    for arm in arms:
        runs = len(ev.rows(t.scenario, t.step, arm))
        if f.planned and runs < f.planned:
            failed = [r for r in f.failed if (layout.parse_run_id(r) or ("",))[0] == arm]
            reasons = sorted({failure_reason(f.path, r) for r in failed})
            parts.append(f"n={runs} of {f.planned} planned for {arm}"
                         + (f" (failed: {', '.join(failed)}: {' / '.join(reasons)}; see runs/<run>/error.txt)"
                            if failed else ""))
    return "; ".join(parts) + "; missing runs are not in the figures" if parts else None


def table_block(ev: Evidence, t: Table) -> TableBlock:
    """The cells of one table (or its "not measured" line)."""
    block = TableBlock(t, f"{t.scenario} · {t.step}" + (f": {t.caption}" if t.caption else ""))
    block.missing = ev.missing(t)
    if block.missing:
        return block
    frame = ev.folder(t.scenario).summary
    arms = [a for a in ev.arms(t) if not ev.rows(t.scenario, t.step, a).empty]
    step_rows = pd.concat([ev.rows(t.scenario, t.step, a) for a in arms])
    block.columns = [c for c in t.columns if c in step_rows.columns and _col(step_rows, c).notna().any()]
    absent = [c for c in t.columns if c not in frame.columns]
    empty = [c for c in t.columns if c in frame.columns and c not in block.columns]
    with_reached = moves_memory(ev, t)
    block.header = ["arm", "n"] + (["reached"] if with_reached else []) + [header_of(c) for c in block.columns]
    for arm in arms:
        k, n = ev.reached(t.scenario, t.step, arm)
        cells = [arm, n_cell(ev, t, arm)] + ([f"{k}/{n}" if n else "-"] if with_reached else [])
        for c in block.columns:
            st = ev.stat(t.scenario, t.step, arm, c)
            cells.append("-" if st is None else fmt_spread(c, st))
        block.rows.append(cells)
    without = [a for a in t.arms if a not in arms]
    if without:  # say why, when runs of theirs failed
        block.notes.append(shortfall_note(ev, t, without)
                           or f"no runs of {', '.join(without)} in {ev.folder(t.scenario).path}")
    if absent:
        block.notes.append(f"not recorded in these results (an older harness?): {', '.join(absent)}")
    if empty:
        block.notes.append(f"no value in this step for: {', '.join(empty)}")
    short = shortfall_note(ev, t, [a for a in arms if not a.endswith(PARTIAL_SUFFIX)])
    if short:
        block.notes.append(short)
    if any(a.endswith(PARTIAL_SUFFIX) for a in arms):
        block.notes.append(f"'{PARTIAL_SUFFIX.strip()}': the steps runs finished before they failed (their "
                           "partial-summary.csv), shown apart from the complete runs")
    return block


def build_sections(ev: Evidence, plots: Optional[Path] = None) -> list[Section]:
    """Every point's section; with ``plots``, the PNGs are written there."""
    sections = []
    for point in POINTS:
        blocks = [table_block(ev, t) for t in point.tables]
        if plots is not None:
            for i, b in enumerate(blocks, 1):
                path = plot_block(ev, b, plots / f"{point.id}-{i}.png")
                b.plot = f"{plots.name}/{path.name}" if path else None
        missing = list(dict.fromkeys(b.missing for b in blocks if b.missing))
        if len(missing) and all(b.missing for b in blocks):
            answer = "; ".join(missing)
        else:   # the decided conclusion first, then the figures it rests on
            conclusion = point.conclusion(ev)
            answer = f"{conclusion}. Figures: {point.answer(ev)}" if conclusion else point.answer(ev)
        notes = point.context(ev) if point.context else []
        sections.append(Section(point, blocks, answer, notes))
    return sections


# --- plots -----------------------------------------------------------------------------------

def plot_block(ev: Evidence, b: TableBlock, path: Path) -> Optional[Path]:
    """Box plots per arm, one panel per column, every run a point (hollow red: target not
    reached). None when the table has no data."""
    if b.missing or not b.columns or not b.rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, arms = b.table, [r[0] for r in b.rows]
    ncols = 2 if len(b.columns) == 4 else min(3, len(b.columns))   # 4 panels: 2 x 2, not 3 + 1
    nrows = math.ceil(len(b.columns) / ncols)
    width = max(3.6, 0.9 * len(arms) + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.6 * nrows), squeeze=False)
    rng = np.random.default_rng(0)   # fixed jitter: the same plot for the same results
    for ax, col in zip(axes.flat, b.columns):
        _box_panel(ax, ev, t, arms, col, rng)
    for ax in list(axes.flat)[len(b.columns):]:
        ax.set_visible(False)
    fig.suptitle(f"{b.title}\nevery run a point (hollow red: target not reached) over a box plot per arm",
                 fontsize=9)
    # fixed margins, not tight_layout: that measures every label and doubles the time a plot takes
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16 / nrows, top=1 - 0.2 / nrows, wspace=0.3, hspace=0.45)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
    return path


def _box_panel(ax: Any, ev: Evidence, t: Table, arms: list[str], col: str, rng: np.random.Generator) -> None:
    groups = []
    for arm in arms:
        vals = ev.run_values(t.scenario, t.step, arm, col)
        flags = ev.reached_flags(t.scenario, t.step, arm).reindex(vals.index)
        groups.append(Group(arm, vals.to_numpy(), flags.to_numpy()))
    box_panel(ax, groups, header_of(col), rng, rotation=20, fontsize=7)


# --- the header ------------------------------------------------------------------------------

def header_lines(ev: Evidence, out: Path) -> list[tuple[str, str]]:
    """(label, text) pairs: when, the regenerating command, and each folder's host and runs."""
    lines = [("generated", time.strftime("%Y-%m-%d %H:%M:%S %z")),
             ("regenerate", f"balloon-harness review --out {out} --report-only"),
             ("complete missing runs", f"balloon-harness review --out {out}")]
    for stem, f in ev.folders.items():
        lines.append((stem, folder_line(ev, f)))
    return lines


def folder_line(ev: Evidence, f: Folder) -> str:
    if not f.present:
        return f"no results in {f.path}"
    host = as_dict(f.metadata.get("host"))
    who = ", ".join(str(v) for v in (host.get("hostname"), host.get("kernel"), host.get("cpu")) if v)
    cpus = f" ({host['cpus']} CPUs)" if host.get("cpus") else ""
    runs = f.summary[f.summary["step"] != WHOLE_RUN]["run_id"].nunique()
    planned = f.planned * len(f.info.arms) if f.planned and f.info.arms else 0
    return (f"host {who or '-'}{cpus}; date {f.metadata.get('created', '-')}; accel {ev.accel(f.stem) or '-'}; "
            f"reps {f.planned or '-'}; runs {runs}" + (f" of {planned} planned" if planned else "")
            + (f", failed {len(f.failed)}" if f.failed else ""))


def glossary(sections: list[Section]) -> list[tuple[str, str]]:
    """(column, meaning) for every column the tables show."""
    cols = list(dict.fromkeys(c for s in sections for b in s.blocks for c in b.table.columns))
    return [(c, meaning_of(c) + (f" [{unit_of(c)}]" if unit_of(c) else "")) for c in cols]


# --- Markdown --------------------------------------------------------------------------------

def md_table(b: TableBlock) -> list[str]:
    return render_md_table(b.header, b.rows, left=1)


FRAME_MAPS_TITLE = "Where the huge pages went: the 2 MiB frame maps"
FRAME_MAPS_TEXT = ("Each scenario's first run of every arm, frame by frame: the guest-physical 2 MiB frames "
                   "along one axis, the step boundaries along the other, each cell coloured by what the guest "
                   "held there (balloon pages, its THPs, free blocks, other) joined with how the host backed it "
                   "(one huge page, split into 4 KiB pages, or returned). A 4 KiB balloon's frames turn 'split "
                   "by balloon'; a design that keeps frames whole shows them 'returned whole' or 'kept huge'. "
                   "The per-run pictures are in each folder's plots/ (balloon-harness report DIR).")


def frame_maps(ev: Evidence, plots: Path) -> list[tuple[str, str]]:
    """(scenario, picture relative to the review folder) for each folder whose runs recorded a
    frame map: its arms side by side (harness.analysis.framemaps)."""
    out = []
    for stem, f in ev.folders.items():
        if not f.present:
            continue
        drawn = write_frame_maps(f.path, plots / f"frames-{stem}", f.info.arms)
        by_arm = [p for p in drawn if p.name == "frames_by_arm.png"]
        if by_arm:
            target = plots / f"frames-{stem}.png"
            by_arm[0].replace(target)
            out.append((stem, f"{plots.name}/{target.name}"))
        shutil.rmtree(plots / f"frames-{stem}", ignore_errors=True)
    return out


def render_markdown(sections: list[Section], header: list[tuple[str, str]],
                    maps: Sequence[tuple[str, str]] = ()) -> str:
    """The review as Markdown: header, answers at a glance, one section per point, glossary."""
    out = ["# The RFC review answered from measured data", "",
           "Hui Zhu's RFC `virtio_balloon: VIRTIO_BALLOON_F_THP_ORDER` (March 2020) and the points of its "
           "review, each answered by the runs below. Figures: median over the runs; (a..b): min..max of 2-4 "
           "runs; [a..b]: IQR of 5 or more; n: runs with the step; reached k/n: runs that reached the target.",
           ""]
    out += [f"- **{label}**: `{text}`" if label in ("regenerate", "complete missing runs")
            else f"- **{label}**: {text}" for label, text in header]
    out += ["", "## Answers at a glance", ""]
    out += [f"- **{s.point.title}**: {s.answer}" for s in sections]
    for s in sections:
        out += ["", f"## {s.point.title}", "", f"*{s.point.who}*" + ("" if s.point.verbatim else
                " (paraphrase: the mail itself is not in the review text)"), ""]
        out += md_quote(s.point.question) + [""]
        if s.point.design:
            out += [s.point.design, ""]
        for b in s.blocks:
            out += [f"### {b.title}", ""]
            if b.missing:
                out += [b.missing, ""]
                continue
            out += md_table(b) + [""]
            out += [f"*{n}*" for n in b.notes] + ([""] if b.notes else [])
            if b.plot:
                out += [f"![{b.title}]({b.plot})", ""]
        out += [f"Note: {n}" for n in s.notes] + ([""] if s.notes else [])
        out += [f"**Answer:** {s.answer}"]
    if maps:
        out += ["", f"## {FRAME_MAPS_TITLE}", "", FRAME_MAPS_TEXT, ""]
        for stem, png in maps:
            out += [f"### {stem}", "", f"![{stem}: frame map]({png})", ""]
    out += ["", "## Columns", ""] + [f"- `{c}`: {m}" for c, m in glossary(sections)]
    return "\n".join(out) + "\n"


# --- HTML ------------------------------------------------------------------------------------

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .6em}
td{text-align:right;font-variant-numeric:tabular-nums}td:first-child{text-align:left}th{background:#f2f2f2}
blockquote{border-left:4px solid #999;margin:.6em 0;padding:.2em 1em;color:#444;background:#fafafa}
.answer{background:#eef6ee;border:1px solid #9c9;padding:.4em .8em}.note{color:#555;font-style:italic}
img{max-width:100%}code{background:#f2f2f2;padding:0 .2em}"""


def html_table(b: TableBlock) -> str:
    return render_html_table(b.header, b.rows)


def html_section(s: Section) -> str:
    who = _e(s.point.who) + ("" if s.point.verbatim else " (paraphrase: the mail itself is not in the review text)")
    quote = "".join(f"<p>{_e(p)}</p>" for p in s.point.question.split("\n\n"))
    parts = [f'<h2 id="{_e(s.point.id)}">{_e(s.point.title)}</h2>', f"<p><em>{who}</em></p>",
             f"<blockquote>{quote}</blockquote>"]
    if s.point.design:
        parts.append(f"<p>{_e(s.point.design)}</p>")
    for b in s.blocks:
        parts.append(f"<h3>{_e(b.title)}</h3>")
        if b.missing:
            parts.append(f"<p>{_e(b.missing)}</p>")
            continue
        parts.append(html_table(b))
        parts += [f'<p class="note">{_e(n)}</p>' for n in b.notes]
        if b.plot:
            parts.append(f'<p><img src="{_e(b.plot)}" alt="{_e(b.title)}"></p>')
    parts += [f'<p class="note">Note: {_e(n)}</p>' for n in s.notes]
    parts.append(f'<p class="answer"><strong>Answer:</strong> {_e(s.answer)}</p>')
    return "\n".join(parts)


def render_html(sections: list[Section], header: list[tuple[str, str]],
                maps: Sequence[tuple[str, str]] = ()) -> str:
    """The same content as :func:`render_markdown`, as one self-contained HTML page."""
    head = "".join(f"<li><strong>{_e(k)}</strong>: " + (f"<code>{_e(v)}</code>" if k in (
        "regenerate", "complete missing runs") else _e(v)) + "</li>" for k, v in header)
    glance = "".join(f'<li><a href="#{_e(s.point.id)}">{_e(s.point.title)}</a>: {_e(s.answer)}</li>'
                     for s in sections)
    cols = "".join(f"<li><code>{_e(c)}</code>: {_e(m)}</li>" for c, m in glossary(sections))
    pictures = (f"\n<h2>{_e(FRAME_MAPS_TITLE)}</h2><p>{_e(FRAME_MAPS_TEXT)}</p>"
                + "".join(f'<h3>{_e(stem)}</h3><p><img src="{_e(png)}" alt="{_e(stem)}: frame map"></p>'
                          for stem, png in maps)) if maps else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>RFC review answered</title><style>{CSS}</style></head><body>\n"
            "<h1>The RFC review answered from measured data</h1>\n"
            "<p>Figures: median over the runs; (a..b): min..max of 2-4 runs; [a..b]: IQR of 5 or more; "
            "n: runs with the step; reached k/n: runs that reached the target.</p>\n"
            f"<ul>{head}</ul>\n<h2>Answers at a glance</h2><ul>{glance}</ul>\n"
            + "\n".join(html_section(s) for s in sections) + pictures
            + f"\n<h2>Columns</h2><ul>{cols}</ul>\n</body></html>\n")


# --- entry point -----------------------------------------------------------------------------

@dataclass
class Review:
    markdown: Path
    html: Path
    plots: list[Path]
    sections: list[Section]


def write_review(out: Path, scenarios: Optional[list[str]] = None, plots: bool = True) -> Review:
    """Write ``out/review.md``, ``out/review.html`` and (unless ``plots`` is False: tests that
    read only the text) ``out/plots/*.png`` from ``out``'s folders."""
    out = Path(out)
    ev = Evidence(out, tuple(t for p in POINTS for t in p.tables), scenarios)
    sections = build_sections(ev, out / layout.PLOTS if plots else None)
    header = header_lines(ev, out)
    maps = frame_maps(ev, out / layout.PLOTS) if plots else []
    md = atomic_write(out / "review.md", lambda p: p.write_text(render_markdown(sections, header, maps)))
    page = atomic_write(out / "review.html", lambda p: p.write_text(render_html(sections, header, maps)))
    pngs = [out / b.plot for s in sections for b in s.blocks if b.plot] + [out / png for _, png in maps]
    return Review(md, page, pngs, sections)
