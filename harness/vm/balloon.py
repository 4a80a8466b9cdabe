"""Balloon control over QMP: set a target, follow ``actual`` until it gets there or stops.

``query-balloon`` is polled for the trajectory (``BALLOON_CHANGE`` events are
rate-limited by QEMU, so they are recorded but not relied on). A guest that
cannot reach its target is a result, not an error: the caller gets
``reached=False`` with the trajectory and the time it took to settle.
"""

from __future__ import annotations

import time
from typing import Callable

from harness.arch import HUGE_PAGE_KIB
from harness.errors import ConfigError
from harness.vm.follow import Follow, MoveResult, StallWatch, StallWitness, follow, late_events
from harness.vm.qmp import QMPConnection

MIB = 1 << 20
# A 4 KiB balloon lands on any whole-MiB target exactly. A THP-order balloon moves
# in 2 MiB steps, so the machine passes THP_ORDER_TOLERANCE_MIB for it.
EXACT_TOLERANCE_MIB = 1 / 256
THP_ORDER_TOLERANCE_MIB = HUGE_PAGE_KIB / 1024


# A balloon's move is a MoveResult like every mechanism's (harness.vm.follow).


class Balloon:
    """The balloon of one guest with ``guest_mib`` of RAM."""

    def __init__(self, qmp: QMPConnection, guest_mib: int, alive: Callable[[], bool] = lambda: True,
                 tolerance_mib: float = EXACT_TOLERANCE_MIB):
        self.qmp = qmp
        self.guest_mib = guest_mib
        self.tolerance_mib = tolerance_mib
        self._alive = alive

    def actual_bytes(self) -> int:
        """Guest memory as QEMU sees it: RAM minus the balloon (``query-balloon``)."""
        return int(self.qmp.execute("query-balloon")["actual"])

    def actual_mib(self) -> float:
        return self.actual_bytes() / MIB

    def validate_target(self, target_mib: int) -> None:
        if not isinstance(target_mib, int) or isinstance(target_mib, bool):
            raise ConfigError(f"balloon target must be a whole number of MiB, got {target_mib!r}")
        if target_mib <= 0:
            raise ConfigError(f"balloon target {target_mib} MiB refused: must be above 0")
        if target_mib > self.guest_mib:
            raise ConfigError(f"balloon target {target_mib} MiB refused: the guest has only "
                              f"{self.guest_mib} MiB of RAM")

    def set_target(self, target_mib: int) -> None:
        """Ask for guest memory of ``target_mib`` (validated first, nothing sent if impossible)."""
        self.validate_target(target_mib)
        self.qmp.execute("balloon", {"value": target_mib * MIB})

    def move(self, target_mib: int, settle: float = 10.0, timeout: float = 300.0, poll: float = 0.2,
             on_sample: Callable[[float, float], None] | None = None,
             witness: StallWitness | None = None) -> MoveResult:
        """Set the target and wait; see :meth:`wait`."""
        first_event = len(self.qmp.events())
        start_mib = self.actual_mib()
        t0, requested_at = time.monotonic(), time.time()
        self.set_target(target_mib)
        result = self.wait(target_mib, t0, start_mib, settle, timeout, poll, on_sample, first_event, witness)
        result.requested_at = requested_at
        return result

    def wait(self, target_mib: int, t0: float, start_mib: float, settle: float, timeout: float,
             poll: float, on_sample: Callable[[float, float], None] | None = None,
             first_event: int = 0, witness: StallWitness | None = None) -> MoveResult:
        """Poll ``actual`` until within tolerance of the target, unchanged for ``settle``
        seconds, or ``timeout`` seconds passed since ``t0`` (:func:`harness.vm.follow.follow`);
        with a ``witness`` (the guest driver's failures), a still move whose guest keeps
        failing is settled as a stall before ``settle``."""
        how = Follow(settle=settle, timeout=timeout, poll=poll, tolerance=self.tolerance_mib)
        watch = StallWatch(witness, t0) if witness else None
        outcome, seconds, actual, trajectory = follow(self.actual_mib, target_mib, how, t0, self._alive, on_sample,
                                                      watch)
        waited = time.monotonic() - t0
        events = late_events(self.qmp.events, first_event, "BALLOON_CHANGE")
        return MoveResult(target_mib, outcome == "reached", actual, seconds, outcome, start_mib,
                          [(0.0, start_mib), *trajectory], events,
                          stall=watch.evidence if watch and outcome == "settled" else None, waited=waited)
