"""A resize that stops is settled as soon as its guest says it is failing, never a moving one
(issue 22, lever 6).

The rule (harness.vm.follow.StallWatch) first on scripted moves against the clock, with
short windows; then in real guests with the RFC's 2 MiB balloon: a balloon the guest
cannot fill (its memory is held) is declared stalled well before ``settle_seconds``, and
a balloon that the guest fills only as its workloads exit, failing in between, is
followed to its target.
"""

from __future__ import annotations

import time
from typing import Optional

import pytest

from harness.experiment.scenario import Timing
from harness.mechanisms.balloon import DRIVER_FAILURE
from harness.vm.follow import Follow, StallWatch, follow

S = 0.5            # seconds per unit of the scripted moves' time (short, but well above the poll)
WINDOW = 1.0 * S   # their stall window (the real one is STALL_WINDOW_SECONDS)
MARK = 0.1 * S


class VirtualClock:
    """harness.vm.follow's ``time`` for the scripted moves: ``sleep`` advances ``monotonic``
    at once. The rule is then judged on the script's own time line, exactly: with the real
    clock, 4 test workers on 2 cores delayed polls by more than the margins (issue 31)."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> VirtualClock:
    from harness.vm import follow as follow_module
    c = VirtualClock()
    monkeypatch.setattr(follow_module, "time", c)
    monkeypatch.setattr(time, "monotonic", c.monotonic)
    return c


class Clocked:
    """A value that follows a script of (seconds after start, value) steps, by the clock."""

    def __init__(self, steps: list[tuple[float, float]]):
        self.steps = [(at * S, v) for at, v in steps]
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        t = time.monotonic() - self.t0
        return [v for at, v in self.steps if at <= t][-1]


class Failing:
    """A witness whose guest fails (a new failure each time it is asked) or not."""

    def __init__(self, failing: bool = True):
        self.failing = failing
        self.count = 0
        self.asked = 0

    def mark(self) -> None:
        self.asked += 1
        self.count += self.failing

    def failed_since_mark(self) -> Optional[str]:
        self.asked += 1
        if not self.failing:
            return None
        self.count += 1
        return f"failure {self.count}"


def _follow(steps, target, witness, settle=6.0 * S):
    read = Clocked(steps)
    watch = StallWatch(witness, read.t0, window=WINDOW, mark_after=MARK)
    how = Follow(settle=settle, timeout=30.0, poll=0.02, tolerance=0.5)
    start = time.monotonic()
    outcome, seconds, value, _ = follow(read, target, how, read.t0, stall=watch)
    return outcome, seconds, value, time.monotonic() - start, watch


def test_a_still_move_whose_guest_fails_is_settled_after_the_window_not_settle(clock):
    outcome, seconds, value, waited, watch = _follow([(0.0, 1024), (0.2, 900)], 624, Failing())
    assert outcome == "settled" and value == 900
    assert watch.evidence and watch.evidence.startswith("failure")
    assert seconds == pytest.approx(0.2 * S, abs=0.021)            # the last change, to a poll
    assert waited == pytest.approx(0.2 * S + WINDOW, abs=0.05)      # the window after it, not settle


def test_a_still_move_whose_guest_does_not_say_it_failed_waits_settle(clock):
    outcome, seconds, _, waited, watch = _follow([(0.0, 1024), (0.2, 900)], 624, Failing(False), settle=3.0 * S)
    assert outcome == "settled" and watch.evidence is None
    assert waited == pytest.approx(0.2 * S + 3.0 * S, abs=0.05)     # settle after the last change


def test_a_slow_but_moving_resize_is_followed_to_its_target_though_its_guest_fails_between_steps(clock):
    # One MiB every 0.6 s (a pause shorter than the window), the guest failing all the time.
    steps = [(0.6 * i, 1024 - i) for i in range(7)]
    witness = Failing()
    outcome, _, value, waited, watch = _follow(steps, 1018, witness)
    assert outcome == "reached" and value == 1018 and watch.evidence is None
    assert waited > 3.5 * S and witness.asked > 0


def test_a_move_in_bursts_gets_twice_its_longest_pause(clock):
    # Pauses of 0.8 s, then one of 1.4 s: longer than the window, shorter than twice 0.8.
    steps = [(0.0, 1024), (0.1, 1000), (0.9, 990), (1.7, 980), (3.1, 970), (3.3, 624)]
    outcome, _, value, _, watch = _follow(steps, 624, Failing())
    assert outcome == "reached" and value == 624 and watch.evidence is None


def test_after_bursts_a_pause_beyond_twice_the_longest_is_a_stall(clock):
    steps = [(0.0, 1024), (0.1, 1000), (0.9, 990), (1.7, 980)]
    outcome, seconds, value, waited, watch = _follow(steps, 624, Failing())
    assert outcome == "settled" and value == 980 and watch.evidence
    assert watch.required() == pytest.approx(1.6 * S, abs=0.02) and waited > (1.7 + 1.6) * S   # to a poll


# ---- real guests ---------------------------------------------------------------------------

GUEST_MIB = 512
TIMING = Timing(settle_seconds=20.0, balloon_timeout_seconds=300.0, host_sample_hz=5.0)


def _balloon_guest(image, qemu=None, device=()):
    from harness.guest import Guest
    from harness.vm import BalloonDevice, MachineSpec
    extra = {"qemu": qemu} if qemu else {}
    return Guest(MachineSpec.for_image(image, memory_mib=GUEST_MIB, vcpus=1,
                                       balloon=BalloonDevice(properties=tuple(device)), **extra))


def _mechanism(guest):
    from harness.mechanisms import make
    mech = make("balloon", {}, GUEST_MIB)
    mech.attach(guest)
    return mech


# Compaction off for 2 MiB allocations (the fragmentation index is never above 1000): the
# guest's free 4 KiB holes stay holes, so what the 2 MiB balloon can take is decided by the
# test, and the guest keeps those holes as free memory (a balloon that eats free memory
# down to the watermark makes the guest OOM-kill its workload: seen with both balloons).
NO_COMPACTION = "echo 1000 > /proc/sys/vm/extfrag_threshold"


def _fragment_the_rest(guest, keep_mib: int = 90) -> None:
    """Touch all free memory but ``keep_mib`` and punch out every other 4 KiB page. 60 MiB of
    headroom let the guest OOM-kill the fragmenting workload once in three `make test` runs
    here (the image has grown: the step helper, the frame map helper); 90 leaves room."""
    free_mib = guest.ssh.meminfo()["MemFree"] // 1024
    guest.ssh.run(f"usemem --punch-holes -q -d -s -1 {free_mib - keep_mib}m", timeout=300)


def _free_blocks_mib(guest) -> int:
    """Free memory in blocks of 2 MiB or more (what a 2 MiB balloon can take)."""
    return sum(sum(n << max(0, order - 9) for order, n in enumerate(z.free) if order >= 9) * 2
               for z in guest.ssh.buddyinfo())


# In the slow suite: on this 2-core host the guest OOM-killed the fragmenting workload in 2
# of 8 runs (not yet understood: see _fragment_the_rest); make test keeps the scripted cases.
@pytest.mark.slow
@pytest.mark.vm
def test_a_2mib_balloon_the_guest_cannot_fill_is_declared_stalled_before_settle(artifacts):
    """The RFC's 2 MiB balloon (thp-order=on, no fallback to 4 KiB) in a guest whose free
    memory is in 4 KiB holes: it takes the few free 2 MiB blocks, then every round fails;
    the harness stops following soon after, not settle_seconds later."""
    with _balloon_guest(artifacts.images["patched"], artifacts.qemus["patched"], [("thp-order", "on")]) as guest:
        guest.ssh.run(NO_COMPACTION, timeout=30)
        _fragment_the_rest(guest)
        result = _mechanism(guest).resize(128, TIMING)
        failures = guest.ssh.run(f"dmesg | grep -c '{DRIVER_FAILURE}'", timeout=30, check=False).stdout.strip()
        oom = guest.ssh.run("dmesg | grep -c 'Out of memory'", timeout=30, check=False).stdout.strip()
    assert oom == "0", "the workload was OOM-killed: this guest did not stall, it lost its memory"
    assert result.outcome == "settled" and not result.reached
    assert result.actual_mib > 128 + 200, "the guest's holes cannot have been ballooned"
    assert result.stall and DRIVER_FAILURE in result.stall, result.as_dict()
    assert int(failures) > 0
    assert result.waited < TIMING.settle_seconds, f"waited {result.waited:.1f}s: the whole settle time"
    assert result.seconds < result.waited


@pytest.mark.slow
@pytest.mark.vm
def test_a_2mib_balloon_that_moves_only_as_workloads_exit_is_followed_to_its_target(artifacts):
    """Four workloads of 40 MiB (huge pages) exit 3 s apart in a guest whose other free
    memory is in 4 KiB holes; the 2 MiB balloon takes the blocks each exit frees and fails
    in between (the driver logs it), pausing shorter than the stall window every time: a
    slow but moving resize, which must reach its target."""
    with _balloon_guest(artifacts.images["patched"], artifacts.qemus["patched"], [("thp-order", "on")]) as guest:
        guest.ssh.run(NO_COMPACTION, timeout=30)
        for seconds in (4, 7, 10, 13):
            guest.ssh.run(f"usemem -q -d -s {seconds} 40m", timeout=300)
        _fragment_the_rest(guest)
        target = GUEST_MIB - (_free_blocks_mib(guest) + 4 * 40 - 30)   # all four must exit first
        result = _mechanism(guest).resize(target, TIMING)
        failures = guest.ssh.run(f"dmesg | grep -c '{DRIVER_FAILURE}'", timeout=30, check=False).stdout.strip()
        oom = guest.ssh.run("dmesg | grep -c 'Out of memory'", timeout=30, check=False).stdout.strip()
    assert int(failures) > 0, "the guest never failed: this move did not pause for want of blocks"
    assert oom == "0", "a workload was OOM-killed: the balloon moved by that, not by the workloads' exits"
    assert result.outcome == "reached" and result.stall is None, result.as_dict()
    plateaus = sorted({round(v) for _, v in result.trajectory})
    assert len(plateaus) >= 4, f"expected a move in steps, got {plateaus}"
