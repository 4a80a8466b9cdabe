"""virtio-balloon: the guest allocates pages into a balloon and QEMU discards them.

The mechanism of the RFC and of every review design: the arm's ``device`` table holds
the balloon's properties (``thp-order``, ``balloon-order``, ``thp-pbp`` ...). The guest's
size is QEMU's ``query-balloon`` ``actual``; a 2 MiB balloon may land one block off its
target (:attr:`harness.vm.machine.Machine.balloon` picks the tolerance).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional

from harness.errors import GuestCommandError
from harness.mechanisms.base import Mechanism, OnSample
from harness.results.scenario_schema import BalloonOptions, MechanismOptions
from harness.vm.follow import MoveResult
from harness.vm.spec import BalloonDevice, MachineSpec
from harness.vm.timing import Timing

# Every virtio_balloon driver the harness runs (Debian's, the RFC port, the designs) logs
# this, rate-limited, each time an inflation round fails to allocate, then sleeps 200 ms
# and tries again: the guest's own count of "I tried and could not".
DRIVER_FAILURE = "Out of puff"


class DriverFailures:
    """The balloon driver's failed allocations, read from the guest kernel's log over SSH:
    the stall witness of a balloon move (:class:`harness.vm.follow.StallWitness`).

    The log line is rate-limited (10 per 5 s), so what is compared is the count of the
    lines and the newest one: any new line since :meth:`mark` is a failure since then."""

    COMMAND = f"dmesg | grep -F '{DRIVER_FAILURE}' | {{ n=0; l=; while read -r x; do n=$((n+1)); l=$x; done; " \
              f"echo \"$n\"; echo \"$l\"; }}"

    def __init__(self, run: Callable[[str], str]):
        self._run = run
        self._mark: Optional[tuple[str, str]] = None

    def _read(self) -> tuple[str, str]:
        """(count, newest line); an unanswered question counts as no failure (never a stall)."""
        try:
            lines = self._run(self.COMMAND).splitlines()
        except GuestCommandError:
            return ("", "")
        return (lines[0].strip() if lines else "", lines[1].strip() if len(lines) > 1 else "")

    def mark(self) -> None:
        self._mark = self._read()

    def failed_since_mark(self) -> Optional[str]:
        now = self._read()
        if self._mark is None or now == self._mark or not now[1] or not self._mark[0]:
            return None
        return f"the guest's balloon driver kept failing to allocate: {now[1]}"


class Balloon(Mechanism):
    name = "balloon"
    description = "virtio-balloon inflate/deflate (query-balloon actual, QMP balloon)"
    Options: ClassVar[type[MechanismOptions]] = BalloonOptions

    def configure(self, spec: MachineSpec) -> MachineSpec:
        return spec if spec.balloon else dataclasses.replace(spec, balloon=BalloonDevice())

    def size_mib(self) -> float:
        return self._guest().balloon.actual_mib()

    def witness(self) -> DriverFailures:
        """The guest driver's failures, over the steps' SSH connection (idle while a resize runs)."""
        guest = self._guest()
        return DriverFailures(lambda cmd: guest.ssh.run(cmd, timeout=30, check=False).stdout)

    def resize(self, target_mib: int, timing: Timing, on_sample: OnSample = None) -> MoveResult:
        return self._guest().balloon.move(target_mib, settle=timing.settle_seconds,
                                          timeout=timing.balloon_timeout_seconds,
                                          poll=1.0 / timing.host_sample_hz, on_sample=on_sample,
                                          witness=self.witness())
