"""Where a guest's boot goes: the host's wait split by the guest kernel's own clock.

    .venv/bin/python benchmarks/boot_time.py [--boots N] [--qemu PATH] [--source-kernel [TREE]]

Boots the default stack's stock image N times (the host's QEMU unless --qemu; TCG where
KVM does not work) and prints, per boot, from the host: QEMU start to the first SSH answer
(what runs wait, ``boot`` in run.json); from the guest's log (dmesg, by the kernel's
clock from its start): the kernel's own start-up until it runs /init, the init script's
steps (its ``bh-init:`` lines, timestamped in the kernel log), and the guest's uptime
when SSH answered. What is left of the host's figure before the kernel's clock starts is
QEMU's start, the firmware and loading the kernel and initramfs. With --source-kernel, the
minimal kernel built from a Linux tree (issue 19) boots too, interleaved with Debian's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

from harness.artifacts.build import build_all
from harness.artifacts.needs import Needs
from harness.artifacts.qemu import stock_qemu
from harness.artifacts.stacks import DEFAULT_STACK
from harness.guest import Guest
from harness.vm import MachineSpec
from harness.vm.accel import decide_accelerators

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]\s*(.*)$")
MILESTONES = {
    "kernel: init starts": "Run /init as init process",
    "bh-init: loading modules": "bh-init: loading modules",
    "bh-init: modules loaded": "bh-init: network",
    "bh-init: ready for sshd": "bh-init: ready for sshd",
    "kernel: RNG ready (sshd waits for it)": "crng init done",
}


def milestones(dmesg: str) -> dict[str, float]:
    """The kernel-clock time of the first line containing each milestone's text."""
    found: dict[str, float] = {}
    for line in dmesg.splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        for name, text in MILESTONES.items():
            if name not in found and text in m.group(2):
                found[name] = float(m.group(1))
    return found


def boot_once(spec: MachineSpec) -> dict[str, float]:
    t0 = time.monotonic()
    with Guest(spec) as guest:
        host = guest.boot_seconds or 0.0
        uptime = float(guest.ssh.run("cat /proc/uptime", timeout=60).stdout.split()[0])
        dmesg = guest.ssh.run("dmesg", timeout=60).stdout
        accel = guest.accel or "?"
    row = {"host: QEMU start to SSH": host, "guest uptime at SSH": uptime, **milestones(dmesg),
           "shutdown": time.monotonic() - t0 - host}
    row["before the kernel's clock"] = host - uptime
    print(f"  boot ({accel}): " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), file=sys.stderr)
    return row


def _table(label: str, rows: list[dict[str, float]]) -> None:
    print(f"{label + ': seconds, median of ' + str(len(rows)) + ' boots':<48}{'median':>8}{'min':>8}{'max':>8}")
    for key in rows[0]:
        values = [r[key] for r in rows if key in r]
        print(f"{key:<48}{statistics.median(values):8.2f}{min(values):8.2f}{max(values):8.2f}")


def _source_image(tree: str):
    """The minimal kernel of a Linux tree (built if this cache lacks it) in its module-less image."""
    from harness.artifacts.initramfs import build_image
    from harness.artifacts.kernel_tree import build_kernel_tree
    from harness.artifacts.trees import KernelTree
    if tree == "test":
        sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests")]
        from own_trees import linux_tree
        path = linux_tree()
    else:
        path = Path(tree)
    return build_image(build_kernel_tree(KernelTree(path)), None, "built-in")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--qemu", type=Path, default=None, help="QEMU binary (default: the host's)")
    ap.add_argument("--no-entropy", action="store_true", help="boot without virtio-rng (as before issue 22)")
    ap.add_argument("--source-kernel", metavar="TREE", nargs="?", const="test",
                    help="also boot the minimal kernel of a Linux tree (default: the tests' Debian 6.1 tree "
                         "with the RFC port, tests/own_trees.py), boots interleaved with Debian's")
    args = ap.parse_args()
    arts = build_all(needs={DEFAULT_STACK: Needs(qemus=frozenset(), modules=frozenset({"stock"}))})
    images = {"Debian cloud kernel": arts.images["stock"]}
    if args.source_kernel:
        images["minimal kernel from the tree"] = _source_image(args.source_kernel)
    specs = {label: MachineSpec.for_image(image, qemu=args.qemu or stock_qemu(), memory_mib=1024, vcpus=1,
                                          entropy=not args.no_entropy) for label, image in images.items()}
    keys = {(s.qemu, s.kernel, s.firmware_dirs) for s in specs.values()}
    accel = decide_accelerators(keys)  # not inside the first boot
    specs = {k: dataclasses.replace(s, accel=accel[(s.qemu, s.kernel, s.firmware_dirs)]) for k, s in specs.items()}
    for label, spec in specs.items():
        image = images[label]
        print(f"{label}: {spec.accel}, virtio-rng {'on' if spec.entropy else 'off'}; initrd "
              f"{image.initrd.stat().st_size / 1e6:.1f} MB, kernel {image.vmlinuz.stat().st_size / 1e6:.1f} MB")
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    rows: dict[str, list[dict[str, float]]] = {label: [] for label in specs}
    for _ in range(args.boots):   # interleaved: a change of host load falls on both alike
        for label, spec in specs.items():
            print(f"{label}:", file=sys.stderr)
            rows[label].append(boot_once(spec))
    for label, r in rows.items():
        _table(label, r)
    if len(rows) > 1:
        key = "host: QEMU start to SSH"
        print("QEMU start to SSH, median: " + ", ".join(
            f"{label} {statistics.median(x[key] for x in r):.2f} s" for label, r in rows.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
