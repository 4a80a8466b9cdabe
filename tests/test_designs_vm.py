"""The review designs' guest drivers under stress, on real guests (slow: `make test-slow`):
inflate to near the guest's whole memory and back, twice; unload and reload the module
with a full balloon; deflate on OOM with the feature on. The guest's kernel log must show
no WARNING or BUG (the harness's own scan of dmesg). On every stack with a port of the
designs: Linux 6.1 (bookworm), 6.12 (trixie) and 7.2 (sid, after the balloon core's 2025
movable_ops rework)."""

from __future__ import annotations

import functools

import pytest

from harness.experiment.runner import console_problems
from harness.guest import Guest
from harness.vm import BalloonDevice, MachineSpec

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.build]
GUEST_MIB = 512

# module, QEMU, device properties (deflate-on-oom on: the OOM notifier must give pages back)
DESIGNS = {
    "fallback": ("fallback", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
    "movable": ("movable", "fallback", (("balloon-order", "9"), ("deflate-on-oom", "on"))),
    "split-alloc": ("split-alloc", "host-pbp", (("thp-pbp", "on"), ("deflate-on-oom", "on"))),
}


@functools.cache
def _built(stack: str):
    from harness.artifacts import build_all
    return build_all([stack])


@pytest.mark.parametrize("stack", ["bookworm", "trixie", "sid"])
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_design_driver_survives_stress(stack, design):
    artifacts = _built(stack)
    module, qemu, props = DESIGNS[design]
    spec = MachineSpec.for_image(artifacts.images[module], qemu=artifacts.qemus[qemu], memory_mib=GUEST_MIB,
                                 balloon=BalloonDevice(properties=props))
    with Guest(spec) as g:
        ssh = g.ssh
        for _ in range(2):
            low = g.balloon.move(96, settle=5, timeout=300)
            assert low.actual_mib < 200, low          # near the guest's whole memory
            back = g.balloon.move(GUEST_MIB, settle=5, timeout=300)
            assert back.reached, back
        g.balloon.move(256, settle=5, timeout=300)
        ssh.run("rmmod virtio_balloon && insmod /lib/modules/virtio_balloon.ko", timeout=120)
        ssh.run("mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; true")
        # With the balloon holding half the guest, ask for more than is free: the OOM
        # notifier deflates instead of killing the workload.
        g.balloon.move(200, settle=5, timeout=300)
        ssh.run("usemem -s 0 300m", timeout=300)
        g.balloon.move(GUEST_MIB, settle=5, timeout=300)
        dmesg = ssh.run("dmesg").stdout
    assert not console_problems(dmesg), console_problems(dmesg)
    assert "Out of memory: Killed" not in dmesg
