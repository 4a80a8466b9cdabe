"""Workloads the harness watches, and the run's failure when one dies or lets go of its memory.

A watched workload is a step command's cgroup with processes in it: a ``background``
step's command, or what a ``run`` step's command left running when it returned (its
detached workload: a tool that forked away, a daemon). Before and after every later
step the runner reads all their cgroups in one SSH round trip; a workload whose cgroup
is empty died, and the run fails with how its processes ended, its log tail and the
guest's OOM lines. Without this, a workload that dies or frees its memory leaves the
guest idle and every later figure describes nothing (the RFC's own line, a self-detaching
``usemem -d``, did exactly that, silently).

Memory comes from the cgroup, not the guest-wide ``AnonPages``: it is the workload's own,
whatever it forks. Its anonymous memory may not fall by more than ``anon_drop_fraction``
of its highest reading so far unless a ``stop`` step ends it: no swap in the guest, so
anonymous memory only goes when the workload frees it or dies, and the figures after
that would describe an emptier guest than the scenario says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.experiment.workload import CommandState, StepCommand
from harness.results.metrics import Reading
from harness.results.scenario_schema import DEFAULT_ANON_DROP_FRACTION

# DEFAULT_ANON_DROP_FRACTION (declared with the step keys, harness.results.scenario_schema):
# a watched workload may lose this fraction of its highest anonymous memory before the
# run fails (a `run`/`background` step's `anon_drop_fraction` overrides it; 1 disables).
# A fifth: one of a handful of equal tasks dying is caught, page-table and allocator
# noise (well under 1%) is not.
WORKLOAD_SOURCE = "workload"   # samples/reading source of the watched workloads' sums


@dataclass
class WatchedWorkload:
    """One watched cgroup, its highest anonymous memory so far, and its readings per step."""

    command: StepCommand
    anon_drop_fraction: float = DEFAULT_ANON_DROP_FRACTION
    peak_anon_kib: float = 0.0
    peak_when: str = ""
    stopped_at: Optional[str] = None     # the stop step that ended it
    readings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.command.label

    @property
    def slug(self) -> str:
        return self.command.slug

    def describe(self) -> str:
        c = self.command
        if c.kind == "background":
            return f"background workload {c.label!r} (`{c.command}`, pid {c.main_pid})"
        return f"workload {c.label!r} left running by its run step (`{c.command}`)"

    def dead(self, state: CommandState) -> bool:
        """Its processes are gone. A background command that fails while what it forked still
        runs is dead too: its own exit status says something went wrong."""
        main_failed = (self.command.kind == "background" and state.main_end is not None
                       and state.main_end.failed)
        return not state.populated or main_failed

    def death(self, state: CommandState, when: str, log_tail: str) -> str:
        """The run's failure message for a dead workload: how its processes ended, its log tail."""
        return (f"{self.describe()} is not running {when}: {state.why_ended()}\n"
                f"--- last lines of its log ({self.command.log_path}) ---\n{log_tail.rstrip()}")

    def observe(self, state: CommandState, when: str) -> Optional[str]:
        """Record the reading; the failure message when anonymous memory fell by more than
        ``anon_drop_fraction`` of its highest reading so far (None otherwise)."""
        mem = state.memory
        if mem is None:
            return None
        self.readings.append({"when": when, "current_kib": mem.current_kib, "anon_kib": mem.anon_kib,
                              "anon_thp_kib": mem.anon_thp_kib, "file_kib": mem.file_kib,
                              "pids": list(state.pids)})
        problem = None
        floor = self.peak_anon_kib * (1 - self.anon_drop_fraction)
        if self.peak_anon_kib > 0 and mem.anon_kib < floor:
            lost = 1 - mem.anon_kib / self.peak_anon_kib
            problem = (f"{self.describe()} holds {mem.anon_kib / 1024:.1f} MiB of anonymous memory {when}, "
                       f"down from {self.peak_anon_kib / 1024:.1f} MiB {self.peak_when}: it lost "
                       f"{lost:.0%}, more than the {self.anon_drop_fraction:.0%} it may lose without a "
                       f"stop step (anon_drop_fraction; its cgroup's memory.stat anon): its memory is "
                       f"gone, the figures would describe an emptier guest")
        if mem.anon_kib > self.peak_anon_kib:
            self.peak_anon_kib, self.peak_when = mem.anon_kib, when
        return problem

    def info(self) -> dict[str, Any]:
        """For run.json: what it was, where its cgroup and log were, what it held per step."""
        c = self.command
        return {"label": c.label, "kind": c.kind, "command": c.command, "pid": c.main_pid,
                "cgroup": c.cgroup, "log": c.log_path, "anon_drop_fraction": self.anon_drop_fraction,
                "peak_anon_kib": self.peak_anon_kib, "stopped_at": self.stopped_at, "readings": self.readings}


def workload_reading(workloads: list[WatchedWorkload], states: dict[str, CommandState]) -> Reading:
    """The watched workloads' memory as a reading: each one's under ``workload:<label>``, their
    sums and count under ``workload`` (the summary's ``workload_*`` columns). Only the count
    when nothing is watched, so the memory columns are NaN rather than a misleading 0."""
    r: Reading = {(WORKLOAD_SOURCE, "count"): float(len(workloads))}
    if not workloads:
        return r
    mems = [(w, states[w.slug].memory) for w in workloads if w.slug in states]
    for key in ("current_kib", "anon_kib", "anon_thp_kib", "file_kib"):
        values = [getattr(m, key) for _, m in mems if m is not None]
        r[(WORKLOAD_SOURCE, key)] = sum(values) if values else math.nan
        for w, m in mems:
            if m is not None:
                r[(f"{WORKLOAD_SOURCE}:{w.label}", key)] = getattr(m, key)
    return r
