"""Following a guest's memory size until it gets where it was asked to go, or stops.

Every mechanism (balloon, virtio-mem, free page reporting) is asked for something and
then watched the same way: poll a value at the host sampling rate until it is within
``tolerance`` of the target (``reached``), has not changed by more than ``quiet`` for
``settle`` seconds (``settled``), or ``timeout`` seconds have passed (``timeout``).
A mechanism that cannot get there is a result, not an error. The timestamps are the
poll's, so their resolution is the poll period (0.2 s at the default 5 samples/s).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from harness.errors import GuestDied

# QEMU rate-limits BALLOON_CHANGE and MEMORY_DEVICE_SIZE_CHANGE to one a second, holding back
# the newest (with the timestamp of its change) until the second is over: the event of a
# move's last change arrives up to this long after the move ended.
QMP_EVENT_RATE_SECONDS = 1.0


@dataclass
class MoveResult:
    """What one resize did. ``reached`` is None for a mechanism that has no target of its
    own (free page reporting: the guest decides what to give back)."""

    target_mib: Optional[float]
    reached: Optional[bool]
    actual_mib: float                   # the guest's memory size at the end
    seconds: float                      # from the request until reached, or until it stopped moving
    outcome: str                        # "reached", "settled" or "timeout"
    start_mib: float
    trajectory: list[tuple[float, float]] = field(default_factory=list)  # (seconds, followed value)
    events: list[dict] = field(default_factory=list)                     # QMP events seen meanwhile
    requested_at: float = math.nan      # wall clock (time.time()) of the request: QMP event timestamps' clock

    def as_dict(self) -> dict:
        """For run.json: the request, the polled trajectory and QEMU's own events."""
        return {"target_mib": self.target_mib, "outcome": self.outcome, "seconds": self.seconds,
                "requested_at": self.requested_at, "trajectory": self.trajectory, "events": self.events}


@dataclass(frozen=True)
class Follow:
    """How to watch: see the module docstring."""

    settle: float = 10.0
    timeout: float = 300.0
    poll: float = 0.2
    tolerance: float = 1 / 256          # |value - target| below this: reached
    quiet: float = 0.0                  # changes up to this do not count as moving


def follow(read: Callable[[], float], target: Optional[float], how: Follow, t0: float,
           alive: Callable[[], bool] = lambda: True,
           on_sample: Optional[Callable[[float, float], None]] = None) -> tuple[str, float, float, list]:
    """Poll ``read()`` from ``t0`` on; returns (outcome, seconds, last value, trajectory).

    Without a target only ``settled`` or ``timeout`` can happen. ``seconds`` of a settled
    move is the time of its last change (when it stopped moving), not of the poll that noticed.
    """
    first = read()
    trajectory: list[tuple[float, float]] = [(time.monotonic() - t0, first)]
    last_change, last_value, value = t0, first, first
    while True:
        if not alive():
            raise GuestDied("QEMU exited while the guest's memory was being resized")
        now = time.monotonic()
        value = read()
        trajectory.append((now - t0, value))
        if on_sample:
            on_sample(now - t0, value)
        if abs(value - last_value) > how.quiet:
            last_value, last_change = value, now
        if target is not None and abs(value - target) < how.tolerance:
            return "reached", now - t0, value, trajectory
        if now - last_change >= how.settle:
            return "settled", last_change - t0, value, trajectory
        if now - t0 >= how.timeout:
            return "timeout", now - t0, value, trajectory
        time.sleep(how.poll)


def late_events(events: Callable[[], list[dict]], first: int, name: str,
                wait: float = QMP_EVENT_RATE_SECONDS + 0.1) -> list[dict]:
    """The ``name`` events from index ``first`` on, once QEMU has let the held-back one go."""
    time.sleep(wait)
    return [e for e in events()[first:] if e.get("event") == name]
