"""The measurement's definitions: what each figure is, its unit, its floor, and how a
summary row is computed from the readings around a step.

Pure (no I/O, no VM): the runner feeds it readings, the report, the statistics and
the README read its definitions, and ``tests/test_metrics.py`` checks the arithmetic
on synthetic readings. A figure that is not defined here does not exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Protocol

Reading = dict[tuple[str, str], float]   # (source, metric) -> value, one moment in time

SAMPLE_COLUMNS = ["run_id", "arm", "rep", "phase", "t", "source", "metric", "value"]

# Host /proc/vmstat counters whose change over each step is recorded.
HOST_THP_COUNTERS = ("thp_split_pmd", "thp_split_page", "thp_fault_alloc", "thp_collapse_alloc")
# Guest /proc/vmstat counters sampled over SSH (the guest's side of the bill).
GUEST_COUNTERS = ("thp_split_pmd", "thp_fault_alloc", "thp_fault_fallback", "thp_split_page",
                  "compact_stall", "compact_fail", "balloon_inflate", "balloon_deflate",
                  "balloon_migrate")
GUEST_MEMINFO = {"MemFree": "mem_free_kib", "MemTotal": "mem_total_kib",
                 "AnonHugePages": "anon_huge_kib", "AnonPages": "anon_kib"}

REACHED_TOLERANCE_NOTE = "within 1/256 MiB of the target (2 MiB for a balloon moving 2 MiB pages)"


@dataclass(frozen=True)
class Metric:
    """One summary column: unit, meaning, and which direction is better (None: neither)."""

    name: str
    unit: str
    meaning: str
    better: Optional[str] = None      # "lower", "higher" or None
    headline: bool = False            # shown in tables, compared, tracked in history


_ID = [
    Metric("run_id", "", "arm-r<rep>: one boot of one arm"),
    Metric("arm", "", "the scenario's arm"),
    Metric("rep", "", "repetition, from 1"),
    Metric("step", "", "the step's label"),
    Metric("kind", "", "run, workload, balloon, sleep or measure"),
]
_VALUES = [
    Metric("target_mib", "MiB", "balloon target (guest memory asked for)"),
    Metric("start_mib", "MiB", "balloon `actual` before the step"),
    Metric("actual_mib", "MiB", "balloon `actual` after the step"),
    Metric("reached", "bool", f"the balloon got {REACHED_TOLERANCE_NOTE}", "higher", True),
    Metric("outcome", "", "reached; settled (stopped moving for settle_seconds); timeout"),
    Metric("ballooned_mib", "MiB", "start_mib - actual_mib: guest memory the step took"),
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
    Metric("settle_seconds", "s", "from the request until reached, or until it stopped moving", "lower", True),
    Metric("step_seconds", "s", "wall time of the step"),
    *[Metric(f"{c}_delta", "count", f"host /proc/vmstat {c} change over the step",
             "lower" if c == "thp_split_pmd" else None, c == "thp_split_pmd") for c in HOST_THP_COUNTERS],
    Metric("guest_ahp_before_kib", "kB", "guest AnonHugePages before"),
    Metric("guest_ahp_after_kib", "kB", "guest AnonHugePages after"),
    Metric("guest_free_order9_before", "blocks", "guest free 2 MiB blocks (buddyinfo) before"),
    Metric("guest_free_order9_after", "blocks", "guest free 2 MiB blocks after"),
    Metric("guest_anon_after_kib", "kB", "guest AnonPages after the step (the workload's memory)"),
    Metric("guest_balloon_huge_after", "blocks",
           "huge blocks the balloon holds after the step (design drivers' debugfs counter; NaN for others)"),
    Metric("guest_balloon_small_after", "pages", "4 KiB pages the balloon holds after the step (likewise)"),
    *[Metric(f"guest_{c}_delta", "count", f"guest /proc/vmstat {c} change over the step")
      for c in GUEST_COUNTERS],
    Metric("accel", "", "kvm or tcg"),
]
METRICS: dict[str, Metric] = {m.name: m for m in (*_ID, *_VALUES)}
SUMMARY_COLUMNS = list(METRICS)
ID_COLUMNS = [m.name for m in _ID]
HEADLINE = [m.name for m in _VALUES if m.headline]
NUMERIC_COLUMNS = [m.name for m in _VALUES if m.unit not in ("",)]


class MoveResult(Protocol):
    """What a step that moves guest memory reports (``harness.vm.balloon.BalloonResult``)."""

    reached: bool
    outcome: str
    seconds: float


def _get(r: Reading, source: str, metric: str) -> float:
    return float(r.get((source, metric), math.nan))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is not positive or unknown."""
    if math.isnan(denominator) or denominator <= 0:
        return math.nan
    return numerator / denominator


def summary_row(identity: dict[str, Any], kind: str, target_mib: Optional[float], before: Reading,
                after: Reading, accel: str, step_seconds: float,
                move: Optional[MoveResult] = None) -> dict[str, Any]:
    """One summary row from the readings taken just before and just after a step.

    ``identity`` carries run_id, arm, rep and step. Every column of
    :data:`SUMMARY_COLUMNS` is present; what a step cannot know is NaN (or None).
    """
    start_mib = _get(before, "balloon", "actual_mib")
    actual_mib = _get(after, "balloon", "actual_mib")
    target = float(target_mib) if target_mib is not None else math.nan
    ballooned = start_mib - actual_mib
    requested = start_mib - target
    qemu_ahp_b, qemu_ahp_a = _get(before, "qemu", "anon_huge_kib"), _get(after, "qemu", "anon_huge_kib")
    rss_b, rss_a = _get(before, "qemu", "rss_kib"), _get(after, "qemu", "rss_kib")
    thp_lost = qemu_ahp_b - qemu_ahp_a
    if math.isnan(requested) or requested == 0:
        shrink = math.nan
    else:  # a deflate asks for negative "requested"; the fraction is of that change alike
        shrink = ballooned / requested
    row: dict[str, Any] = {
        **{k: identity.get(k) for k in ("run_id", "arm", "rep", "step")}, "kind": kind,
        "target_mib": target, "start_mib": start_mib, "actual_mib": actual_mib,
        "reached": bool(move.reached) if move is not None else None,
        "outcome": move.outcome if move is not None else None,
        "ballooned_mib": ballooned, "requested_mib": requested, "shrink_fraction": shrink,
        "host_ahp_before_kib": _get(before, "host", "anon_huge_kib"),
        "host_ahp_after_kib": _get(after, "host", "anon_huge_kib"),
        "qemu_ahp_before_kib": qemu_ahp_b, "qemu_ahp_after_kib": qemu_ahp_a,
        "qemu_rss_before_kib": rss_b, "qemu_rss_after_kib": rss_a,
        "rss_freed_kib": rss_b - rss_a,
        "returned_fraction": ratio((rss_b - rss_a) / 1024, ballooned),
        "thp_lost_kib": thp_lost,
        "thp_lost_per_ballooned_mib": ratio(thp_lost / 1024, ballooned),
        "settle_seconds": move.seconds if move is not None else math.nan,
        "step_seconds": step_seconds,
        "guest_ahp_before_kib": _get(before, "guest", "anon_huge_kib"),
        "guest_ahp_after_kib": _get(after, "guest", "anon_huge_kib"),
        "guest_free_order9_before": _get(before, "guest", "free_order9_blocks"),
        "guest_free_order9_after": _get(after, "guest", "free_order9_blocks"),
        "guest_anon_after_kib": _get(after, "guest", "anon_kib"),
        "guest_balloon_huge_after": _get(after, "guest", "balloon_huge"),
        "guest_balloon_small_after": _get(after, "guest", "balloon_small"),
        "accel": accel,
    }
    for counter in HOST_THP_COUNTERS:
        row[f"{counter}_delta"] = _get(after, "host", counter) - _get(before, "host", counter)
    for counter in GUEST_COUNTERS:
        row[f"guest_{counter}_delta"] = _get(after, "guest", counter) - _get(before, "guest", counter)
    return {c: row.get(c) for c in SUMMARY_COLUMNS}


def columns_markdown() -> str:
    """The summary columns as a Markdown table (the README's is checked against it)."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    lines += [f"| `{m.name}` | {m.unit or '-'} | {m.meaning} |" for m in METRICS.values()]
    return "\n".join(lines)
