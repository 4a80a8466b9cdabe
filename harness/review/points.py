"""The points of David Hildenbrand's review of the RFC ``VIRTIO_BALLOON_F_THP_ORDER`` (and
MST's suggestion), as data: for each, the question, where the measurements that answer it
live (scenario folder, step, arms, columns) and a function writing the one-line answer.

Kept as data, apart from :mod:`harness.review` which loads the results and renders them,
so that adding a point, an arm or a column is one edit here and the Markdown, the HTML,
the plots and the terminal all follow. Every number in an answer is computed from the
results through :class:`harness.review.evidence.Evidence`; nothing here is a measured figure.

The questions are the review's words (``references/rfc-virtio-balloon-thp-order-review.txt``);
MST's mail is not in that file, so his point is marked as a paraphrase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from harness.analysis.defaults import CONFIDENCE
from harness.analysis.report import SHORT_RETURNED as KEEPS_MEMORY
from harness.review.evidence import Evidence
from harness.review.tables import (
    DAVID,
    DESIGNS,
    FILL_STEP,
    MECHANISMS,
    PHASES,
    WHOLE_RUN,
    Table,
)


@dataclass(frozen=True)
class Claim:
    """A comparison that answers the point: ``arm`` against ``other`` in ``table`` on ``column``,
    decided by :func:`harness.analysis.decide.decide` (rank test and Hodges-Lehmann shift)."""

    table: Table
    arm: str
    other: str
    column: str
    what: str                        # the figure in words, e.g. "host THP lost per ballooned MiB"

    def sentence(self, ev: Evidence) -> str:
        if ev.missing(self.table):
            return ""
        d = ev.decide(self.table, self.arm, self.other, self.column)
        if d.verdict == "no data":
            return ""
        if d.verdict in ("better", "worse", "higher", "lower"):
            head = f"{self.arm} {d.verdict} than {self.other} on {self.what}"
        elif d.verdict == "same":
            head = f"{self.arm} the same as {self.other} on {self.what} (any difference is below the effect floor)"
        elif d.verdict == "n too small":
            head = (f"{self.arm} against {self.other} on {self.what}: n too small to decide "
                    f"({d.reps_needed} runs per arm can)")
        else:
            head = f"{self.arm} against {self.other} on {self.what}: not decided by these runs"
        return f"{head} ({_evidence(ev, d, self.column)})"


def _evidence(ev: Evidence, d, column: str) -> str:
    f = lambda v: ev.fmt(column, v)  # noqa: E731
    ci = (f"{CONFIDENCE:.0%} CI {f(d.ci_low)}..{f(d.ci_high)}" if math.isfinite(d.ci_low) and math.isfinite(d.ci_high)
          else "interval unbounded")
    p = "no test" if math.isnan(d.p_value) else f"p = {d.p_value:.2g}"
    return f"medians {f(d.median_b)} vs {f(d.median_a)}, n = {d.n_b} vs {d.n_a}, shift {f(d.shift)}, {ci}, {p}"


@dataclass(frozen=True)
class ReviewPoint:
    """One review point: the question, its tables and the one-line answer computed from them.

    ``context`` adds notes that depend on the data (the accelerator, the sampling rate);
    ``design`` says which design implements what the reviewer asked for (static words, no
    figures).
    """

    id: str
    title: str
    who: str
    question: str
    tables: tuple[Table, ...]
    answer: Callable[[Evidence], str]
    design: str = ""
    context: Optional[Callable[[Evidence], list[str]]] = None
    verbatim: bool = True
    claims: tuple[Claim, ...] = ()

    def conclusion(self, ev: Evidence) -> str:
        """The point's decided sentences (one per claim with data), for the answer's lead."""
        return "; ".join(c for c in (claim.sentence(ev) for claim in self.claims) if c)

    @property
    def scenarios(self) -> list[str]:
        """The folders this point reads, in table order."""
        return list(dict.fromkeys(t.scenario for t in self.tables))


# --- the words the answers are built from -----------------------------------------------

def values(ev: Evidence, table: Table, column: str, arms: Optional[tuple[str, ...]] = None) -> str:
    """``"arm median, arm median"`` for the arms with a value (empty string when none)."""
    parts = []
    for arm in arms or ev.arms(table):
        v = ev.median(table.scenario, table.step, arm, column)
        if not math.isnan(v):
            parts.append(f"{arm} {ev.fmt(column, v)}")
    return ", ".join(parts)


def reached(ev: Evidence, table: Table, arms: Optional[tuple[str, ...]] = None) -> str:
    """``"arm k/n, arm k/n"`` for the arms whose step moved memory."""
    parts = []
    for arm in arms or ev.arms(table):
        k, n = ev.reached(table.scenario, table.step, arm)
        if n:
            parts.append(f"{arm} {k}/{n}")
    return ", ".join(parts)


def clause(label: str, text: str) -> Optional[str]:
    """``"label: text"``, or None when there is no text (the data are missing)."""
    return f"{label}: {text}" if text else None


def join(ev: Evidence, tables: tuple[Table, ...], clauses: list[Optional[str]]) -> str:
    """The clauses with data, then a "not measured" line for each table without data (once
    per line: two tables of one missing folder say it once)."""
    missing = list(dict.fromkeys(m for m in (ev.missing(t) for t in tables) if m))
    kept = [c for c in clauses if c] + missing
    return "; ".join(kept) if kept else "not measured: no arm of these tables has data"


def names(arms: list[str]) -> str:
    return ", ".join(arms) if arms else "none"


# --- point 1: fallback to smaller pages --------------------------------------------------

P1_TABLE = Table(DESIGNS, "balloon 624", ("baseline", "rfc-v1", "fallback", "movable", "compact-noretry",
                                       "compact", "contig"),
                 ("shrink_fraction", "thp_lost_per_ballooned_mib", "returned_fraction", "settle_seconds"),
                 "inflating to 624 MiB after usemem --punch-holes 800m")


def answer_fallback(ev: Evidence) -> str:
    """Reached k/n and the THP ratio per arm, then which arms did both: reach every time and
    lose less THP per MiB than the baseline (the ratio alone rewards stopping short)."""
    t = P1_TABLE
    base = ev.median(t.scenario, t.step, "baseline", "thp_lost_per_ballooned_mib")
    good = [a for a in t.arms if a != "baseline" and ev.reached_all(t.scenario, t.step, a)
            and ev.median(t.scenario, t.step, a, "thp_lost_per_ballooned_mib") < base]
    verdict = (f"reached every time and lost less THP per MiB than baseline: {names(good)}"
               if not math.isnan(base) else None)
    return join(ev, (t,), [clause("reached", reached(ev, t)),
                           clause("median THP lost per ballooned MiB", values(ev, t, "thp_lost_per_ballooned_mib")),
                           verdict])


# --- point 2: stealing the guest's THPs --------------------------------------------------

P2_THROUGHPUT = Table(MECHANISMS, "throughput", ("balloon", "balloon-2m", "free-page-reporting", "virtio-mem"),
                      ("workload_mb_s", "guest_thp_fault_fallback_delta", "guest_ahp_after_kib"),
                      "usemem random access in the shrunk guest (624 MiB)")
P2_FREE = Table(DESIGNS, "balloon 624", ("baseline", "rfc-v1", "fallback", "movable", "split-pbp"),
                ("guest_free_order9_after", "guest_ahp_after_kib"),
                "free 2 MiB blocks the guest has left after the inflation")


def answer_stealing(ev: Evidence) -> str:
    """Throughput and THP fallbacks per arm, the free 2 MiB blocks left, and the accelerator:
    under TCG the MB/s compares the arms but cannot show a THP speed benefit."""
    t, f = P2_THROUGHPUT, P2_FREE
    accel = ev.accel(t.scenario)
    return join(ev, (t, f), [
        clause("median usemem MB/s", values(ev, t, "workload_mb_s")),
        clause("guest THP fault fallbacks", values(ev, t, "guest_thp_fault_fallback_delta")),
        clause("guest free 2 MiB blocks after balloon 624", values(ev, f, "guest_free_order9_after")),
        "accelerator tcg: MB/s compares the arms' guest-side counters, not the THP speed benefit"
        if accel == "tcg" and ev.has(t.scenario) else None,
    ])


def context_stealing(ev: Evidence) -> list[str]:
    """Why TCG figures cannot show what huge pages are worth."""
    accel = ev.accel(MECHANISMS)
    if accel == "tcg":
        return ["These runs used TCG (no KVM on this machine): TCG translates every guest access through "
                "its soft TLB of 4 KiB entries, so neither the guest's nor the host's huge pages make memory "
                "access faster. The MB/s compares the arms honestly (same work, same emulator) and the guest "
                "counters (THP faults that fell back, guest AnonHugePages) show how many huge pages the guest "
                "lost, but the speed a THP-backed guest gains under KVM is not measured here."]
    if accel:
        return [f"Accelerator: {accel}."]
    return []


# --- point 3: not migratable -------------------------------------------------------------

P3_TABLE = Table(DESIGNS, "compact", ("stock", "baseline", "rfc-v1", "fallback", "movable", "split-pbp",
                                      "compact-noretry", "compact", "contig"),
                 ("guest_balloon_migrate_delta", "guest_balloon_huge_after", "thp_regained_kib"),
                 "guest compaction (echo 1 > /proc/sys/vm/compact_memory) with the balloon inflated")


def answer_migratable(ev: Evidence) -> str:
    """Balloon pages moved by compaction per arm, and which arms moved none (not movable)."""
    t = P3_TABLE
    col = "guest_balloon_migrate_delta"
    none = [a for a in t.arms if ev.median(t.scenario, t.step, a, col) == 0
            and ev.max(t.scenario, t.step, a, col) == 0]
    return join(ev, (t,), [clause("median balloon pages migrated by guest compaction", values(ev, t, col)),
                           f"no run migrated any: {names(none)}" if values(ev, t, col) else None])


# --- points 4 and 5: own queues, host-chosen order --------------------------------------

P45_TABLE = Table(DESIGNS, "balloon 624", ("rfc-v1", "fallback", "movable"),
                  ("shrink_fraction", "thp_lost_per_ballooned_mib", "returned_fraction", "guest_balloon_huge_after"),
                  "the same inflation, the designs with their own huge-page queues")


def answer_queues(ev: Evidence) -> str:
    """fallback (which implements both points) against the RFC: reached and THP ratio."""
    t = P45_TABLE
    order = ev.device(t.scenario, "fallback").get("balloon-order")
    who = f"fallback (own queues, host-chosen order {order})" if order else "fallback"
    parts: list[Optional[str]] = []
    for arm, label in (("fallback", who), ("rfc-v1", "rfc-v1 (4 KiB queues, fixed order 9)")):
        k, n = ev.reached(t.scenario, t.step, arm)
        ratio = ev.median(t.scenario, t.step, arm, "thp_lost_per_ballooned_mib")
        ret = ev.median(t.scenario, t.step, arm, "returned_fraction")
        if n or not math.isnan(ratio):
            parts.append(f"{label} reached {k}/{n}, THP lost per ballooned MiB "
                         f"{ev.fmt('thp_lost_per_ballooned_mib', ratio)}, returned {ev.fmt('returned_fraction', ret)}")
    return join(ev, (t,), parts)


# --- point 6: balloon compaction, does the host get THP back -----------------------------

P6_RECOVERY = Table(MECHANISMS, "recovery", ("balloon", "balloon-2m", "free-page-reporting", "virtio-mem"),
                    ("qemu_ahp_after_kib", "thp_back_fraction", "thp_rise_seconds"),
                    "45 s after grow 1024, stop usemem and usemem again")
P6_COMPACT = Table(DESIGNS, "compact", ("stock", "baseline", "movable", "split-pbp"),
                   ("thp_regained_kib", "guest_balloon_migrate_delta"),
                   "host THP over the guest's compaction of balloon pages")


def answer_recovery(ev: Evidence) -> str:
    """How much host THP is back after the recovery, how fast, and what compaction did."""
    r, c = P6_RECOVERY, P6_COMPACT
    return join(ev, (r, c), [
        clause(f"host THP after recovery / after {FILL_STEP} (median)", values(ev, r, "thp_back_fraction")),
        clause("90 % of the THP rise within (s)", values(ev, r, "thp_rise_seconds")),
        clause("host THP regained during guest compaction (kB)", values(ev, c, "thp_regained_kib")),
    ])


def context_sampling(ev: Evidence) -> list[str]:
    """The time resolution behind every time figure of the mechanisms' folders."""
    notes = []
    for stem in (MECHANISMS, PHASES):
        hz = ev.sample_hz(stem)
        if ev.has(stem) and hz > 0:
            notes.append(f"{stem}: host sampled at {hz:g}/s, so times and integrals are resolved to "
                         f"{1 / hz:.2g} s.")
    return notes


# --- point 7: MST, host-side partially ballooned pages ------------------------------------

P7_TABLE = Table(DESIGNS, "balloon 624", ("baseline", "host-pbp", "split-pbp"),
                 ("returned_fraction", "rss_freed_kib", "thp_lost_per_ballooned_mib"),
                 "the host discards a 2 MiB range only once all of it is ballooned")


def answer_pbp(ev: Evidence) -> str:
    """The host-side designs' returned memory beside their THP ratio, and whether they keep
    THP by keeping the memory."""
    t = P7_TABLE
    keep = [a for a in t.arms if ev.median(t.scenario, t.step, a, "returned_fraction") < KEEPS_MEMORY]
    return join(ev, (t,), [
        clause("median returned fraction", values(ev, t, "returned_fraction")),
        clause("THP lost per ballooned MiB", values(ev, t, "thp_lost_per_ballooned_mib")),
        f"keep THP by not returning memory (returned < {KEEPS_MEMORY:g}): {names(keep)}"
        if values(ev, t, "returned_fraction") else None,
    ])


# --- point 8: what upstream chose --------------------------------------------------------

MECHANISM_ARMS = ("balloon", "balloon-2m", "free-page-reporting", "virtio-mem", "virtio-mem-kernel")
PHASE_ARMS = ("balloon", "free-page-reporting", "virtio-mem")
P8_SHRINK = Table(MECHANISMS, "shrink 624", MECHANISM_ARMS,
                  ("rss_freed_kib", "returned_fraction", "thp_lost_per_returned_mib", "settle_seconds",
                   "guest_mem_total_after_kib"),
                  "shrinking the 1024 MiB guest to 624 MiB after usemem --punch-holes 800m")
P8_FREED = Table(MECHANISMS, "stop usemem", MECHANISM_ARMS, ("rss_freed_kib", "thp_lost_per_returned_mib"),
                 "the workload ends (grown back to 1024 MiB): what the host gets back of the memory the guest "
                 "freed, unasked")
P8_UNTOUCHED = Table(PHASES, "shrink untouched", PHASE_ARMS,
                     ("moved_gib_per_s", "returned_gib_per_s", "settle_seconds", "event_seconds"),
                     "2048 -> 1024 MiB before the guest touched its memory")
P8_TOUCHED = Table(PHASES, "shrink touched", PHASE_ARMS,
                   ("moved_gib_per_s", "returned_gib_per_s", "rss_freed_kib", "settle_seconds", "event_seconds"),
                   "2048 -> 1024 MiB after usemem touched 1536 MiB and exited")
P8_IDLE = Table(PHASES, "idle", PHASE_ARMS, ("rss_freed_kib", "thp_lost_per_returned_mib"),
                "40 s idle after the demand rose again and fell: memory returned late")
P8_FOOTPRINT = Table(PHASES, WHOLE_RUN, PHASE_ARMS, ("rss_gib_min", "thp_gib_min"),
                     "footprint: per run, the sum over its steps")


def answer_upstream(ev: Evidence) -> str:
    """Memory returned and THP paid per arm (asked and unasked), speed, and footprint."""
    s, fr, u, t, i, f = P8_SHRINK, P8_FREED, P8_UNTOUCHED, P8_TOUCHED, P8_IDLE, P8_FOOTPRINT
    return join(ev, (s, fr, u, t, i, f), [
        clause("shrink 624 reached", reached(ev, s)),
        clause("RSS freed kB", values(ev, s, "rss_freed_kib")),
        clause("THP lost per returned MiB", values(ev, s, "thp_lost_per_returned_mib")),
        clause("guest MemTotal kB at that size", values(ev, s, "guest_mem_total_after_kib")),
        clause("RSS freed kB when the workload ended", values(ev, fr, "rss_freed_kib")),
        clause("returned GiB/s untouched", values(ev, u, "returned_gib_per_s")),
        clause("touched", values(ev, t, "returned_gib_per_s")),
        clause("RSS freed kB while idle", values(ev, i, "rss_freed_kib")),
        clause("footprint RSS GiB·min", values(ev, f, "rss_gib_min")),
        clause("THP GiB·min", values(ev, f, "thp_gib_min")),
    ])


POINTS: list[ReviewPoint] = [
    ReviewPoint(
        "fallback", "1. Fall back to smaller pages", DAVID,
        "You most certainly want to fallback to allocating pages in a smaller granularity once you run out of "
        "bigger allocations. Sacrifice performance for memory inflation, which has always been the case and "
        "which is what people expect to happen. (e.g., to shrink the page cache properly)",
        (P1_TABLE,), answer_fallback,
        claims=(Claim(P1_TABLE, "movable", "baseline", "thp_lost_per_ballooned_mib", "host THP lost per ballooned MiB"),
                Claim(P1_TABLE, "fallback", "baseline", "thp_lost_per_ballooned_mib",
                      "host THP lost per ballooned MiB"),
                Claim(P1_TABLE, "rfc-v1", "baseline", "shrink_fraction", "the share of the requested memory taken")),
        design="rfc-v1 has no fallback; fallback and movable fall back to order 0 when no 2 MiB block is free; "
               "compact first lets the allocator compact to the end (__GFP_RETRY_MAYFAIL), contig claims the "
               "cheapest block to empty with alloc_contig_range(), both on movable's protocol."),
    ReviewPoint(
        "stealing", "2. Stealing the guest's THPs: a performance evaluation", DAVID,
        "You are essentially stealing THPs in the guest. So the fastest mapping (THP in guest and host) is "
        "gone. The guest won't be able to make use of THP where it previously was able to. I can imagine this "
        "implies a performance degradation for some workloads. This needs a proper performance evaluation.",
        (P2_THROUGHPUT, P2_FREE), answer_stealing,
        claims=(Claim(P2_THROUGHPUT, "balloon-2m", "balloon", "guest_thp_fault_fallback_delta",
                      "guest THP faults that fell back to 4 KiB"),),
        design="balloon-2m is the RFC's 2 MiB balloon (thp-order=on) in the mechanisms scenario.",
        context=context_stealing),
    ReviewPoint(
        "migratable", "3. Balloon pages that cannot migrate", DAVID,
        "The pages you allocate are not migrateable, e.g., for memory offlining or alloc_contig_range() users "
        "like gigantic pages or soon virtio-mem. I strongly dislike that. This is IMHO a step backwards. We "
        "want to be able to migrate or even split-up and migrate such pages.",
        (P3_TABLE,), answer_migratable,
        claims=(Claim(P3_TABLE, "movable", "rfc-v1", "guest_balloon_migrate_delta",
                      "balloon pages migrated by guest compaction"),),
        design="movable splits each 2 MiB block into ordinary movable balloon pages; split-pbp allocates 2 MiB "
               "and splits it in the guest. The offline step's per-run log is in runs/<run>/steps/offline.log."),
    ReviewPoint(
        "queues-order", "4 and 5. Separate huge-page queues; the host chooses the order", DAVID,
        "I think we also want a better mechanism to directly inflate/deflate higher/order pages and not reuse "
        "the 4k inflate/deflate queues.\n\nI think we don't want to hard code such THP values but let the host "
        "tell us the THP size instead, which can easily differ between guest and host.",
        (P45_TABLE,), answer_queues,
        claims=(Claim(P45_TABLE, "fallback", "rfc-v1", "reached_fraction", "the share of runs reaching the target"),),
        design="The fallback design implements both: huge pages travel on their own inflate/deflate queues, and "
               "the order is a config field the host sets (device property balloon-order); movable uses the "
               "same protocol. rfc-v1 reuses the 4 KiB queues with a fixed order 9."),
    ReviewPoint(
        "recovery", "6. Balloon compaction: does the host get its THP back?", DAVID,
        "Also, I do wonder if balloon compaction in the guest will already result in more THP getting used "
        "again long term. Assume the guest compacts balloon pages into a single THP again. This will result in "
        "a bunch of DONTNEED/WILLNEED in the hypervisor due to inflation/deflation. I wonder if the WILLNEED on "
        "the sub-pages of a candidate THP in the host will allow to use a THP in the host again.",
        (P6_RECOVERY, P6_COMPACT), answer_recovery, context=context_sampling,
        claims=(Claim(P6_RECOVERY, "balloon-2m", "balloon", "thp_back_fraction",
                      "the host THP back after recovery"),)),
    ReviewPoint(
        "host-pbp", "7. MST: partially ballooned pages tracked by the host at THP size",
        "Michael S. Tsirkin, on the same RFC",
        "Use QEMU's PartiallyBalloonedPage machinery at THP size (host-only, guest-transparent); a fixed order "
        "9 differs between hosts and complicates migration.",
        (P7_TABLE,), answer_pbp, verbatim=False,
        claims=(Claim(P7_TABLE, "host-pbp", "baseline", "returned_fraction",
                      "the share of ballooned memory returned"),),
        design="host-pbp: QEMU discards a 2 MiB range only once all 512 of its pages are ballooned (stock "
               "guest); split-pbp: the guest allocates 2 MiB and splits it, QEMU as host-pbp."),
    ReviewPoint(
        "upstream", "8. What upstream chose: free page reporting and virtio-mem", DAVID,
        "I recently had a similar discussion with Alex [1] and I think this needs more thought.",
        (P8_SHRINK, P8_FREED, P8_UNTOUCHED, P8_TOUCHED, P8_IDLE, P8_FOOTPRINT), answer_upstream,
        design="Upstream merged none of the series; it got free page reporting (Linux 5.7, QEMU 5.1) and "
               "virtio-mem.",
        context=context_sampling,
        claims=(Claim(P8_SHRINK, "virtio-mem", "balloon", "thp_lost_per_returned_mib",
                      "host THP lost per MiB returned"),)),
]
