"""The review designs' guest drivers under stress, on real guests (slow: `make test-slow`):
inflate to near the guest's whole memory and back, twice; inflate again over memory a
workload has punched full of holes (where compact and contig compact or claim their
blocks); compact the guest with a full balloon; unload and reload the module with a full
balloon; deflate on OOM with the feature on. The guest's kernel log must show no WARNING
or BUG (the harness's own scan of dmesg). On every stack with a port of the design: Linux 6.1
(bookworm), 6.12 (trixie) and 7.2 (sid, after the balloon core's 2025 movable_ops rework)
all have all six."""

from __future__ import annotations

import functools
import re
import time

import pytest

from harness.experiment.runner import console_problems
from harness.guest import Guest
from harness.vm import BalloonDevice, MachineSpec

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.build]
GUEST_MIB = 512
# A move that stops short is over after this long without a change of `actual`. A design
# whose rounds are long (movable: up to 256 blocks before it tells the host) showed nothing
# for over 5 s on a loaded 2-core TCG host.
SETTLE = 20

# module, QEMU, device properties (deflate-on-oom on: the OOM notifier must give pages back)
DESIGNS = {
    "fallback": ("fallback", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
    "movable": ("movable", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
    "split-alloc": ("split-alloc", "host-pbp", (("thp-pbp", "on"), ("deflate-on-oom", "on"))),
    "compact-noretry": ("compact-noretry", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
    "compact": ("compact", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
    "contig": ("contig", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
}
# A workload that leaves every 2 MiB block it touched half used (holds 80 MiB).
HOLES = "usemem --punch-holes -s -1 160m"
# Designs that keep the guest above its high watermark plus one block on every path that
# takes memory (issue 32): over HOLES they may stop short of the target, since the holes stay
# in THPs on the deferred-split queue that only reclaim splits, and they never reclaim.
GUARDED = {"compact", "contig"}


def assert_stopped_at_the_guard(ssh, move) -> None:
    """A guarded design that stopped short says so (debugfs `shortfall` > 0) and left every
    zone it takes from above its low watermark. The guard stops the balloon at the high
    watermark plus one block; the guest's own allocations after that (khugepaged, the
    workload, this SSH session) may take a zone a little under its high watermark (47 pages
    on 6.12 once), but a balloon that ignored the guard would take it to the min watermark."""
    out = ssh.run("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; "
                  "cat /sys/kernel/debug/virtio_balloon/pages; cat /proc/zoneinfo").stdout
    assert move.actual_mib > move.target_mib, move
    shortfall = re.search(r"^shortfall (\d+)$", out, re.M)
    assert shortfall and int(shortfall.group(1)) > 0, out
    zones = re.findall(r"zone +(\w+)\n +pages free +(\d+)\n(?: +boost +\d+\n)? +min +\d+\n +low +(\d+)\n",
                       out)
    checked = [(name, int(free), int(low)) for name, free, low in zones if name in ("DMA32", "Normal")
               and int(low) > 0]
    assert checked, out
    for name, free, low in checked:
        assert free > low, (name, free, low, out)


def start_holes(ssh) -> None:
    """Start HOLES detached, output to a file (nothing writes to the SSH channel), and wait
    until it has punched its holes."""
    ssh.run(f"setsid sh -c '{HOLES} > /tmp/holes.log 2>&1 < /dev/null' > /dev/null 2>&1 &", timeout=30)
    deadline = time.monotonic() + 300
    while "punch holes done" not in ssh.run("cat /tmp/holes.log; true").stdout:
        assert time.monotonic() < deadline, ssh.run("cat /tmp/holes.log; true").stdout
        time.sleep(2)


@functools.cache
def _built(stack: str):
    from harness.artifacts.build import build_all
    return build_all([stack])


@pytest.mark.parametrize("stack", ["bookworm", "trixie", "sid"])
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_design_driver_survives_stress(stack, design):
    artifacts = _built(stack)
    module, qemu, props = DESIGNS[design]
    if module not in artifacts.images or qemu not in artifacts.qemus:
        pytest.skip(f"{design} has no port to the {stack} stack yet (guest-kernel-patches/, qemu-patches/)")
    spec = MachineSpec.for_image(artifacts.images[module], qemu=artifacts.qemus[qemu], memory_mib=GUEST_MIB,
                                 balloon=BalloonDevice(properties=props))
    with Guest(spec) as g:
        ssh = g.ssh
        for _ in range(2):
            low = g.balloon.move(96, settle=SETTLE, timeout=300)
            assert low.actual_mib < 200, low          # near the guest's whole memory
            back = g.balloon.move(GUEST_MIB, settle=SETTLE, timeout=300)
            assert back.reached, back
        start_holes(ssh)
        full = g.balloon.move(256, settle=SETTLE, timeout=300)
        if design in GUARDED and not full.reached:
            assert_stopped_at_the_guard(ssh, full)
        else:
            assert full.reached, full
        # compaction migrates the balloon's movable pages with the balloon full
        ssh.run("echo 1 > /proc/sys/vm/compact_memory", timeout=300)
        ssh.run("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; "
                "cat /sys/kernel/debug/virtio_balloon/pages; grep -E '^(balloon|compact)_' /proc/vmstat; true")
        ssh.run("rmmod virtio_balloon && insmod /lib/modules/virtio_balloon.ko", timeout=120)
        ssh.run("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; true")
        # the workload with holes lived through the inflation, the compaction and the reload;
        # it ends before the OOM part, which keeps the memory budget it always had
        assert ssh.run("pidof usemem", check=False).ok, ssh.run("cat /tmp/holes.log; true").stdout
        ssh.run("kill $(pidof usemem); sleep 2; true", timeout=60)
        # With the balloon holding half the guest, ask for more than is free: the OOM
        # notifier deflates instead of killing the workload.
        g.balloon.move(200, settle=SETTLE, timeout=300)
        ssh.run("usemem -s 0 300m", timeout=300)
        back = g.balloon.move(GUEST_MIB, settle=SETTLE, timeout=300)
        assert back.reached, back
        dmesg = ssh.run("dmesg").stdout
    assert not console_problems(dmesg), console_problems(dmesg)
    assert "Out of memory: Killed" not in dmesg
