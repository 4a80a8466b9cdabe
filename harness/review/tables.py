"""What the review's tables are made of: the scenarios it runs, the columns it shows (with
the review's own headers and the columns it derives) and the :class:`Table` a point
reads. Plain data, read by :mod:`.evidence`, :mod:`.points` and :mod:`.document`.
"""

from __future__ import annotations

from dataclasses import dataclass

# The scenarios the review runs, in order (shipped scenario files, see harness.resources).
REVIEW_SCENARIOS = ["review-designs.toml", "mechanisms.toml", "mechanisms-phases.toml"]
DESIGNS = "review-designs"
MECHANISMS = "mechanisms"
PHASES = "mechanisms-phases"
# A pseudo step: one row per run with the sums of its steps (footprint = integral over the run).
WHOLE_RUN = "whole run"
# The step whose host THP a run's later steps are compared with (the workload filled memory).
FILL_STEP = "usemem"
DAVID = "David Hildenbrand, review of RFC v1 (12 Mar 2020)"


@dataclass(frozen=True)
class Column:
    """How a column is shown: its table header (units included), unit and meaning.

    Columns of :data:`harness.metrics.METRICS` take their unit and meaning from there (one
    definition); the unit and meaning here serve the columns :mod:`harness.review` derives
    and those an older harness did not define.
    """

    header: str
    unit: str = ""
    meaning: str = ""


COLUMNS: dict[str, Column] = {
    "shrink_fraction": Column("shrink"),
    "thp_lost_per_ballooned_mib": Column("THP lost / ballooned MiB"),
    "returned_fraction": Column("returned"),
    "rss_freed_kib": Column("RSS freed kB"),
    "settle_seconds": Column("settle s"),
    "guest_free_order9_after": Column("guest free 2 MiB blocks"),
    "guest_balloon_migrate_delta": Column("balloon_migrate"),
    "guest_balloon_huge_after": Column("balloon huge blocks"),
    "guest_thp_fault_fallback_delta": Column("guest thp_fault_fallback"),
    "guest_ahp_after_kib": Column("guest AHP kB"),
    "qemu_ahp_after_kib": Column("QEMU AHP kB"),
    "guest_mem_total_after_kib": Column("guest MemTotal kB"),
    "event_seconds": Column("event s"),
    "workload_mb_s": Column("MB/s", "MB/s", "throughput of the workload run by the step (usemem random access)"),
    "thp_lost_per_returned_mib": Column(
        "THP lost / returned MiB", "ratio",
        "thp_lost_kib / rss_freed_kib: host THP lost per MiB of host RSS freed (NaN below one huge page)"),
    "moved_gib_per_s": Column("moved GiB/s", "GiB/s", "|guest memory change| per second of the resize"),
    "returned_gib_per_s": Column("returned GiB/s", "GiB/s", "host RSS freed per second of the resize"),
    "rss_gib_min": Column("RSS GiB·min", "GiB*min",
                          "QEMU RSS integrated over time (footprint; on 'whole run': the sum over the run's steps)"),
    "thp_gib_min": Column("THP GiB·min", "GiB*min",
                          "QEMU AnonHugePages integrated over time (on 'whole run': the sum over the run's steps)"),
    "thp_rise_seconds": Column("THP 90 % rise s", "s",
                               "seconds until QEMU AnonHugePages reached 90 % of its rise during the step"),
    "thp_back_fraction": Column(
        f"THP vs {FILL_STEP}", "ratio",
        f"QEMU AnonHugePages after the step / after the run's '{FILL_STEP}' step: 1.0 = the host has all "
        "its huge pages back"),
    "thp_regained_kib": Column("THP regained kB", "kB",
                               "qemu_ahp_after - qemu_ahp_before over the step (negative: huge pages lost)"),
}


@dataclass(frozen=True)
class Table:
    """One table of a section: the step of one scenario folder, the arms and the columns."""

    scenario: str                  # folder stem under the review folder, e.g. "review-designs"
    step: str                      # step label, or WHOLE_RUN for per-run sums
    arms: tuple[str, ...]
    columns: tuple[str, ...]
    caption: str = ""
