"""Following a guest's memory size until it gets where it was asked to go, or stops.

Every mechanism (balloon, virtio-mem, free page reporting) is asked for something and
then watched the same way: poll a value at the host sampling rate until it is within
``tolerance`` of the target (``reached``), has not changed by more than ``quiet`` for
``settle`` seconds (``settled``), or ``timeout`` seconds have passed (``timeout``).
A mechanism that cannot get there is a result, not an error. The timestamps are the
poll's, so their resolution is the poll period (0.2 s at the default 5 samples/s).

**Stalls.** Waiting ``settle`` seconds (20 in the RFC scenario) after the last change is
the price of not knowing why a move stopped: the guest may be slow, or it may have
given up. A mechanism whose guest can say "I tried and failed" passes a
:class:`StallWitness` (the balloon: the driver's failed allocations). Then a move that
has stood still for the stall window *and* whose guest failed within that window is
settled there, as a stall, without waiting the rest of ``settle``. A still move whose
guest did not say it failed (a slow guest that has not tried yet) waits ``settle`` as
before, and a move that changes is never ended early: every change restarts the wait,
and the window grows to twice the longest pause the move has made so far, so a move
that goes in bursts (a guest freeing memory now and then) gets room for its pauses.
QEMU's own size events cannot tell a stall either: they are silent both while a
guest is slow and once it has given up (and held back up to a second), so the polled
value decides when the move last changed. The outcome stays ``settled`` and its
``seconds`` the time of the last change: only the harness's waiting gets shorter.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from harness.errors import GuestDied

# QEMU rate-limits BALLOON_CHANGE and MEMORY_DEVICE_SIZE_CHANGE to one a second, holding back
# the newest (with the timestamp of its change) until the second is over: the event of a
# move's last change arrives up to this long after the move ended.
QMP_EVENT_RATE_SECONDS = 1.0


# A move still for this long whose guest says it failed meanwhile is a stall (unless it
# paused longer before and moved again: see STALL_GAP_FACTOR). Five seconds hold 25 of
# the balloon driver's 200 ms retries and one whole printk rate-limit interval (5 s), so
# a driver still failing always logs within it.
STALL_WINDOW_SECONDS = 5.0
# The window grows to this many times the longest pause between two changes of the move.
STALL_GAP_FACTOR = 2.0
# The guest is first asked once the move has been still this long (not at every pause
# between two polls of a moving guest: asking costs an SSH round trip).
STALL_MARK_SECONDS = 1.0


class StallWitness(Protocol):
    """The guest's own account of whether it is failing to move (see the module docstring)."""

    def mark(self) -> None:
        """The move stopped: remember where the guest's failure counters stand."""

    def failed_since_mark(self) -> Optional[str]:
        """What the guest reports having failed since :meth:`mark` (None: nothing)."""


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
    stall: Optional[str] = None         # settled as a stall: the guest's own report of failing (else None)
    waited: float = math.nan            # from the request until the harness stopped following

    def as_dict(self) -> dict:
        """For run.json: the request, the polled trajectory and QEMU's own events."""
        return {"target_mib": self.target_mib, "outcome": self.outcome, "seconds": self.seconds,
                "requested_at": self.requested_at, "trajectory": self.trajectory, "events": self.events,
                "stall": self.stall, "waited": self.waited}


@dataclass(frozen=True)
class Follow:
    """How to watch: see the module docstring."""

    settle: float = 10.0
    timeout: float = 300.0
    poll: float = 0.2
    tolerance: float = 1 / 256          # |value - target| below this: reached
    quiet: float = 0.0                  # changes up to this do not count as moving


class StallWatch:
    """The stall rule of one move (module docstring): when to ask the witness, and its answer."""

    def __init__(self, witness: StallWitness, t0: float, window: float = STALL_WINDOW_SECONDS,
                 gap_factor: float = STALL_GAP_FACTOR, mark_after: float = STALL_MARK_SECONDS):
        self.witness = witness
        self.window, self.gap_factor, self.mark_after = window, gap_factor, mark_after
        self.longest_gap = 0.0
        self.marked_at: Optional[float] = None
        self.evidence: Optional[str] = None

    def changed(self, gap: float) -> None:
        """The move changed after standing still ``gap`` seconds: forget the mark."""
        self.longest_gap = max(self.longest_gap, gap)
        self.marked_at = None

    def required(self) -> float:
        """How long the move must stand still, with the guest failing, to be a stall."""
        return max(self.window, self.gap_factor * self.longest_gap)

    def stalled(self, now: float, last_change: float) -> bool:
        """Called at each poll of a still move: True once it is a stall."""
        still = now - last_change
        if still < self.mark_after:
            return False
        if self.marked_at is None:
            self.witness.mark()
            self.marked_at = now
            return False
        if now - self.marked_at < self.required() - self.mark_after:
            return False
        self.evidence = self.witness.failed_since_mark()
        if self.evidence is None:     # still, but the guest did not say it failed: ask again later
            self.witness.mark()
            self.marked_at = now
            return False
        return True


def follow(read: Callable[[], float], target: Optional[float], how: Follow, t0: float,
           alive: Callable[[], bool] = lambda: True,
           on_sample: Optional[Callable[[float, float], None]] = None,
           stall: Optional[StallWatch] = None) -> tuple[str, float, float, list]:
    """Poll ``read()`` from ``t0`` on; returns (outcome, seconds, last value, trajectory).

    Without a target only ``settled`` or ``timeout`` can happen. ``seconds`` of a settled
    move is the time of its last change (when it stopped moving), not of the poll that noticed.
    With ``stall``, a still move whose guest reports failing is settled before ``settle``
    (its ``evidence`` says why; module docstring).
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
            if stall:
                stall.changed(now - last_change)
            last_value, last_change = value, now
        if target is not None and abs(value - target) < how.tolerance:
            return "reached", now - t0, value, trajectory
        if now - last_change >= how.settle:
            return "settled", last_change - t0, value, trajectory
        if now - t0 >= how.timeout:
            return "timeout", now - t0, value, trajectory
        if stall and stall.stalled(now, last_change):
            return "settled", last_change - t0, value, trajectory
        time.sleep(how.poll)


def late_events(events: Callable[[], list[dict]], first: int, name: str,
                wait: float = QMP_EVENT_RATE_SECONDS + 0.1) -> list[dict]:
    """The ``name`` events from index ``first`` on, once QEMU has let the held-back one go."""
    time.sleep(wait)
    return [e for e in events()[first:] if e.get("event") == name]
