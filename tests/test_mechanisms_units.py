"""Mechanisms without a VM: the registry, option checks, the QEMU command line each one
builds, virtio-mem's resize over a fake QMP, and the scenario keys that name them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from command_lines import argv, spec

from harness.errors import ConfigError
from harness.experiment.scenario import Timing, load_scenario
from harness.experiment.workload import usemem_throughput_mb_s
from harness.mechanisms import make, registry
from harness.mechanisms.base import Mechanism
from harness.vm.follow import Follow, follow
from harness.vm.spec import BalloonDevice

MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]

# Their fake QMPs have no events: the moves skip the wait for QEMU's held-back last one.
pytestmark = pytest.mark.usefixtures("no_event_wait")


def test_every_module_of_the_package_is_registered():
    assert set(registry()) == {"balloon", "free-page-reporting", "virtio-mem"}
    assert all(issubclass(c, Mechanism) and c.description for c in registry().values())


def test_unknown_mechanism_and_options_are_refused_with_their_key():
    with pytest.raises(ConfigError, match="does not exist.*balloon"):
        make("virtio-pmem", {}, 1024)
    with pytest.raises(ConfigError, match=r"arms\[0\].options.boot: unknown option.*boot_mib"):
        make("virtio-mem", {"boot": 512}, 1024, "arms[0].options")
    with pytest.raises(ConfigError, match="boot_mib: between 128"):
        make("virtio-mem", {"boot_mib": 1024}, 1024)
    with pytest.raises(ConfigError, match="block_mib: a power of two"):
        make("virtio-mem", {"boot_mib": 512, "block_mib": 3}, 1024)
    with pytest.raises(ConfigError, match="order: must be int"):
        make("free-page-reporting", {"order": "9"}, 1024)
    with pytest.raises(ConfigError, match="order: a page order"):
        make("free-page-reporting", {"order": 11}, 1024)


def test_free_page_reporting_turns_the_property_on_and_keeps_the_others():
    s = make("free-page-reporting", {}, 1024).configure(
        spec(balloon=BalloonDevice(properties=(("deflate-on-oom", "on"),))))
    assert s.balloon is not None
    assert s.balloon.arg() == "virtio-balloon-pci,id=balloon0,deflate-on-oom=on,free-page-reporting=on"


def test_virtio_mem_machine_boots_small_with_a_plugged_device_and_no_balloon():
    s = make("virtio-mem", {"boot_mib": 512}, 1536).configure(spec(memory_mib=1536))
    args = argv(s)
    assert args[args.index("-m") + 1] == "512M,maxmem=1536M"
    assert s.balloon is None and not any(a.startswith("virtio-balloon") for a in args)
    assert "memory-backend-ram,id=vmem0-mem,size=1024M" in args
    assert "virtio-mem-pci,id=vmem0,memdev=vmem0-mem,requested-size=1024M" in args
    assert "memhp_default_state=online_movable" in args[args.index("-append") + 1]
    assert "swiotlb" not in args[args.index("-append") + 1]      # the kernel's own choice by default


def test_virtio_mem_swiotlb_off_is_on_the_guest_command_line():
    s = make("virtio-mem", {"boot_mib": 512, "swiotlb": "off"}, 1024).configure(spec(memory_mib=1024))
    args = argv(s)
    assert "swiotlb=noforce" in args[args.index("-append") + 1].split()
    with pytest.raises(ConfigError, match="swiotlb: must be one of kernel, off"):
        make("virtio-mem", {"swiotlb": "no"}, 1024)


def test_balloon_machine_line_is_unchanged_by_the_mechanism():
    s = make("balloon", {}, 1024).configure(spec(balloon=BalloonDevice(properties=(("thp-order", "on"),))))
    args = argv(s)
    assert args[args.index("-m") + 1] == "1024M"
    assert "virtio-balloon-pci,id=balloon0,thp-order=on" in args


class FakeVirtioMemQMP:
    """A virtio-mem device whose plugged size walks towards requested-size in 64 MiB steps,
    stopping at ``floor_mib`` (blocks the guest cannot empty)."""

    def __init__(self, size_mib: int, floor_mib: int = 0):
        self.size, self.requested, self.floor = size_mib, size_mib, floor_mib
        self.sent: list[tuple[str, object]] = []

    def execute(self, command, arguments=None, timeout=30.0):
        self.sent.append((command, arguments))
        if command == "qom-set":
            self.requested = arguments["value"] // MIB
            return {}
        if command == "qom-get":
            step = max(-64, min(64, self.requested - self.size))
            self.size = max(self.floor, self.size + step) if step < 0 else self.size + step
            return self.size * MIB
        raise AssertionError(command)

    def events(self, name=None):
        return []


class FakeGuest:
    def __init__(self, qmp):
        self.qmp = qmp
        self.pid = 1

    def is_running(self):
        return True


# faster than a scenario file may ask (settle_seconds >= 0.5): built without the schema's bounds
TIMING = Timing.model_construct(settle_seconds=0.3, balloon_timeout_seconds=10.0, host_sample_hz=50.0)


def test_virtio_mem_resize_asks_for_the_device_size_and_follows_it():
    m = make("virtio-mem", {"boot_mib": 512}, 1024)
    qmp = FakeVirtioMemQMP(512)
    m.guest = FakeGuest(qmp)  # type: ignore[assignment]
    result = m.resize(624, TIMING)
    assert ("qom-set", {"path": "/machine/peripheral/vmem0", "property": "requested-size", "value": 112 * MIB}) \
        in qmp.sent
    assert result.reached and result.outcome == "reached" and result.actual_mib == 624
    assert result.start_mib == 1024 and result.trajectory[-1][1] == 624


def test_virtio_mem_unplug_that_gets_stuck_is_settled_not_an_error():
    m = make("virtio-mem", {"boot_mib": 512}, 1024)
    m.guest = FakeGuest(FakeVirtioMemQMP(512, floor_mib=300))  # type: ignore[assignment]
    result = m.resize(624, TIMING)
    assert not result.reached and result.outcome == "settled" and result.actual_mib == 812


def test_virtio_mem_target_outside_the_device_is_refused():
    m = make("virtio-mem", {"boot_mib": 512}, 1024)
    m.guest = FakeGuest(FakeVirtioMemQMP(512))  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="outside what the device can give: 512"):
        m.resize(400, TIMING)


def test_follow_without_target_settles_once_quiet_and_reports_when_it_stopped():
    values = iter([900, 800, 700, 701, 700, 701] + [700] * 100)
    t0 = time.monotonic()
    outcome, seconds, last, trajectory = follow(lambda: next(values), None,
                                                Follow(settle=0.2, timeout=5, poll=0.02, quiet=2), t0)
    assert outcome == "settled" and last in (700, 701)
    # trajectory[0] is the first read (900); the last change above `quiet` is 800 -> 700
    assert seconds == pytest.approx(trajectory[2][0], abs=1e-6)


def test_usemem_throughput_sums_tasks_and_skips_read_again():
    out = ("20971520 bytes / 100000 usecs = 204800 KB/s\n20971520 bytes / 200000 usecs = 102400 KB/s\n"
           "read again 20971520 bytes / 50000 usecs = 409600 KB/s\n")
    assert usemem_throughput_mb_s(out) == pytest.approx(307.2)
    with pytest.raises(ValueError, match="no usemem throughput line"):
        usemem_throughput_mb_s("punch holes done\n")


SCENARIO = """
name = "t"
[vm]
memory_mib = 1024
[[steps]]
kind = "background"
label = "wl"
command = "usemem -s -1 100m"
[[steps]]
kind = "resize"
target_mib = 624
[[steps]]
kind = "stop"
workload = "wl"
[[arms]]
name = "vm"
qemu = "stock"
module = "stock"
mechanism = "virtio-mem"
options = { boot_mib = 512 }
"""


def test_scenario_keys_for_mechanisms_and_stop_steps(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(SCENARIO)
    s = load_scenario(p)
    assert s.arms[0].mechanism == "virtio-mem" and dict(s.arms[0].options) == {"boot_mib": 512}
    assert [st.kind for st in s.steps] == ["background", "resize", "stop"]
    assert s.steps[1].label == "2:resize 624" and s.steps[2].workload == "wl"
    for old, new, where in [
        ('mechanism = "virtio-mem"', 'mechanism = "virtio-pmem"', "arms[0].mechanism"),
        ("boot_mib = 512", "boot_mib = 2048", "boot_mib"),
        ('workload = "wl"', 'workload = "other"', "steps[2].workload"),
    ]:
        p.write_text(SCENARIO.replace(old, new))
        with pytest.raises(ConfigError, match=rf"{p}.*{where.replace('[', '.').replace(']', '.')}"):
            load_scenario(p)


@pytest.mark.parametrize("name", ["mechanisms.toml", "mechanisms-phases.toml"])
def test_shipped_mechanism_scenarios_load(name):
    s = load_scenario(REPO / "scenarios" / name)
    assert {"balloon", "free-page-reporting", "virtio-mem"} <= {a.mechanism for a in s.arms}


def test_late_events_waits_out_the_rate_limit():
    """QEMU sends a rate-limited event (BALLOON_CHANGE, MEMORY_DEVICE_SIZE_CHANGE) at most once a
    second and holds the last one back: what arrives during the wait is collected, from the
    move's first event on, of the move's kind only."""
    import threading

    from harness.vm.follow import QMP_EVENT_RATE_SECONDS, late_events
    seen = [{"event": "BALLOON_CHANGE", "data": {"actual": 1}}]        # before the move
    late = {"event": "BALLOON_CHANGE", "data": {"actual": 2}}
    threading.Timer(QMP_EVENT_RATE_SECONDS - 0.2, seen.extend,
                    ([{"event": "STOP"}, late],)).start()              # QEMU lets the held one go
    t = time.monotonic()
    assert late_events(lambda: list(seen), 1, "BALLOON_CHANGE") == [late]
    assert time.monotonic() - t >= QMP_EVENT_RATE_SECONDS
