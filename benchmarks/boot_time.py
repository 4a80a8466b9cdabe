"""Where a guest's boot goes: the host's wait split by the guest kernel's own clock.

    .venv/bin/python benchmarks/boot_time.py [--boots N] [--qemu PATH]

Boots the default stack's stock image N times (the host's QEMU unless --qemu; TCG where
KVM does not work) and prints, per boot, from the host: QEMU start to the first SSH answer
(what runs wait, ``boot`` in run.json); from the guest's log (dmesg, by the kernel's
clock from its start): the kernel's own start-up until it runs /init, the init script's
steps (its ``bh-init:`` lines, timestamped in the kernel log), and the guest's uptime
when SSH answered. What is left of the host's figure before the kernel's clock starts is
QEMU's start, the firmware and loading the kernel and initramfs.
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

from harness.artifacts import build_all
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--qemu", type=Path, default=None, help="QEMU binary (default: the host's)")
    ap.add_argument("--no-entropy", action="store_true", help="boot without virtio-rng (as before issue 22)")
    args = ap.parse_args()
    arts = build_all(needs={DEFAULT_STACK: Needs(qemus=frozenset(), modules=frozenset({"stock"}))})
    image = arts.images["stock"]
    spec = MachineSpec.for_image(image, qemu=args.qemu or stock_qemu(), memory_mib=1024, vcpus=1,
                                 entropy=not args.no_entropy)
    accel = decide_accelerators({(spec.qemu, spec.kernel, spec.firmware_dirs)})  # not inside the first boot
    spec = dataclasses.replace(spec, accel=accel[(spec.qemu, spec.kernel, spec.firmware_dirs)])
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{spec.accel}, virtio-rng {'on' if spec.entropy else 'off'}; "
          f"initrd {image.initrd.stat().st_size / 1e6:.1f} MB, kernel {image.vmlinuz.stat().st_size / 1e6:.1f} MB")
    rows = [boot_once(spec) for _ in range(args.boots)]
    print(f"{'seconds, median of ' + str(len(rows)) + ' boots':<40}{'median':>8}{'min':>8}{'max':>8}")
    for key in rows[0]:
        values = [r[key] for r in rows if key in r]
        print(f"{key:<40}{statistics.median(values):8.2f}{min(values):8.2f}{max(values):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
