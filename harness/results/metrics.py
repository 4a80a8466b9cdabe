"""The measurement's definitions: what each figure is, its unit, its floor, how tables show
it, and how a summary row is computed from the readings around a step.

One declaration per figure (a :class:`Metric` in ``_VALUES``), so adding a column touches
this file alone (and a probe, when it needs a reading no probe takes): the report's tables,
the review's headers, the effect floors and the docs' column reference are views of the
declarations. Pure (no I/O apart from the shipped floors.json, no VM): the runner feeds it
readings, and ``tests/test_metrics.py`` checks the arithmetic on synthetic readings. A
figure that is not defined here does not exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

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
# issue 32: the scenario's own guest probes ([probes], harness.probes.guest_events): their
# samples' sources; their change over each step is harness.results.probes' table, not a
# summary column (each scenario names its own counters).
GUEST_VMSTAT_SOURCE = "guest_vmstat"
GUEST_TRACE_SOURCE = "guest_trace"
# A resize step's neighbour virtio-mem move ([vm] neighbour_virtio_mem_mib, docs/neighbours.md).
NEIGHBOUR_REACHED_KEY = ("neighbour", "reached")
NEIGHBOUR_SECONDS_KEY = ("neighbour", "seconds")
NEIGHBOUR_MOVED_KEY = ("neighbour", "unplugged_mib")
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
# "deflate" (docs/recovery.md) moves it back: a resize to the guest's full size.
MOVE_KINDS = ("resize", "balloon", "deflate")
TABLE_KINDS = (*MOVE_KINDS, "measure", "observe")
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



# What kind of figure a column is, which decides how two groups of runs are compared
# (harness.analysis.decide): a measured quantity (rank test and shift), a yes/no per run
# (test of two proportions and the difference of proportions), or a count of events
# (integers with many ties: the rank test with its exact distribution under ties).
CONTINUOUS, PROPORTION, COUNT = "continuous", "proportion", "count"
KINDS = (CONTINUOUS, PROPORTION, COUNT)
COUNT_UNITS = ("count", "blocks", "pages", "frames")
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


_MEASURED = measured_floors()


@dataclass(frozen=True)
class StepReadings:
    """What one summary row is computed from: the readings just before and just after a step,
    what the step was, and the figures of the row computed so far (``row``: a figure may use
    any figure declared before it)."""

    identity: dict[str, Any]
    kind: str
    target_mib: Optional[float]
    before: Reading
    after: Reading
    accel: str
    step_seconds: float
    move: Optional[MoveResult]
    series: Series
    start_t: float
    workload_mb_s: float
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def targetless(self) -> bool:
        """Free page reporting asks for no size: its move reports ``reached = None``."""
        return self.move is not None and self.move.reached is None


Compute = Callable[[StepReadings], Any]


def _get(r: Reading, source: str, metric: str) -> float:
    return float(r.get((source, metric), math.nan))


def _before(source: str, metric: str) -> Compute:
    return lambda s: _get(s.before, source, metric)


def _after(source: str, metric: str) -> Compute:
    return lambda s: _get(s.after, source, metric)


def _delta(source: str, metric: str) -> Compute:
    return lambda s: _get(s.after, source, metric) - _get(s.before, source, metric)


def _identity(key: str) -> Compute:
    return lambda s: s.identity.get(key)


def _row(name: str) -> Compute:
    return lambda s: s.row[name]


@dataclass(frozen=True)
class Metric:
    """One summary column, everything about it in one declaration: what it means, how it is
    computed from a step's readings, how tables show it and how comparisons judge it.

    ``better``: the direction that is better ("lower", "higher"; None: neither).
    ``kind`` (:data:`KINDS`): when not given, a proportion for a yes/no column, a count for
    counted units, else continuous. ``header``: its table header, units included (default:
    the name and unit); ``short``: the narrow terminal table's (default: ``header``).
    ``headline``: compared, tracked in history, in the statistics' headline figures.
    ``wide`` / ``narrow``: its place (1 first) in the report's wide table and in the default
    narrow one; 0: not shown there. ``resolution``: the smallest difference the figure can
    resolve at all; its effect floor (:attr:`floor`) is the larger of that and the measured
    A/A noise (floors.json). ``host_wide``: read from the whole host, not one QEMU process
    (mixes guests under --jobs > 1). ``compute``: the row's value from a :class:`StepReadings`.
    """

    name: str
    unit: str
    meaning: str
    better: Optional[str] = None      # "lower", "higher" or None
    headline: bool = False            # shown in tables, compared, tracked in history
    kind: str = ""                    # one of KINDS; "" derives it from the unit
    header: str = ""
    short: str = ""
    wide: int = 0
    narrow: int = 0
    resolution: float = 0.0
    host_wide: bool = False
    compute: Optional[Compute] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.kind:
            derived = PROPORTION if self.unit == "bool" else COUNT if self.unit in COUNT_UNITS else CONTINUOUS
            object.__setattr__(self, "kind", derived)
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not self.header:
            object.__setattr__(self, "header", f"{self.name} ({self.unit})" if self.unit else self.name)
        if not self.short:
            object.__setattr__(self, "short", self.header)

    @property
    def direction(self) -> Optional[str]:
        """Which way is better: ``better`` under the name the comparisons use."""
        return self.better

    @property
    def floor(self) -> float:
        """The effect floor: the larger of the measured A/A noise (two identical arms differ by
        this much in 95 % of resamples: harness/results/floors.json) and what the figure can
        resolve (:attr:`resolution`). A verdict needs a shift at least this large, so noise and
        a tiny drift that many pooled nights make significant are never a regression; 0: any
        significant shift counts."""
        return max(_MEASURED.get(self.name, 0.0), self.resolution)

    @property
    def has_floor(self) -> bool:
        """True when the floor was measured or the figure has a resolution."""
        return self.name in _MEASURED or self.resolution > 0


def _shrink(s: StepReadings) -> float:
    requested = s.row["requested_mib"]
    if math.isnan(requested) or requested == 0 or s.targetless:
        return math.nan
    return s.row["ballooned_mib"] / requested   # a deflate asks for negative "requested": alike


def _returned_gib_per_s(s: StepReadings) -> float:
    if s.move is None:
        return math.nan
    freed = s.row["rss_freed_kib"]   # less than one huge page back is noise for the speed
    return ratio((freed if freed >= RISE_MIN_KIB else math.nan) / KIB_PER_GIB, s.move.seconds)


# After the balloon (docs/recovery.md): an observe step's figures on the huge pages the last
# resize before it broke (harness.results.recovery; source "recovery" of its after-reading),
# and a retouch step's time (source "retouch"). Times count from the break's end reading.
RETOUCH_SECONDS_KEY, RETOUCH_MIB_KEY = ("retouch", "seconds"), ("retouch", "mib")
RECOVERY_NOTE = "(observe steps; 2 MiB frame map, harness.results.recovery; NaN elsewhere)"
RECOVERY_METRICS = [
    Metric("recovery_broken_frames", "frames", f"huge pages the last resize broke: host-huge at its start, split "
                                               f"at its end {RECOVERY_NOTE}",
           short="broken", compute=_after("recovery", "broken")),
    Metric("recovery_recollapsed_frames", "frames", f"of those, one huge page again at the step's end {RECOVERY_NOTE}",
           "higher", short="huge again", compute=_after("recovery", "recollapsed")),
    Metric("recovery_freed_frames", "frames", f"of those, nothing present at the step's end {RECOVERY_NOTE}",
           short="freed", compute=_after("recovery", "freed")),
    Metric("recovery_split_thinned_frames", "frames", "of those, still split with fewer 4 KiB pages present than "
                                                      f"after the break (split for good) {RECOVERY_NOTE}",
           short="thinned", compute=_after("recovery", "split_thinned")),
    Metric("recovery_still_split_frames", "frames", f"of those, still split, not thinned (PTE-mapped) {RECOVERY_NOTE}",
           "lower", short="split", compute=_after("recovery", "still_split")),
    Metric("recovery_recollapsed_fraction", "ratio", f"recovery_recollapsed_frames / recovery_broken_frames "
                                                     f"{RECOVERY_NOTE}", "higher", header="recollapsed",
           resolution=0.02, compute=_after("recovery", "recollapsed_fraction")),
    Metric("recovery_half_seconds", "s", "seconds from the break until half the broken huge pages were huge "
                                         f"again at once; NaN if never {RECOVERY_NOTE}", "lower",
           header="half back s", short="half s", compute=_after("recovery", "half_seconds")),
    Metric("recovery_back_60s_frames", "frames", "broken huge pages huge again 60 s after the break; NaN when "
                                                 f"the readings stop sooner {RECOVERY_NOTE}", "higher",
           header="back at 60 s", short="at 60 s", resolution=2.0, compute=_after("recovery", "back_after")),
    Metric("recovery_recollapsed_median_seconds", "s", "median seconds from the break until a recollapsed huge "
                                                       f"page was huge for good {RECOVERY_NOTE}", "lower",
           compute=_after("recovery", "recollapsed_median_seconds")),
    Metric("recovery_freed_median_seconds", "s", "median seconds from the break until a freed one was gone for "
                                                 f"good {RECOVERY_NOTE}",
           compute=_after("recovery", "freed_median_seconds")),
]
RETOUCH_METRICS = [
    Metric("retouch_seconds", "s", "retouch steps: the command's time measured in the guest (its uptime before "
                                   "and after): what touching the given-back memory again costs the guest; "
                                   "under TCG a relative figure (read it with accel)", "lower",
           header="retouch s", compute=_after(*RETOUCH_SECONDS_KEY)),
    Metric("retouch_mib", "MiB", "retouch steps: MiB the default command touched (usemem <N>m; NaN for "
                                 "a command of the scenario's own)", compute=_after(*RETOUCH_MIB_KEY)),
]


# ---- issue 30: fleets (docs/fleet.md) ----
# A fleet run's '<step> [fleet]' row is its guests' readings summed (harness.results.fleet):
# its per-process columns (qemu_*, rss_freed_kib, frames_*) are the fleet's totals; these
# figures say what the fleet means for the host. Source "fleet" of that row's after-reading.
FLEET_NOTE = "(a fleet's '[fleet]' row, all its guests together; NaN elsewhere; docs/fleet.md)"
FLEET_GUESTS_KEY, FLEET_GUEST_MIB_KEY = ("fleet", "guests"), ("fleet", "guest_mib")


def _fleet_returned_mib(s: StepReadings) -> float:
    return s.row["rss_freed_kib"] / 1024 if FLEET_GUESTS_KEY in s.after else math.nan


def more_guests_fit(returned_mib: float, guest_mib: float) -> float:
    """floor(memory returned / one guest's memory): whole guests of that size the returned
    memory would hold (0 when nothing came back; NaN when either is unknown)."""
    if math.isnan(returned_mib) or math.isnan(guest_mib) or guest_mib <= 0:
        return math.nan
    return float(math.floor(max(0.0, returned_mib) / guest_mib))


FLEET_METRICS = [
    Metric("fleet_guests", "count", f"guests whose readings the row sums (those still running) {FLEET_NOTE}",
           host_wide=True, compute=_after(*FLEET_GUESTS_KEY)),
    Metric("fleet_returned_mib", "MiB", "memory the fleet returned to the host over the step: the sum of its "
                                        f"guests' rss_freed_kib / 1024 {FLEET_NOTE}", "higher",
           header="fleet returned MiB", host_wide=True, compute=_fleet_returned_mib),
    Metric("fleet_thp_kept_kib", "kB", "host huge pages kept over all the fleet's guest RAM after the step: the "
                                       f"sum of its QEMU processes' AnonHugePages (smaps_rollup) {FLEET_NOTE}",
           "higher", header="fleet THP kept kB", host_wide=True,
           compute=lambda s: s.row["qemu_ahp_after_kib"] if FLEET_GUESTS_KEY in s.after else math.nan),
    Metric("fleet_more_guests_fit", "count",
           "more guests fit = floor(fleet_returned_mib / one guest's memory_mib): how many more guests of "
           "this size the memory the fleet gave back over the step would hold (a derived figure: it counts "
           "memory only, not cores, and assumes a new guest needs all its memory) " + FLEET_NOTE, "higher",
           header="more guests fit", host_wide=True,
           compute=lambda s: more_guests_fit(s.row["fleet_returned_mib"], _get(s.after, *FLEET_GUEST_MIB_KEY))),
]


# The figures, in the summary's column order (one declaration each; the resolution floors:
# one run in five at the default 5 repetitions, two samples at 5/s, one or two huge pages,
# two 2 MiB frames: what a difference below is below the measurement's grain).
_ID = [
    Metric("run_id", "", "arm-r<rep>: one boot of one arm", compute=_identity("run_id")),
    Metric("arm", "", "the scenario's arm", compute=_identity("arm")),
    Metric("rep", "", "repetition, from 1", compute=_identity("rep")),
    Metric("step", "", "the step's label", compute=_identity("step")),
    Metric("kind", "", "resize (balloon), run, background, stop, sleep, measure, deflate, retouch "
                                    "or observe", compute=lambda s: s.kind),
    Metric("mechanism", "", "what resizes the guest: balloon, free-page-reporting, virtio-mem (harness.mechanisms)",
           compute=_identity("mechanism")),
    # issue 30: fleets (docs/fleet.md)
    Metric("guest", "", "a fleet run's guest (1..N; 'fleet': the row of all its guests together, its step "
                        "labelled '<step> [fleet]'); empty for a run of one guest", compute=_identity("guest")),
]
_VALUES = [
    Metric("target_mib", "MiB", "guest memory asked for (balloon target; boot + virtio-mem requested-size)",
           compute=lambda s: float(s.target_mib) if s.target_mib is not None else math.nan),
    Metric("start_mib", "MiB", "guest memory before the step: balloon `actual`, or boot memory + virtio-mem "
                               "`size` (free page reporting: the guest's whole memory, it never changes)",
           compute=_before(*SIZE_KEY)),
    Metric("actual_mib", "MiB", "guest memory after the step (as start_mib)", header="actual MiB", wide=1,
           compute=_after(*SIZE_KEY)),
    Metric("reached", "bool", f"the guest got {REACHED_TOLERANCE_NOTE}; empty for free page reporting, "
                              "which has no target", "higher", True, kind=PROPORTION,
           resolution=0.2,                       # one run in five
           compute=lambda s: bool(s.move.reached) if s.move is not None and s.move.reached is not None else None),
    Metric("outcome", "", "reached; settled (stopped moving for settle_seconds, or for 5 s while the "
                          "guest's balloon driver logged failed allocations: run.json's move 'stall' quotes "
                          "them; free page reporting: the QEMU process's RSS stopped falling); timeout",
           compute=lambda s: s.move.outcome if s.move is not None else None),
    Metric("ballooned_mib", "MiB", "start_mib - actual_mib: guest memory the step took (any mechanism)",
           compute=lambda s: s.row["start_mib"] - s.row["actual_mib"]),
    Metric("requested_mib", "MiB", "start_mib - target_mib: what the step asked to take",
           compute=lambda s: s.row["start_mib"] - s.row["target_mib"]),
    Metric("shrink_fraction", "ratio",
           "ballooned_mib / requested_mib: 1.0 = the whole requested change; an arm that stops "
           "short scores below 1 however good its THP ratio", "higher", True, header="shrink", wide=2,
           resolution=0.02,                      # four 2 MiB pages of the RFC's 400 MiB request
           compute=_shrink),
    Metric("host_ahp_before_kib", "kB", "host /proc/meminfo AnonHugePages before (what the RFC read)",
           header="host AHP before kB", host_wide=True, compute=_before("host", "anon_huge_kib")),
    Metric("host_ahp_after_kib", "kB", "host /proc/meminfo AnonHugePages after", "higher", True,
           header="host AHP after kB", short="host AHP kB", wide=7, narrow=4, host_wide=True,
           resolution=2.0 * HUGE_PAGE_KIB,       # two huge pages
           compute=_after("host", "anon_huge_kib")),
    Metric("qemu_ahp_before_kib", "kB", "the QEMU process's AnonHugePages (smaps_rollup) before",
           compute=_before(*AHP_KEY)),
    Metric("qemu_ahp_after_kib", "kB", "the QEMU process's AnonHugePages after", "higher",
           header="QEMU AHP kB", compute=_after(*AHP_KEY)),
    Metric("qemu_rss_before_kib", "kB", "the QEMU process's Rss before", compute=_before(*RSS_KEY)),
    Metric("qemu_rss_after_kib", "kB", "the QEMU process's Rss after", compute=_after(*RSS_KEY)),
    Metric("rss_freed_kib", "kB", "qemu_rss_before - qemu_rss_after: memory returned to the host",
           "higher", True, header="RSS freed kB", wide=3,
           resolution=float(HUGE_PAGE_KIB),      # one huge page
           compute=lambda s: s.row["qemu_rss_before_kib"] - s.row["qemu_rss_after_kib"]),
    Metric("returned_fraction", "ratio",
           "rss_freed_kib / 1024 / ballooned_mib: how much of what the guest ballooned the host got "
           "back. About 0.7-0.8 here for a 4 KiB balloon; near 0 for a design that keeps ballooned "
           "ranges whole but never discards them (a great THP ratio, no memory returned)", "higher", True,
           header="returned", wide=4, narrow=3,
           compute=lambda s: returned_fraction(s.row["rss_freed_kib"], s.row["ballooned_mib"])),
    Metric("thp_lost_kib", "kB", "qemu_ahp_before - qemu_ahp_after: huge-page-backed memory lost", "lower",
           compute=lambda s: s.row["qemu_ahp_before_kib"] - s.row["qemu_ahp_after_kib"]),
    Metric("thp_lost_per_ballooned_mib", "ratio",
           "thp_lost_kib / 1024 / ballooned_mib. 1.0: only the ballooned memory lost its huge "
           "pages; above 1: discards split huge pages the guest still uses; below 1: part of the "
           "ballooned memory was never backed by the host. Meaningless alone: read it with "
           "shrink_fraction and reached (an arm that balloons little scores low by failing). "
           "NaN when nothing was ballooned", "lower", True, header="THP lost/MiB", short="THP/MiB",
           wide=5, narrow=1, compute=lambda s: ratio(s.row["thp_lost_kib"] / 1024, s.row["ballooned_mib"])),
    Metric("thp_lost_per_returned_mib", "ratio",
           "thp_lost_kib / rss_freed_kib: huge-page-backed memory lost per MiB the host got back. The one "
           "THP ratio every mechanism shares (free page reporting takes no guest memory, so it has no "
           "per-ballooned-MiB ratio). NaN when less than a huge page came back", "lower", True,
           header="THP lost/ret MiB", short="THP/ret", wide=6, narrow=2,
           compute=lambda s: thp_lost_per_returned_mib(s.row["thp_lost_kib"], s.row["rss_freed_kib"])),
    Metric("settle_seconds", "s", "from the request until reached, or until it stopped moving; polled at the "
                                  "host sampling rate (0.2 s resolution at the default 5/s)", "lower", True,
           header="settle s", wide=8,
           resolution=0.4,                       # two samples at the default 5/s
           compute=lambda s: s.move.seconds if s.move is not None else math.nan),
    Metric("event_seconds", "s", "from the request until the last QMP size event (BALLOON_CHANGE, "
                                 "MEMORY_DEVICE_SIZE_CHANGE) by QEMU's own microsecond timestamps: QEMU "
                                 "rate-limits these events but keeps the time of the last change, so this "
                                 "is finer than settle_seconds; NaN without events (free page reporting)",
           "lower", header="event s",
           compute=lambda s: event_seconds(getattr(s.move, "events", []), getattr(s.move, "requested_at", math.nan))
           if s.move is not None else math.nan),
    Metric("moved_gib_per_s", "GiB/s", "|ballooned_mib| / 1024 / settle_seconds: how fast the mechanism "
                                       "moved guest memory", "higher", header="moved GiB/s",
           compute=lambda s: ratio(abs(s.row["ballooned_mib"]) / 1024, s.move.seconds)
           if s.move is not None and not s.targetless else math.nan),
    Metric("returned_gib_per_s", "GiB/s", "rss_freed_kib / 2^20 / settle_seconds: how fast the host got "
                                          "memory back (for free page reporting, the speed of reporting)", "higher",
           header="returned GiB/s", compute=_returned_gib_per_s),
    Metric("rss_gib_min", "GiB*min", "the QEMU process's RSS integrated over the step (trapezoids over the "
                                     "host samples): the step's memory footprint; a run's is the sum over "
                                     "its steps", "lower", header="RSS GiB·min",
           compute=lambda s: integral_gib_min(s.series.get(RSS_KEY, []))),
    Metric("thp_gib_min", "GiB*min", "the QEMU process's AnonHugePages integrated the same way: huge pages "
                                     "kept over time", "higher", header="THP GiB·min",
           compute=lambda s: integral_gib_min(s.series.get(AHP_KEY, []))),
    Metric("thp_rise_seconds", "s", f"from the step's start until the QEMU process's AnonHugePages first "
                                    f"reached {RISE_FRACTION:.0%} of its rise over the step (recovery "
                                    f"speed); NaN when it rose less than one huge page", "lower",
           header=f"THP {RISE_FRACTION:.0%} rise s".replace("%", " %"),
           compute=lambda s: rise_seconds(s.series.get(AHP_KEY, []), s.start_t)),
    Metric("workload_mb_s", "MB/s", "a `throughput = true` run step's usemem speed: the sum of its "
                                    "tasks' KB/s lines / 1000 (the guest's side of the bill)", "higher",
           header="MB/s", compute=lambda s: s.workload_mb_s),
    Metric("step_seconds", "s", "wall time of the step", compute=lambda s: s.step_seconds),
    *[Metric("thp_split_pmd_delta", "count", "host /proc/vmstat thp_split_pmd change over the step", "lower",
             True, header="split_pmd", wide=9, resolution=1.0, host_wide=True, compute=_delta("host", c))
      if c == "thp_split_pmd" else
      Metric(f"{c}_delta", "count", f"host /proc/vmstat {c} change over the step", host_wide=True,
             compute=_delta("host", c)) for c in HOST_THP_COUNTERS],
    Metric("guest_ahp_before_kib", "kB", "guest AnonHugePages before", compute=_before("guest", "anon_huge_kib")),
    Metric("guest_ahp_after_kib", "kB", "guest AnonHugePages after", header="guest AHP kB",
           compute=_after("guest", "anon_huge_kib")),
    Metric("guest_free_order9_before", "blocks", "guest free 2 MiB blocks (buddyinfo) before",
           compute=_before("guest", "free_order9_blocks")),
    Metric("guest_free_order9_after", "blocks", "guest free 2 MiB blocks after", header="guest free 2 MiB blocks",
           compute=_after("guest", "free_order9_blocks")),
    Metric("guest_anon_after_kib", "kB", "guest AnonPages after the step (the workload's memory)",
           compute=_after("guest", "anon_kib")),
    Metric("workloads_after", "count", "workloads the harness watches after the step: background steps' "
                                       "commands and what run steps left running, each in its own cgroup",
           compute=_after("workload", "count")),
    Metric("workload_anon_before_kib", "kB", "the watched workloads' anonymous memory before the step (their "
                                             "cgroups' memory.stat anon, summed; NaN when none is watched)",
           compute=_before("workload", "anon_kib")),
    Metric("workload_anon_after_kib", "kB", "the watched workloads' anonymous memory after the step (as before)",
           compute=_after("workload", "anon_kib")),
    Metric("workload_anon_thp_after_kib", "kB", "of that, in guest transparent huge pages (memory.stat anon_thp)",
           compute=_after("workload", "anon_thp_kib")),
    Metric("workload_file_after_kib", "kB", "the watched workloads' page cache after the step (memory.stat file)",
           compute=_after("workload", "file_kib")),
    Metric("workload_current_after_kib", "kB", "all memory charged to the watched workloads' cgroups after the "
                                               "step (memory.current: anonymous, page cache, kernel)",
           compute=_after("workload", "current_kib")),
    Metric("guest_mem_total_after_kib", "kB", "guest MemTotal after the step: what the guest can really use "
                                              "at its size (a balloon and virtio-mem of the same size differ)",
           header="guest MemTotal kB", compute=_after("guest", "mem_total_kib")),
    Metric("guest_balloon_huge_after", "blocks",
           "huge blocks the balloon holds after the step (design drivers' debugfs counter; NaN for others)",
           header="balloon huge blocks", compute=_after("guest", "balloon_huge")),
    Metric("guest_balloon_small_after", "pages", "4 KiB pages the balloon holds after the step (likewise)",
           compute=_after("guest", "balloon_small")),
    *[Metric(f"guest_{c}_delta", "count", f"guest /proc/vmstat {c} change over the step",
             header={"balloon_migrate": "balloon_migrate",
                     "thp_fault_fallback": "guest thp_fault_fallback"}.get(c, ""),
             compute=_delta("guest", c)) for c in GUEST_COUNTERS],
    Metric("guest_cpu_kernel_seconds", "s", "guest CPU time in the kernel (/proc/stat system + irq + "
                                            "softirq) over the step: with the workload asleep, mostly "
                                            "the balloon's work item inflating or deflating (and the "
                                            "harness's own sampling over SSH, alike for every arm)", "lower",
           compute=_delta(*GUEST_CPU_KEY)),
    *[Metric(f"frames_{k}_after", "frames", f"after the step, {text} (2 MiB frame map, "
                                            "harness.probes.framemap; NaN without one)", better,
             resolution=2.0,                     # two 2 MiB frames
             compute=_after("frames", k))
      for k, text, better in FRAME_FIGURES],
    *RECOVERY_METRICS,
    *RETOUCH_METRICS,
    *FLEET_METRICS,
    Metric("frames_huge_vs_smaps_kib", "kB",
           "the frame map's huge host ranges x 2048 kB minus the kernel's AnonHugePages of the guest-RAM "
           "mappings (smaps), after the step: the map's cross-check, 0 within one huge page (2048)",
           compute=_after("frames", "huge_vs_smaps_kib")),
    Metric("neighbour_reached", "bool", "the neighbour virtio-mem device reached the size a resize step's "
                                        "neighbour_mib asked for while the balloon moved (1/0; NaN without one)",
           "higher", compute=_after(*NEIGHBOUR_REACHED_KEY)),
    Metric("neighbour_seconds", "s", "seconds the neighbour virtio-mem device took to reach its size, or until "
                                     "it stopped moving", "lower", compute=_after(*NEIGHBOUR_SECONDS_KEY)),
    Metric("neighbour_unplugged_mib", "MiB", "MiB the neighbour virtio-mem device unplugged during the step",
           "higher", compute=_after(*NEIGHBOUR_MOVED_KEY)),
    Metric("accel", "", "kvm or tcg", compute=lambda s: s.accel),
]


# --- issue 29: the backing of guest RAM, and what the host got back, read its way ----------
# The runner reads harness.probes.backing_usage around every step (source "backing": the
# guest-RAM mappings of the QEMU process summed, per backing: Rss/AnonHugePages for anonymous
# memory, the file's allocated size and its PMD-mapped pages for shmem, the hugetlb pages for
# hugetlb). "Returned" is then the host's own figure on every backing: a discard that frees
# nothing (QEMU on hugetlb under a 4 KiB balloon) reads 0 and is flagged, not hidden in a ratio.
BACKING_HELD_KEY = ("backing", "held_kib")
BACKING_HUGE_KEY = ("backing", "huge_kib")
FREED_NOTHING_SHARE = 0.05     # returned below 5 % of what the guest gave up: the discard freed nothing


def freed_nothing(returned_kib: float, given_up_kib: float) -> float:
    """1.0 when the guest gave up memory (``given_up_kib`` >= one huge page) and the host got
    (almost) none of it back, 0.0 when it got some, NaN when the guest gave up nothing or a
    figure is missing (a number, so the share of runs that freed nothing is its mean)."""
    if math.isnan(returned_kib) or math.isnan(given_up_kib) or given_up_kib < RISE_MIN_KIB:
        return math.nan
    return float(returned_kib < FREED_NOTHING_SHARE * given_up_kib)


_BACKING = [
    Metric("backing", "", "what the host puts behind guest RAM (harness.vm.backing: the scenario key "
                          "`backing`); empty in folders written before backings existed",
           compute=_identity("backing")),
    Metric("backing_held_before_kib", "kB", "host memory held by guest RAM before the step, read the backing's "
                                            "way (anonymous: Rss of the RAM mappings; shmem and hugetlb: the "
                                            "file's allocated size)", compute=_before(*BACKING_HELD_KEY)),
    Metric("backing_held_after_kib", "kB", "the same after the step", compute=_after(*BACKING_HELD_KEY)),
    Metric("host_returned_kib", "kB", "backing_held_before - backing_held_after: memory the host got back, "
                                      "measured on the host for every backing", "higher",
           header="host returned kB", short="host ret kB", wide=10, compute=lambda s: s.row["backing_held_before_kib"]
           - s.row["backing_held_after_kib"]),
    Metric("freed_nothing", "bool", f"the guest gave up memory (ballooned, unplugged) but the host got back "
                                    f"less than {FREED_NOTHING_SHARE:.0%} of it: the backing's discard freed "
                                    "nothing (hugetlb under a 4 KiB balloon)", "lower",
           header="freed nothing", short="freed 0", wide=11,
           compute=lambda s: freed_nothing(s.row["host_returned_kib"], s.row["ballooned_mib"] * 1024)
           if s.move is not None and not s.targetless else math.nan),
    Metric("backing_huge_before_kib", "kB", "host huge pages under guest RAM before the step (anonymous: "
                                            "AnonHugePages; shmem: ShmemPmdMapped + FilePmdMapped; hugetlb: "
                                            "its hugetlb pages)", compute=_before(*BACKING_HUGE_KEY)),
    Metric("backing_huge_after_kib", "kB", "the same after the step", "higher", header="host huge kB",
           wide=12, compute=_after(*BACKING_HUGE_KEY)),
    Metric("backing_huge_lost_per_returned_mib", "ratio",
           "(backing_huge_before - backing_huge_after) / host_returned_kib: host huge pages lost per MiB the "
           "host got back, on any backing; NaN when less than a huge page came back", "lower",
           header="huge lost/ret MiB", wide=13,
           compute=lambda s: thp_lost_per_returned_mib(s.row["backing_huge_before_kib"]
                                                       - s.row["backing_huge_after_kib"], s.row["host_returned_kib"])),
    Metric("backing_huge_kept_per_returned_mib", "ratio",
           "backing_huge_after / host_returned_kib: host huge pages the guest still holds per MiB the host got "
           "back; NaN when less than a huge page came back (hugetlb under a 4 KiB balloon: every page kept, "
           "nothing returned)", "higher",
           compute=lambda s: thp_lost_per_returned_mib(s.row["backing_huge_after_kib"], s.row["host_returned_kib"])),
]
# The backing's columns are shown in the wide table only when a folder has them (folders
# written before backings existed report as they did).
BACKING_COLUMNS = tuple(m.name for m in _BACKING)
_VALUES = [*_VALUES, *_BACKING]

METRICS: dict[str, Metric] = {m.name: m for m in (*_ID, *_VALUES)}

# --- views of the declarations above (nothing is declared below this line) -----------------
SUMMARY_COLUMNS = list(METRICS)
HEADLINE = [m.name for m in _VALUES if m.headline]
# The report's tables, in their order: (column, header).
WIDE_TABLE = [(m.name, m.header) for m in sorted((m for m in _VALUES if m.wide), key=lambda m: m.wide)]
NARROW_TABLE = [(m.name, m.short) for m in sorted((m for m in _VALUES if m.narrow), key=lambda m: m.narrow)]
# Figures read from the whole host (/proc/meminfo, /proc/vmstat), not from one QEMU process:
# with several guests at once (--jobs > 1) they mix the guests, and on another host they
# measure that host's other tenants too.
HOST_WIDE = tuple(m.name for m in _VALUES if m.host_wide)
# The figures that decide a comparison unless the scenario names others (``primary = [...]``):
# the RFC's question in three numbers, in the order comparisons list them. The other headline
# figures are described, with adjusted p-values, and never decide on their own
# (harness.analysis.compare).
DEFAULT_PRIMARY = ("thp_lost_per_returned_mib", "reached", "returned_fraction")
# What each figure can resolve at all, and its effect floor (:attr:`Metric.floor`): the
# figures with one (the rest: any significant shift counts).
RESOLUTION_FLOORS: dict[str, float] = {m.name: m.resolution for m in _VALUES if m.resolution}
EFFECT_FLOORS: dict[str, float] = {m.name: m.floor for m in sorted(_VALUES, key=lambda m: m.name) if m.has_floor}
NUMERIC_COLUMNS = [m.name for m in _VALUES if m.unit not in ("",)]


def summary_row(identity: dict[str, Any], kind: str, target_mib: Optional[float], before: Reading,
                after: Reading, accel: str, step_seconds: float,
                move: Optional[MoveResult] = None, series: Optional[Series] = None,
                start_t: float = math.nan, workload_mb_s: float = math.nan) -> dict[str, Any]:
    """One summary row from the readings taken just before and just after a step.

    ``identity`` carries run_id, arm, rep, step and mechanism. ``series`` holds the host
    samples taken during the step (for the integrals and the rise time), ``start_t`` the
    step's start on the same clock. Every column of :data:`SUMMARY_COLUMNS` is present, each
    computed by its metric's ``compute`` in declaration order; what a step cannot know is NaN
    (or None).
    """
    step = StepReadings(identity, kind, target_mib, before, after, accel, step_seconds, move, series or {},
                start_t, workload_mb_s)
    for m in METRICS.values():
        step.row[m.name] = m.compute(step) if m.compute is not None else None
    return dict(step.row)
