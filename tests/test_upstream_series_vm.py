"""The upstream series (guest-kernel-patches/upstream/, qemu-patches/upstream/) under the
designs' stress test (tests/test_designs_vm.py), on its own trees (slow: `make test-slow`).

Issue 32 asks that the series "passes the stress tests". Its kernel and QEMU are those
scenarios/upstream-series.toml builds: the scenario is loaded and its trees (``kernel = {
source = "../../linux-upstream", ref = "upstream" }``, ``qemu = { source =
"../../qemu-upstream" }``, stack sid) go through the runner's own path, ``build_all`` with
the scenario's needs (a lookup when the cache has built them; the first time, tens of
minutes of compile). The trees live beside the checkout; without them the test skips,
naming the command that makes them.

The stress, as the designs' test does it, in a 512 MiB guest with deflate-on-oom on: inflate
to near the guest's whole memory and back, twice; inflate over memory a workload punched full
of holes; compact_memory with the balloon full; deflate on OOM. The driver is built into
the series' kernel, so the designs' module unload and reload becomes an unbind and bind of
the virtio device through sysfs (the driver core's ``unbind``/``bind`` files: the driver does
not suppress them): unbind must give every page back (``remove_common()`` deflates the
whole balloon, blocks included), bind must inflate again to the same target. The guest's
kernel log must show no WARNING or BUG (the harness's own scan) and no OOM kill.

Two cases: ``block-order=9`` (blocks, then the stock 4 KiB path for the rest: it must reach
every target) and ``blocks-only=on`` (no 4 KiB tail: where the guard refuses, the balloon
stops short of a target by design, which must show as ``shortfalls`` in the driver's debugfs
with every zone it takes from left above its low watermark, as the guarded designs' test
accepts). The counters come from ``/sys/kernel/debug/virtio_balloon/<device>/pages``.

The harness's minimal kernel configuration has no DEBUG_VM or lockdep: with
``UPSTREAM_SERIES_CONFIG=scenarios/upstream-series/debug.config`` the same test runs on the
series' kernel built with them too (one more build, about 6 min here).
"""

from __future__ import annotations

import functools
import os
import re
import time
import warnings
from pathlib import Path

import pytest
from test_designs_vm import GUEST_MIB, HOLES, SETTLE, start_holes

from harness.experiment.runner import console_problems

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.build]

CHECKOUT = Path(__file__).resolve().parents[1]
SCENARIO = CHECKOUT / "scenarios" / "upstream-series.toml"
# Where the scenario's ../../linux-upstream and ../../qemu-upstream (relative to scenarios/) are.
TREES = (CHECKOUT.parent / "linux-upstream", CHECKOUT.parent / "qemu-upstream")
MAKE_TREES = "make them with `make upstream-trees` (balloon-harness upstream-trees)"
# A kernel configuration fragment added after the scenario's (none), e.g. the kernel's own checks:
# UPSTREAM_SERIES_CONFIG=scenarios/upstream-series/debug.config (DEBUG_VM, lockdep; built once).
_EXTRA = os.environ.get("UPSTREAM_SERIES_CONFIG")
EXTRA_CONFIG = Path(_EXTRA).resolve() if _EXTRA else None

CASES = {
    "blocks": (("block-order", "9"), ("deflate-on-oom", "on")),
    "blocks-only": (("block-order", "9"), ("blocks-only", "on"), ("deflate-on-oom", "on")),
}
# Cases whose balloon may stop short of a target at the guard (no 4 KiB tail to fill it).
STOPS_AT_GUARD = {"blocks-only"}
DRIVER = "/sys/bus/virtio/drivers/virtio_balloon"
PAGES = "/sys/kernel/debug/virtio_balloon/*/pages"
READ_PAGES = f"mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; cat {PAGES}"
ZONE = re.compile(r"zone +(\w+)\n +pages free +(\d+)\n(?: +boost +\d+\n)? +min +\d+\n +low +(\d+)\n")


def missing_trees() -> list[Path]:
    return [t for t in TREES if not t.is_dir()]


@functools.cache
def series_artifacts():
    """The series' guest image (its kernel, the driver built in) and QEMU binary, resolved as
    the runner resolves the scenario's arms (harness.cli.runs, harness.experiment.plan)."""
    from harness.artifacts.build import build_all
    from harness.artifacts.needs import needs_of
    from harness.experiment.scenario import load_scenario

    scenario = load_scenario(SCENARIO)
    arm = next(a for a in scenario.arms if a.kernel_tree is not None and a.qemu_tree is not None)
    if EXTRA_CONFIG:   # the scenario's kernel with one more fragment after its own (a build of its own)
        tree = arm.kernel_tree.model_copy(update={"config": (*arm.kernel_tree.config, EXTRA_CONFIG)})
        arm = arm.model_copy(update={"kernel_tree": tree})
    arts = build_all(scenario.stacks, needs=needs_of([arm]))
    built = arts.for_stack(arm.stack)
    return built.tree_kernels[arm.kernel_tree], built.tree_qemus[arm.qemu_tree]


def counters(text: str) -> dict[str, int]:
    """The driver's debugfs ``pages`` file as name -> value."""
    return {k: int(v) for k, v in re.findall(r"^(\w+) (\d+)$", text, re.M)}


def assert_stopped_at_the_guard(ssh, move) -> None:
    """A blocks-only balloon that stopped short says so (``shortfalls`` > 0: the rounds that
    stopped short) and left every zone it takes from above its low watermark (the guard
    stops at the high watermark plus one block; the guest's own allocations after it may dip
    a little under the high one, a balloon that ignored it would reach the min watermark)."""
    out = ssh.run(f"{READ_PAGES}; cat /proc/zoneinfo").stdout
    assert move.actual_mib > move.target_mib, move
    assert counters(out).get("shortfalls", 0) > 0, out
    checked = [(name, int(free), int(low)) for name, free, low in ZONE.findall(out)
               if name in ("DMA32", "Normal") and int(low) > 0]
    assert checked, out
    for name, free, low in checked:
        assert free > low, (name, free, low, out)


def assert_reached(case: str, ssh, move) -> None:
    if case in STOPS_AT_GUARD and not move.reached:
        assert_stopped_at_the_guard(ssh, move)
    else:
        assert move.reached, move


def wait_actual(balloon, mib: float, timeout: float = 60) -> float:
    """``actual`` once it is within a MiB of ``mib`` (or what it is after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    actual = balloon.actual_mib()
    while abs(actual - mib) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        actual = balloon.actual_mib()
    return actual


def unbind_and_bind(case: str, g, target_mib: int) -> None:
    """The built-in driver's unload and reload: unbind the balloon's virtio device (the
    balloon, full, must give back every page) and bind it again (it must inflate again)."""
    ssh = g.ssh
    if not ssh.run(f"test -w {DRIVER}/unbind && test -w {DRIVER}/bind", check=False).ok:
        warnings.warn(f"the series' kernel has no {DRIVER}/unbind and bind (the driver suppresses its bind "
                      f"files): the unload/reload step is left out", stacklevel=2)
        return
    device = ssh.run(f"cd {DRIVER} && ls -d virtio*").stdout.split()
    assert len(device) == 1, device
    ssh.run(f"echo -n {device[0]} > {DRIVER}/unbind", timeout=300)
    empty = wait_actual(g.balloon, GUEST_MIB)
    assert abs(empty - GUEST_MIB) <= 1, f"after unbind the balloon still holds {GUEST_MIB - empty:.1f} MiB"
    assert not ssh.run(f"test -e {DRIVER}/{device[0]}", check=False).ok
    ssh.run(f"echo -n {device[0]} > {DRIVER}/bind", timeout=120)
    again = g.balloon.move(target_mib, settle=SETTLE, timeout=300)
    pages = ssh.run(READ_PAGES).stdout
    print(f"{case}: unbind gave back the balloon (actual {empty:.0f} MiB), bind inflated again to "
          f"{again.actual_mib:.0f} MiB: {pages.split()}")
    assert_reached(case, ssh, again)
    assert counters(pages)["huge"] > 0, pages         # the bound driver negotiated blocks again


@pytest.mark.parametrize("case", sorted(CASES))
def test_upstream_series_survives_stress(case, tmp_path):
    absent = missing_trees()
    if absent:
        pytest.skip(f"{' and '.join(str(t) for t in absent)} absent (the upstream series' trees, beside the "
                    f"checkout): {MAKE_TREES}")
    from harness.guest import Guest
    from harness.vm import BalloonDevice, MachineSpec

    image, qemu = series_artifacts()
    spec = MachineSpec.for_image(image, qemu=qemu, memory_mib=GUEST_MIB,
                                 balloon=BalloonDevice(properties=CASES[case]))
    start = time.monotonic()
    with Guest(spec) as g:
        ssh = g.ssh
        order = counters(ssh.run(READ_PAGES).stdout).get("order")
        assert order == 9, f"the driver did not take block-order=9: {ssh.run(READ_PAGES).stdout}"
        for _ in range(2):
            low = g.balloon.move(96, settle=SETTLE, timeout=300)
            pages = ssh.run(READ_PAGES).stdout
            print(f"{case}: inflated to {low.actual_mib:.0f} MiB: {pages.split()}")
            assert low.actual_mib < 200, low          # near the guest's whole memory
            assert counters(pages)["huge"] > 0, pages  # in whole blocks, not only the 4 KiB path
            back = g.balloon.move(GUEST_MIB, settle=SETTLE, timeout=300)
            assert back.reached, back
        start_holes(ssh)                               # HOLES: every 2 MiB block it touched half used
        full = g.balloon.move(256, settle=SETTLE, timeout=300)
        print(f"{case}: over `{HOLES}`: {full.actual_mib:.0f} MiB: {ssh.run(READ_PAGES).stdout.split()}")
        assert_reached(case, ssh, full)
        # compaction with the balloon full: MIGRATE_SYNC, which 0007 does not refuse
        ssh.run("echo 1 > /proc/sys/vm/compact_memory", timeout=300)
        print(f"{case}: after compact_memory: {ssh.run(READ_PAGES).stdout.split()} "
              f"{ssh.run('grep -E ^balloon_ /proc/vmstat; true').stdout.split()}")
        unbind_and_bind(case, g, 256)
        # the workload with holes lived through the inflation, the compaction and the rebind;
        # it ends before the OOM part, which keeps the memory budget it always had
        assert ssh.run("pidof usemem", check=False).ok, ssh.run("cat /tmp/holes.log; true").stdout
        ssh.run("kill $(pidof usemem); sleep 2; true", timeout=60)
        # With the balloon holding half the guest, ask for more than is free: the OOM
        # notifier deflates instead of killing the workload.
        half = g.balloon.move(200, settle=SETTLE, timeout=300)
        ssh.run("usemem -s 0 300m", timeout=300)
        after = g.balloon.actual_mib()
        print(f"{case}: balloon at {half.actual_mib:.0f} MiB, `usemem -s 0 300m` ran, then {after:.0f} MiB")
        assert after > half.actual_mib, (half, after)   # the OOM notifier gave pages back
        back = g.balloon.move(GUEST_MIB, settle=SETTLE, timeout=300)
        assert back.reached, back
        dmesg = ssh.run("dmesg").stdout
    (tmp_path / "dmesg.txt").write_text(dmesg)
    print(f"{case}: {time.monotonic() - start:.0f} s from boot to power-off; the guest's kernel log in "
          f"{tmp_path / 'dmesg.txt'}, its balloon and OOM lines:")
    print("\n".join(line for line in dmesg.splitlines() if re.search(r"balloon|oom|out of memory", line, re.I)))
    assert not console_problems(dmesg), console_problems(dmesg)
    assert "Out of memory: Killed" not in dmesg
