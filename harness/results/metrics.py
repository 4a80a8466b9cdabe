"""The measurement's definitions: what each figure is, its unit, its floor, and how a
summary row is computed from the readings around a step.

Pure (no I/O, no VM): the runner feeds it readings, the report, the statistics and
the docs' column reference read its definitions, and ``tests/test_metrics.py`` checks the arithmetic
on synthetic readings. A figure that is not defined here does not exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

from harness.arch import HUGE_PAGE_KIB

Reading = dict[tuple[str, str], float]   # (source, metric) -> value, one moment in time

SAMPLE_COLUMNS = ["run_id", "arm", "rep", "phase", "t", "source", "metric", "value"]

# Host /proc/vmstat counters whose change over each step is recorded.
HOST_THP_COUNTERS = ("thp_split_pmd", "thp_split_page", "thp_fault_alloc", "thp_collapse_alloc")
# Guest /proc/vmstat counters sampled over SSH (the guest's side of the bill).
GUEST_COUNTERS = ("thp_split_pmd", "thp_fault_alloc", "thp_fault_fallback", "thp_split_page",
                  "compact_stall", "compact_fail", "balloon_inflate", "balloon_deflate",
                  "balloon_migrate", "compact_success", "compact_migrate_scanned",
                  "compact_free_scanned", "pgmigrate_success", "pgmigrate_fail")
# The guest's kernel CPU time (/proc/stat: system + irq + softirq, in seconds), sampled with
# the counters: on an idle guest, what moving the balloon cost the guest's CPU.
GUEST_CPU_KEY = ("guest", "cpu_kernel_seconds")
GUEST_MEMINFO = {"MemFree": "mem_free_kib", "MemTotal": "mem_total_kib",
                 "AnonHugePages": "anon_huge_kib", "AnonPages": "anon_kib"}

# The frame map's counts of 2 MiB guest-physical frames (harness.probes.framemap), after a step.
FRAME_FIGURES = (
    ("host_huge", "guest-RAM frames the host maps with one huge page", "higher"),
    ("host_split", "guest-RAM frames the host backs only partly, in 4 KiB pages (a split huge page)", "lower"),
    ("split_by_balloon", "frames the guest balloons in part (1-511 of its 4 KiB pages) whose host range is "
                         "split: the huge pages a 4 KiB balloon costs", "lower"),
    ("returned_whole", "frames the guest gave up whole (ballooned whole, or unplugged by virtio-mem) whose "
                       "host range is gone whole: memory returned without splitting anything", "higher"),
    ("kept_huge", "frames the guest uses or keeps free (not ballooned) on a host huge page", "higher"),
)
REACHED_TOLERANCE_NOTE = "within 1/256 MiB of the target (2 MiB for a balloon moving 2 MiB pages)"
# Steps that move guest memory ("balloon" is the older name of "resize"), and the kinds
# tables and comparisons show.
MOVE_KINDS = ("resize", "balloon")
TABLE_KINDS = (*MOVE_KINDS, "measure")
# The sampled reading of the guest's size, whatever the mechanism: balloon `actual`, or boot
# memory + virtio-mem `size`. Its source keeps the name "balloon" of the results already stored.
SIZE_KEY = ("balloon", "actual_mib")
# The QEMU process's memory, sampled at the host rate: the footprint integrals' inputs.
RSS_KEY = ("qemu", "rss_kib")
AHP_KEY = ("qemu", "anon_huge_kib")
RISE_MIN_KIB = HUGE_PAGE_KIB   # a rise smaller than one huge page has no rise time
RISE_FRACTION = 0.9
KIB_PER_GIB = 1 << 20
Series = dict[tuple[str, str], list[tuple[float, float]]]   # (source, metric) -> [(seconds, value)]


# What kind of figure a column is, which decides how two groups of runs are compared
# (harness.analysis.decide): a measured quantity (rank test and shift), a yes/no per run
# (test of two proportions and the difference of proportions), or a count of events
# (integers with many ties: the rank test with its exact distribution under ties).
CONTINUOUS, PROPORTION, COUNT = "continuous", "proportion", "count"
KINDS = (CONTINUOUS, PROPORTION, COUNT)
COUNT_UNITS = ("count", "blocks", "pages", "frames")


@dataclass(frozen=True)
class Metric:
    """One summary column: unit, meaning, which direction is better (None: neither), and
    its ``kind`` (:data:`KINDS`; when not given: a proportion for a yes/no column, a count
    for counted units, else continuous)."""

    name: str
    unit: str
    meaning: str
    better: Optional[str] = None      # "lower", "higher" or None
    headline: bool = False            # shown in tables, compared, tracked in history
    kind: str = ""                    # one of KINDS; "" derives it from the unit

    def __post_init__(self) -> None:
        if not self.kind:
            derived = PROPORTION if self.unit == "bool" else COUNT if self.unit in COUNT_UNITS else CONTINUOUS
            object.__setattr__(self, "kind", derived)
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")


_ID = [
    Metric("run_id", "", "arm-r<rep>: one boot of one arm"),
    Metric("arm", "", "the scenario's arm"),
    Metric("rep", "", "repetition, from 1"),
    Metric("step", "", "the step's label"),
    Metric("kind", "", "resize (balloon), run, background, stop, sleep or measure"),
    Metric("mechanism", "", "what resizes the guest: balloon, free-page-reporting, virtio-mem (harness.mechanisms)"),
]
_VALUES = [
    Metric("target_mib", "MiB", "guest memory asked for (balloon target; boot + virtio-mem requested-size)"),
    Metric("start_mib", "MiB", "guest memory before the step: balloon `actual`, or boot memory + virtio-mem "
                               "`size` (free page reporting: the guest's whole memory, it never changes)"),
    Metric("actual_mib", "MiB", "guest memory after the step (as start_mib)"),
    Metric("reached", "bool", f"the guest got {REACHED_TOLERANCE_NOTE}; empty for free page reporting, "
                              "which has no target", "higher", True, kind=PROPORTION),
    Metric("outcome", "", "reached; settled (stopped moving for settle_seconds, or for 5 s while the "
                          "guest's balloon driver logged failed allocations: run.json's move 'stall' quotes "
                          "them; free page reporting: the QEMU process's RSS stopped falling); timeout"),
    Metric("ballooned_mib", "MiB", "start_mib - actual_mib: guest memory the step took (any mechanism)"),
    Metric("requested_mib", "MiB", "start_mib - target_mib: what the step asked to take"),
    Metric("shrink_fraction", "ratio",
           "ballooned_mib / requested_mib: 1.0 = the whole requested change; an arm that stops "
           "short scores below 1 however good its THP ratio", "higher", True),
    Metric("host_ahp_before_kib", "kB", "host /proc/meminfo AnonHugePages before (what the RFC read)"),
    Metric("host_ahp_after_kib", "kB", "host /proc/meminfo AnonHugePages after", "higher", True),
    Metric("qemu_ahp_before_kib", "kB", "the QEMU process's AnonHugePages (smaps_rollup) before"),
    Metric("qemu_ahp_after_kib", "kB", "the QEMU process's AnonHugePages after", "higher"),
    Metric("qemu_rss_before_kib", "kB", "the QEMU process's Rss before"),
    Metric("qemu_rss_after_kib", "kB", "the QEMU process's Rss after"),
    Metric("rss_freed_kib", "kB", "qemu_rss_before - qemu_rss_after: memory returned to the host",
           "higher", True),
    Metric("returned_fraction", "ratio",
           "rss_freed_kib / 1024 / ballooned_mib: how much of what the guest ballooned the host got "
           "back. About 0.7-0.8 here for a 4 KiB balloon; near 0 for a design that keeps ballooned "
           "ranges whole but never discards them (a great THP ratio, no memory returned)", "higher", True),
    Metric("thp_lost_kib", "kB", "qemu_ahp_before - qemu_ahp_after: huge-page-backed memory lost", "lower"),
    Metric("thp_lost_per_ballooned_mib", "ratio",
           "thp_lost_kib / 1024 / ballooned_mib. 1.0: only the ballooned memory lost its huge "
           "pages; above 1: discards split huge pages the guest still uses; below 1: part of the "
           "ballooned memory was never backed by the host. Meaningless alone: read it with "
           "shrink_fraction and reached (an arm that balloons little scores low by failing). "
           "NaN when nothing was ballooned", "lower", True),
    Metric("thp_lost_per_returned_mib", "ratio",
           "thp_lost_kib / rss_freed_kib: huge-page-backed memory lost per MiB the host got back. The one "
           "THP ratio every mechanism shares (free page reporting takes no guest memory, so it has no "
           "per-ballooned-MiB ratio). NaN when less than a huge page came back", "lower", True),
    Metric("settle_seconds", "s", "from the request until reached, or until it stopped moving; polled at the "
                                  "host sampling rate (0.2 s resolution at the default 5/s)", "lower", True),
    Metric("event_seconds", "s", "from the request until the last QMP size event (BALLOON_CHANGE, "
                                 "MEMORY_DEVICE_SIZE_CHANGE) by QEMU's own microsecond timestamps: QEMU "
                                 "rate-limits these events but keeps the time of the last change, so this "
                                 "is finer than settle_seconds; NaN without events (free page reporting)",
           "lower"),
    Metric("moved_gib_per_s", "GiB/s", "|ballooned_mib| / 1024 / settle_seconds: how fast the mechanism "
                                       "moved guest memory", "higher"),
    Metric("returned_gib_per_s", "GiB/s", "rss_freed_kib / 2^20 / settle_seconds: how fast the host got "
                                          "memory back (for free page reporting, the speed of reporting)", "higher"),
    Metric("rss_gib_min", "GiB*min", "the QEMU process's RSS integrated over the step (trapezoids over the "
                                     "host samples): the step's memory footprint; a run's is the sum over "
                                     "its steps", "lower"),
    Metric("thp_gib_min", "GiB*min", "the QEMU process's AnonHugePages integrated the same way: huge pages "
                                     "kept over time", "higher"),
    Metric("thp_rise_seconds", "s", f"from the step's start until the QEMU process's AnonHugePages first "
                                    f"reached {RISE_FRACTION:.0%} of its rise over the step (recovery "
                                    f"speed); NaN when it rose less than one huge page", "lower"),
    Metric("workload_mb_s", "MB/s", "a `throughput = true` run step's usemem speed: the sum of its "
                                    "tasks' KB/s lines / 1000 (the guest's side of the bill)", "higher"),
    Metric("step_seconds", "s", "wall time of the step"),
    *[Metric(f"{c}_delta", "count", f"host /proc/vmstat {c} change over the step",
             "lower" if c == "thp_split_pmd" else None, c == "thp_split_pmd") for c in HOST_THP_COUNTERS],
    Metric("guest_ahp_before_kib", "kB", "guest AnonHugePages before"),
    Metric("guest_ahp_after_kib", "kB", "guest AnonHugePages after"),
    Metric("guest_free_order9_before", "blocks", "guest free 2 MiB blocks (buddyinfo) before"),
    Metric("guest_free_order9_after", "blocks", "guest free 2 MiB blocks after"),
    Metric("guest_anon_after_kib", "kB", "guest AnonPages after the step (the workload's memory)"),
    Metric("workloads_after", "count", "workloads the harness watches after the step: background steps' "
                                       "commands and what run steps left running, each in its own cgroup"),
    Metric("workload_anon_before_kib", "kB", "the watched workloads' anonymous memory before the step (their "
                                             "cgroups' memory.stat anon, summed; NaN when none is watched)"),
    Metric("workload_anon_after_kib", "kB", "the watched workloads' anonymous memory after the step (as before)"),
    Metric("workload_anon_thp_after_kib", "kB", "of that, in guest transparent huge pages (memory.stat anon_thp)"),
    Metric("workload_file_after_kib", "kB", "the watched workloads' page cache after the step (memory.stat file)"),
    Metric("workload_current_after_kib", "kB", "all memory charged to the watched workloads' cgroups after the "
                                               "step (memory.current: anonymous, page cache, kernel)"),
    Metric("guest_mem_total_after_kib", "kB", "guest MemTotal after the step: what the guest can really use "
                                              "at its size (a balloon and virtio-mem of the same size differ)"),
    Metric("guest_balloon_huge_after", "blocks",
           "huge blocks the balloon holds after the step (design drivers' debugfs counter; NaN for others)"),
    Metric("guest_balloon_small_after", "pages", "4 KiB pages the balloon holds after the step (likewise)"),
    *[Metric(f"guest_{c}_delta", "count", f"guest /proc/vmstat {c} change over the step")
      for c in GUEST_COUNTERS],
    Metric("guest_cpu_kernel_seconds", "s", "guest CPU time in the kernel (/proc/stat system + irq + "
                                            "softirq) over the step: with the workload asleep, mostly "
                                            "the balloon's work item inflating or deflating (and the "
                                            "harness's own sampling over SSH, alike for every arm)", "lower"),
    *[Metric(f"frames_{k}_after", "frames", f"after the step, {text} (2 MiB frame map, "
                                            "harness.probes.framemap; NaN without one)", better)
      for k, text, better in FRAME_FIGURES],
    Metric("frames_huge_vs_smaps_kib", "kB",
           "the frame map's huge host ranges x 2048 kB minus the kernel's AnonHugePages of the guest-RAM "
           "mappings (smaps), after the step: the map's cross-check, 0 within one huge page (2048)"),
    Metric("accel", "", "kvm or tcg"),
]
METRICS: dict[str, Metric] = {m.name: m for m in (*_ID, *_VALUES)}
SUMMARY_COLUMNS = list(METRICS)
HEADLINE = [m.name for m in _VALUES if m.headline]
# Figures read from the whole host (/proc/meminfo, /proc/vmstat), not from one QEMU process:
# with several guests at once (--jobs > 1) they mix the guests, and on another host they
# measure that host's other tenants too.
HOST_WIDE = ("host_ahp_before_kib", "host_ahp_after_kib", *[f"{c}_delta" for c in HOST_THP_COUNTERS])
# The figures that decide a comparison unless the scenario names others (``primary = [...]``):
# the RFC's question in three numbers. The other headline figures are described, with
# adjusted p-values, and never decide on their own (harness.analysis.compare).
DEFAULT_PRIMARY = ("thp_lost_per_returned_mib", "reached", "returned_fraction")
# What a figure can resolve at all: below this a difference is below the measurement's grain
# (one run in five at the default 5 repetitions, two samples at 5/s, one or two huge pages,
# two 2 MiB frames). Not a judgement of what matters: that is the measured noise below.
RESOLUTION_FLOORS: dict[str, float] = {
    "reached": 0.2,                       # one run in five
    "shrink_fraction": 0.02,              # four 2 MiB pages of the RFC's 400 MiB request
    "rss_freed_kib": float(HUGE_PAGE_KIB),        # one huge page
    "host_ahp_after_kib": 2.0 * HUGE_PAGE_KIB,    # two huge pages
    "settle_seconds": 0.4,                # two samples at the default 5/s
    "thp_split_pmd_delta": 1.0,
    **{f"frames_{k}_after": 2.0 for k, _, _ in FRAME_FIGURES},   # two 2 MiB frames
}
MEASURED_FLOORS_FILE = Path(__file__).with_name("floors.json")


def measured_floors(path: Path = MEASURED_FLOORS_FILE) -> dict[str, float]:
    """The noise floors ``balloon-harness calibrate`` measured on this kind of host (one arm
    against its copy; the file names the command, date, commit and host): {} when absent."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    floors = record.get("floors") if isinstance(record, dict) else None
    return {str(k): float(v) for k, v in (floors or {}).items() if isinstance(v, (int, float))}


# The effect floor of each figure: the larger of the measured A/A noise (two identical arms
# differ by this much in 95 % of resamples: harness/results/floors.json) and what the figure
# can resolve. A verdict needs a shift at least this large, so noise and a tiny drift that
# many pooled nights make significant are never a regression. Figures not listed: any
# significant shift counts.
_MEASURED = measured_floors()
EFFECT_FLOORS: dict[str, float] = {
    name: max(_MEASURED.get(name, 0.0), RESOLUTION_FLOORS.get(name, 0.0))
    for name in sorted(set(_MEASURED) | set(RESOLUTION_FLOORS))
}
NUMERIC_COLUMNS = [m.name for m in _VALUES if m.unit not in ("",)]


class MoveResult(Protocol):
    """What a step that moves guest memory reports (``harness.vm.follow.MoveResult``)."""

    reached: Optional[bool]
    outcome: str
    seconds: float
    # optional: ``events`` (QMP events with their timestamps) and ``requested_at`` (wall clock)


def event_seconds(events: list[dict], requested_at: float) -> float:
    """Seconds from ``requested_at`` (wall clock) to the newest QMP event's own timestamp."""
    stamps = [e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
              for e in events if isinstance(e.get("timestamp"), dict)]
    if not stamps or math.isnan(requested_at):
        return math.nan
    return max(stamps) - requested_at


def _get(r: Reading, source: str, metric: str) -> float:
    return float(r.get((source, metric), math.nan))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is not positive or unknown."""
    if math.isnan(denominator) or denominator <= 0:
        return math.nan
    return numerator / denominator


def returned_fraction(rss_freed_kib: float, ballooned_mib: float) -> float:
    """Of the MiB the guest gave up, the share the host got back (``returned_fraction``)."""
    return ratio(rss_freed_kib / 1024, ballooned_mib)


def thp_lost_per_returned_mib(thp_lost_kib: float, rss_freed_kib: float) -> float:
    """Host THP lost per MiB the host got back; NaN when less than a huge page came back."""
    return ratio(thp_lost_kib, rss_freed_kib if rss_freed_kib >= RISE_MIN_KIB else math.nan)


def integral_gib_min(points: list[tuple[float, float]]) -> float:
    """kB values over seconds, integrated by trapezoids, in GiB*min (NaN for fewer than 2 points)."""
    pts = sorted(points)
    if len(pts) < 2:
        return math.nan
    kib_s = sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in zip(pts, pts[1:]))
    return kib_s / KIB_PER_GIB / 60


def rise_seconds(points: list[tuple[float, float]], start: float) -> float:
    """Seconds from ``start`` until the value first reached RISE_FRACTION of its rise from the
    first to the last point; NaN when it rose by less than RISE_MIN_KIB."""
    pts = sorted(points)
    if len(pts) < 2:
        return math.nan
    first, last = pts[0][1], pts[-1][1]
    if last - first < RISE_MIN_KIB:
        return math.nan
    level = first + RISE_FRACTION * (last - first)
    return next(t for t, v in pts if v >= level) - start


def summary_row(identity: dict[str, Any], kind: str, target_mib: Optional[float], before: Reading,
                after: Reading, accel: str, step_seconds: float,
                move: Optional[MoveResult] = None, series: Optional[Series] = None,
                start_t: float = math.nan, workload_mb_s: float = math.nan) -> dict[str, Any]:
    """One summary row from the readings taken just before and just after a step.

    ``identity`` carries run_id, arm, rep, step and mechanism. ``series`` holds the host
    samples taken during the step (for the integrals and the rise time), ``start_t`` the
    step's start on the same clock. Every column of :data:`SUMMARY_COLUMNS` is present;
    what a step cannot know is NaN (or None).
    """
    series = series or {}
    start_mib = _get(before, *SIZE_KEY)
    actual_mib = _get(after, *SIZE_KEY)
    target = float(target_mib) if target_mib is not None else math.nan
    ballooned = start_mib - actual_mib
    requested = start_mib - target
    qemu_ahp_b, qemu_ahp_a = _get(before, "qemu", "anon_huge_kib"), _get(after, "qemu", "anon_huge_kib")
    rss_b, rss_a = _get(before, "qemu", "rss_kib"), _get(after, "qemu", "rss_kib")
    thp_lost = qemu_ahp_b - qemu_ahp_a
    targetless = move is not None and move.reached is None   # free page reporting asks for nothing
    # memory the host got back; less than one huge page is noise for the per-MiB and speed figures
    returned_kib = rss_b - rss_a if rss_b - rss_a >= RISE_MIN_KIB else math.nan
    if math.isnan(requested) or requested == 0 or targetless:
        shrink = math.nan
    else:  # a deflate asks for negative "requested"; the fraction is of that change alike
        shrink = ballooned / requested
    row: dict[str, Any] = {
        **{k: identity.get(k) for k in ("run_id", "arm", "rep", "step", "mechanism")}, "kind": kind,
        "target_mib": target, "start_mib": start_mib, "actual_mib": actual_mib,
        "reached": bool(move.reached) if move is not None and move.reached is not None else None,
        "outcome": move.outcome if move is not None else None,
        "ballooned_mib": ballooned, "requested_mib": requested, "shrink_fraction": shrink,
        "host_ahp_before_kib": _get(before, "host", "anon_huge_kib"),
        "host_ahp_after_kib": _get(after, "host", "anon_huge_kib"),
        "qemu_ahp_before_kib": qemu_ahp_b, "qemu_ahp_after_kib": qemu_ahp_a,
        "qemu_rss_before_kib": rss_b, "qemu_rss_after_kib": rss_a,
        "rss_freed_kib": rss_b - rss_a,
        "returned_fraction": returned_fraction(rss_b - rss_a, ballooned),
        "thp_lost_kib": thp_lost,
        "thp_lost_per_ballooned_mib": ratio(thp_lost / 1024, ballooned),
        "thp_lost_per_returned_mib": thp_lost_per_returned_mib(thp_lost, rss_b - rss_a),
        "settle_seconds": move.seconds if move is not None else math.nan,
        "event_seconds": event_seconds(getattr(move, "events", []), getattr(move, "requested_at", math.nan))
        if move is not None else math.nan,
        "moved_gib_per_s": ratio(abs(ballooned) / 1024, move.seconds) if move is not None and not targetless
        else math.nan,
        "returned_gib_per_s": ratio(returned_kib / KIB_PER_GIB, move.seconds) if move is not None else math.nan,
        "rss_gib_min": integral_gib_min(series.get(RSS_KEY, [])),
        "thp_gib_min": integral_gib_min(series.get(AHP_KEY, [])),
        "thp_rise_seconds": rise_seconds(series.get(AHP_KEY, []), start_t),
        "workload_mb_s": workload_mb_s,
        "step_seconds": step_seconds,
        "guest_ahp_before_kib": _get(before, "guest", "anon_huge_kib"),
        "guest_ahp_after_kib": _get(after, "guest", "anon_huge_kib"),
        "guest_free_order9_before": _get(before, "guest", "free_order9_blocks"),
        "guest_free_order9_after": _get(after, "guest", "free_order9_blocks"),
        "guest_anon_after_kib": _get(after, "guest", "anon_kib"),
        "workloads_after": _get(after, "workload", "count"),
        "workload_anon_before_kib": _get(before, "workload", "anon_kib"),
        "workload_anon_after_kib": _get(after, "workload", "anon_kib"),
        "workload_anon_thp_after_kib": _get(after, "workload", "anon_thp_kib"),
        "workload_file_after_kib": _get(after, "workload", "file_kib"),
        "workload_current_after_kib": _get(after, "workload", "current_kib"),
        "guest_mem_total_after_kib": _get(after, "guest", "mem_total_kib"),
        "guest_balloon_huge_after": _get(after, "guest", "balloon_huge"),
        "guest_balloon_small_after": _get(after, "guest", "balloon_small"),
        **{f"frames_{k}_after": _get(after, "frames", k) for k, _, _ in FRAME_FIGURES},
        "frames_huge_vs_smaps_kib": _get(after, "frames", "huge_vs_smaps_kib"),
        "accel": accel,
    }
    for counter in HOST_THP_COUNTERS:
        row[f"{counter}_delta"] = _get(after, "host", counter) - _get(before, "host", counter)
    for counter in GUEST_COUNTERS:
        row[f"guest_{counter}_delta"] = _get(after, "guest", counter) - _get(before, "guest", counter)
    row["guest_cpu_kernel_seconds"] = _get(after, *GUEST_CPU_KEY) - _get(before, *GUEST_CPU_KEY)
    return {c: row.get(c) for c in SUMMARY_COLUMNS}


def columns_markdown() -> str:
    """The summary columns as a Markdown table: the docs' column reference
    (docs/reference/columns.md) is generated from it when the site is built."""
    def cell(text: str) -> str:
        # one line, no pipe that ends the cell, no <word> that HTML would take for a tag
        return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    lines = ["| column | unit | meaning | better | effect floor |", "|---|---|---|---|---|"]
    for m in METRICS.values():
        better = (m.better or "-") + (" (headline)" if m.headline else "")
        floor = EFFECT_FLOORS.get(m.name)
        lines.append(f"| `{m.name}` | {cell(m.unit or '-')} | {cell(m.meaning)} | {better} | "
                     f"{'-' if floor is None else f'{floor:g}'} |")
    return "\n".join(lines)
