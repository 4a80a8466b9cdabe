"""The report of a results folder: its table, legend and first screen, numbers people can act on.

The terminal table shows, per arm and balloon/measure step, the median and spread of the
headline figures over the repetitions, ``n`` and "reached k/n". The memory actually
returned (``rss_freed_kib``, ``returned_fraction``, ``shrink_fraction``) and "reached k/n"
always stand beside the THP ratio (``thp_lost_per_ballooned_mib``), because the ratio alone
rewards an arm for stopping short (a balloon that takes little memory loses few huge pages)
or for keeping ballooned memory (a host that never discards loses none). Such a ratio is
flagged ``!`` when the median shrink_fraction is below :data:`SHORT_SHRINK`, the median
returned_fraction below :data:`SHORT_RETURNED`, or not every run reached its target.

Explanations come from :mod:`harness.results.metrics` (one definition of every figure). The
RFC's own figures are shown only for scenarios with ``[reference]`` tables. The plots are
drawn by :mod:`harness.analysis.report_plots`; :func:`write_report` writes the files the
report points to, :func:`report_text` only returns the text.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.analysis.defaults import RATIO, SHORT_RETURNED, SHORT_SHRINK
from harness.analysis.framemaps import write_frame_maps
from harness.analysis.groups import (
    fmt_metric,
    fmt_metric_spread,
    reached_as_float,
    summary_stats,
    write_summary_stats,
)
from harness.analysis.probe_table import probe_text, write_probe_deltas
from harness.analysis.recovery_table import recovery_text
from harness.analysis.recovery_timeline import write_recovery_timelines
from harness.analysis.report_plots import plot_all
from harness.render.text import text_table
from harness.results import layout
from harness.results.folder import ResultsFolder, open_folder, ordered
from harness.results.metrics import (
    BACKING_COLUMNS,
    HOST_WIDE,
    METRICS,
    NARROW_TABLE,
    REACHED_TOLERANCE_NOTE,
    TABLE_KINDS,
    WIDE_TABLE,
)

SHORT_FLAG = "!"
REPORT_KINDS = TABLE_KINDS
# The tables' columns and headers are the metrics' own (``wide``, ``narrow``, ``header``,
# ``short`` in harness.results.metrics: WIDE_TABLE, NARROW_TABLE). The default terminal table
# fits 100 columns (medians only, the spread is in --wide, summary_stats.csv and the Markdown
# of `check`): what decides the RFC's question.
REFERENCE_COLUMNS = [("host_ahp_before_kib", METRICS["host_ahp_before_kib"].header)]


@dataclass
class HeadlineTable:
    """The report's table as cells, for the terminal and for Markdown alike."""

    header: list[str]
    rows: list[list[str]]
    columns: list[str]                              # the metric behind each figure column
    flagged: list[tuple[str, str]] = field(default_factory=list)   # (arm, step) with a stop-short ratio
    reference: bool = False


def stopped_short(stats: pd.DataFrame) -> bool:
    """True when the arm/step's ratio was earned by not returning the memory asked for."""
    if stats.empty:
        return False
    first = stats.iloc[0]
    k, n = int(first["reached_k"]), int(first["reached_n"])
    def below(metric: str, limit: float) -> bool:
        med = stats[stats["metric"] == metric]["median"]
        return not med.empty and not math.isnan(med.iloc[0]) and med.iloc[0] < limit

    return (n > 0 and k < n) or below("shrink_fraction", SHORT_SHRINK) or below("returned_fraction", SHORT_RETURNED)


def headline_table(summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
                   step_order: Optional[list[str]] = None,
                   reference: Optional[dict[str, dict[str, float]]] = None,
                   kinds: tuple[str, ...] = REPORT_KINDS, wide: bool = True) -> HeadlineTable:
    """Per arm and step: n, reached k/n and each headline figure's median and spread.

    RFC columns (the scenario's ``[reference]`` figures, on each arm's last step) only
    when ``reference`` is not empty. ``wide=False``: the terminal's default, the figures
    that decide (:data:`harness.results.metrics.NARROW_TABLE`, medians only) and the RFC's after figure.
    """
    reference = reference or {}
    if wide:
        columns = list(WIDE_TABLE)
        if reference:
            columns = columns[:4] + REFERENCE_COLUMNS + columns[4:5] + [
                ("rfc_host_ahp_before_kib", "RFC before kB"), ("rfc_host_ahp_after_kib", "RFC after kB")
            ] + columns[5:]
    else:
        columns = list(NARROW_TABLE) + ([("rfc_host_ahp_after_kib", "RFC kB")] if reference else [])
    columns = _with_backing_columns(columns, summary)   # issue 29
    fleet = fleet_columns(summary)   # issue 30: a fleet's figures, when the summary has a fleet
    columns += fleet
    # a fleet's guests share the host: its host-wide figures are marked (one guest alone is its host's)
    header = ["arm", "step", "n", "reached"] + [h + (HOST_WIDE_MARK if fleet and c in HOST_WIDE else "")
                                                for c, h in columns]
    table = HeadlineTable(header, [], [c for c, _ in columns], reference=bool(reference))
    if summary is None or summary.empty:
        return table
    s = summary[summary["kind"].isin(kinds)] if "kind" in summary.columns else summary
    if s.empty:
        return table
    metrics = [c for c, _ in columns if c in METRICS and c in s.columns] + (
        [c for c in ("shrink_fraction", "returned_fraction") if c in s.columns])
    stats = summary_stats(s, arm_order, step_order, metrics=list(dict.fromkeys(metrics)))
    arms, steps = ordered(s, arm_order, step_order)
    last_step = {a: [st for st in steps if ((s["arm"] == a) & (s["step"] == st)).any()][-1] for a in arms}
    for arm in arms:
        for step in steps:
            rows = s[(s["arm"] == arm) & (s["step"] == step)]
            if rows.empty:
                continue
            st = stats[(stats["arm"] == arm) & (stats["step"] == step)]
            reached = reached_as_float(rows["reached"]).dropna() if "reached" in rows.columns else pd.Series([])
            short = stopped_short(st) if not st.empty else bool(len(reached) and reached.sum() < len(reached))
            if short:
                table.flagged.append((arm, step))
            cells = [_arm_cell(arm, rows), step, str(len(rows)),
                     f"{int(reached.sum())}/{len(reached)}" if len(reached) else "-"]
            for col, _ in columns:
                if col.startswith("rfc_"):
                    v = reference.get(arm, {}).get(col[4:], math.nan) if step == last_step[arm] else math.nan
                    cells.append(fmt_metric(col[4:], v))
                    continue
                if col == "freed_nothing" and col in rows.columns:   # issue 29: a count, flagged
                    cells.append(_freed_nothing_cell(rows[col]))
                    continue
                m = st[st["metric"] == col]
                if m.empty:
                    cells.append("-")
                    continue
                r = m.iloc[0]
                cell = fmt_metric_spread(col, r) if wide else fmt_metric(col, r["median"])
                if col == RATIO and short and cell != "-":
                    cell += SHORT_FLAG
                cells.append(cell)
            table.rows.append(cells)
    return table


# ---- issue 29: the backing in the table -------------------------------------------------------
def _has_backing(summary: Optional[pd.DataFrame]) -> bool:
    """Whether the folder's runs recorded their backing's readings (folders from before did not)."""
    return summary is not None and "backing_held_after_kib" in summary.columns \
        and bool(summary["backing_held_after_kib"].notna().any())


def _with_backing_columns(columns: list[tuple[str, str]], summary: Optional[pd.DataFrame]) -> list[tuple[str, str]]:
    """The backing's columns only where the folder has them (old folders report as they did);
    the narrow table gets what the host got back and the freed-nothing flag."""
    if not _has_backing(summary):
        return [c for c in columns if c[0] not in BACKING_COLUMNS]
    if not any(c[0] in BACKING_COLUMNS for c in columns) and _backing_matters(summary):
        columns = columns + [(c, METRICS[c].short) for c in ("host_returned_kib", "freed_nothing")]
    return columns


def _backing_matters(summary: pd.DataFrame) -> bool:
    """Whether the narrow table needs the backing's two columns: a run on another backing than
    private anonymous memory (where the process's RSS is not what the host got back), or a
    run whose discards freed nothing. The RFC's own table stays as it was, inside 100 columns."""
    kinds = {str(k) for k in summary.get("backing", pd.Series(dtype=object)).dropna() if str(k)}
    freed = pd.to_numeric(summary.get("freed_nothing", pd.Series(dtype=float)), errors="coerce")
    return bool(kinds - {"anonymous"}) or bool((freed > 0).any())


def _freed_nothing_cell(values: pd.Series) -> str:
    """``k/n`` runs whose discards freed nothing, ``NOTHING k/n`` when any did (seen, not averaged)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "-"
    k = int((v >= 0.5).sum())
    return f"NOTHING {k}/{len(v)}" if k else f"0/{len(v)}"


def _arm_cell(arm: str, rows: pd.DataFrame) -> str:
    """The arm, with its backing when that is not today's default (anonymous)."""
    if "backing" not in rows.columns:
        return arm
    kinds = sorted({str(b) for b in rows["backing"].dropna() if str(b) and str(b) != "anonymous"})
    return f"{arm} [{','.join(kinds)}]" if kinds else arm


# ---- issue 30: fleets (docs/fleet.md) ----
# Host-wide figures are marked in the table's header and named in its legend: read from the
# whole host (/proc/meminfo, vmstat) or summed over a fleet's guests, not one QEMU process.
HOST_WIDE_MARK = "*"
FLEET_TABLE = ("fleet_returned_mib", "fleet_thp_kept_kib", "fleet_more_guests_fit")


def fleet_columns(summary: Optional[pd.DataFrame]) -> list[tuple[str, str]]:
    """The fleet's columns (FLEET_TABLE) when the summary has a fleet's rows, else none."""
    if summary is None or "fleet_guests" not in summary.columns:
        return []
    if pd.to_numeric(summary["fleet_guests"], errors="coerce").isna().all():
        return []
    return [(c, METRICS[c].short) for c in FLEET_TABLE]


def format_table(table: HeadlineTable) -> str:
    """A plain-text table for the terminal (arm and step left-aligned, figures right)."""
    return text_table(table.header, table.rows, left=2)


def legend(table: HeadlineTable, width: int = 100) -> str:
    """What the table's columns mean, from the metric definitions."""
    out = ["n: runs of the arm with this step. reached k/n: runs whose balloon got "
           f"{REACHED_TOLERANCE_NOTE}.",
           "Figures: median over the runs; (a..b): min..max of 2-4 runs; [a..b]: IQR (q1..q3) of 5 or more."]
    marked = [h for h in table.header if h.endswith(HOST_WIDE_MARK)]   # only a fleet's table marks them
    if marked:
        out.append(f"{HOST_WIDE_MARK}: host-wide: read from the whole host (/proc/meminfo, /proc/vmstat), or "
                   f"a fleet's guests summed ('[fleet]' rows), not one QEMU process.")
    if any(c in FLEET_TABLE for c in table.columns):
        out.append("A fleet run (guests = N) has one row per guest of each step (n counts guests x runs) and a "
                   "'<step> [fleet]' row of all its guests together (docs/fleet.md).")
    for col, head in zip(table.columns, table.header[4:]):
        if col.startswith("rfc_"):
            continue
        m = METRICS[col]
        out.append(f"{head}: {m.meaning}" + (f" [{m.unit}]" if m.unit else "")
                   + (f"; {m.better} is better" if m.better else ""))
    if table.reference:
        which = "RFC before/after kB" if "RFC before kB" in table.header else "RFC kB (after)"
        out.append(f"{which}: the RFC's own figures (host /proc/meminfo AnonHugePages), "
                   "from the scenario's [reference] tables, beside each arm's last step.")
    if table.flagged:
        out.append(f"{SHORT_FLAG} ratio earned by stopping short: the arm returned less memory than asked "
                   f"(median shrink < {SHORT_SHRINK:g}, not every run reached the target, or the host got "
                   f"back less than {SHORT_RETURNED:g} of what was ballooned); do not rank it on this "
                   f"ratio, read RSS freed, returned and shrink. Flagged: "
                   + ", ".join(f"{a} {s}" for a, s in table.flagged) + ".")
    return "\n".join(textwrap.fill(line, width, subsequent_indent="    ") for line in out)


def interim_text(out: Path, reps_done: int, reps: int) -> str:
    """The table so far, while the other runs go on: the narrow table of the finished runs
    after every arm has run ``reps_done`` of its ``reps`` times, without the stats file and
    the plots of the final report (they cost seconds)."""
    folder = open_folder(out)
    info = folder.scenario
    table = headline_table(folder.summary, info.arms, info.steps, info.reference, wide=False)
    return (f"so far (every arm {reps_done} of {reps} times; the final table follows):\n"
            f"{format_table(table)}\n")


def where_line(out: Path, jobs: object = None) -> str:
    """The one line under the first screen's table: where the legend, the plots and the files
    are (the full legend is one flag away: ``report DIR --explain``)."""
    line = (f"legend: balloon-harness report {out} --explain; plots: {Path(out) / layout.PLOTS}/; "
            f"results: {out} (docs/results.md)")
    if isinstance(jobs, int) and jobs > 1:
        line += f"; --jobs {jobs}: host-wide figures mix the guests"
    return line


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote: the summary statistics and the plots."""

    stats: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def _opened(out: Path | ResultsFolder) -> ResultsFolder:
    """The folder, opened once by the caller or here (reading a folder's frames costs time)."""
    return out if isinstance(out, ResultsFolder) else open_folder(out)


def write_report(out: Path | ResultsFolder) -> ReportFiles:
    """Write what the report points to: summary_stats (CSV and Parquet), the plots and the
    frame maps. Apart from :func:`report_text`, so asking for the text never writes."""
    folder = _opened(out)
    info = folder.scenario
    stats = write_summary_stats(folder.path, folder.summary, info.arms, info.steps)
    plots = plot_all(folder.samples, folder.summary, folder.path / layout.PLOTS, info.arms, info.steps)
    plots += write_frame_maps(folder.path, folder.path / layout.PLOTS, info.arms)
    plots += write_recovery_timelines(folder.path, folder.path / layout.PLOTS,
                                      info.record.steps if info.record is not None else (), info.arms)
    probes = write_probe_deltas(folder)      # issue 32: the guest probes per run and step
    return ReportFiles([*stats, *([probes] if probes else [])], plots)


def report_text(out: Path | ResultsFolder, wide: bool = False, explain: bool = False,
                decided: Sequence[str] = (), files: Optional[ReportFiles] = None) -> str:
    """The table of a results folder, its decided sentences and one line saying where the rest
    is (a first screen: the table must not scroll away). Writes nothing (:func:`write_report`
    does; ``files``: what it wrote, listed under ``explain``). ``explain``: under it, every
    column's meaning, the notes and the files written (the old long form). ``wide``: every
    headline column (the default fits 100 columns)."""
    folder = _opened(out)
    out = folder.path
    files = files or ReportFiles()
    info = folder.scenario
    table = headline_table(folder.summary, info.arms, info.steps, info.reference, wide=wide)
    lines = [format_table(table) if table.rows else format_table(table) + "\n(no finished runs)"]
    after_balloon = recovery_text(folder.summary, info.arms, info.steps)
    if after_balloon:
        lines.append(after_balloon)
    probes = probe_text(folder)
    if probes:
        lines.append(probes)
    lines += list(decided)
    s = folder.summary
    jobs = folder.metadata.get("jobs") if isinstance(folder.metadata, dict) else None
    if not explain:
        flag = f" ({SHORT_FLAG}: a ratio earned by stopping short)" if table.flagged else ""
        return "\n".join([*lines, *textwrap.wrap(where_line(out, jobs) + flag, width=100,
                                                  subsequent_indent="    ", break_on_hyphens=False)])
    lines.append("")
    lines.append(legend(table) + ("" if wide else "\n(--wide: every headline figure with its spread)"))
    accel = sorted(set(s["accel"].dropna())) if not s.empty and "accel" in s else []
    lines.append(f"accelerator: {', '.join(accel) or '-'}; runs: {len(folder.runs)}; results: {out}")
    if isinstance(jobs, int) and jobs > 1:
        lines.append(textwrap.fill(f"--jobs {jobs}: guests ran {jobs} at once, so the host-wide figures (host "
                                   "AHP, the thp_* counters) mix them; the QEMU process's own (THP lost, returned) "
                                   "stay its own", width=100, subsequent_indent="    "))
    lines += [f"stats: {p}" for p in files.stats]
    lines += [f"plot: {p}" for p in files.plots]
    return "\n".join(lines)
