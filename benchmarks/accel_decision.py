"""What the accelerator decision costs, and the figure its time limit is sized from.

Prints (asserts nothing):
- the probe boot (guest kernel to its panic, no root fs) under TCG: the slowest a
  working accelerator could plausibly be; the KVM probe's limit must sit above it;
- the whole decision for every QEMU binary of the build (stock and patched) with no
  cached verdict, as a first run on a fresh host pays it.

    .venv/bin/python benchmarks/accel_decision.py
"""

from __future__ import annotations

import os
import tempfile
import time

from harness.arch import DEBIAN_FIRMWARE_DIRS
from harness.artifacts.build import build_all
from harness.vm import accel


def main() -> None:
    arts = build_all()
    kernel = arts.kernel.vmlinuz
    for name, qemu in arts.qemus.items():
        t0 = time.monotonic()
        v = accel.probe_kvm(qemu, kernel, DEBIAN_FIRMWARE_DIRS, timeout=60, accel="tcg")
        print(f"probe boot under TCG, {name} QEMU: {time.monotonic() - t0:.1f} s ({v.reason})")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BALLOON_HARNESS_CACHE"] = tmp  # no remembered verdict: the first-run cost
        accel._memo.clear()
        keys = {(q, kernel, DEBIAN_FIRMWARE_DIRS) for q in arts.qemus.values()}
        t0 = time.monotonic()
        decided = accel.decide_accelerators(keys)
        seconds = time.monotonic() - t0
    print(f"accelerator decision for {len(keys)} QEMU binaries (probe limit {accel.PROBE_TIMEOUT:.0f} s): "
          f"{seconds:.1f} s -> {sorted(set(decided.values()))}")


if __name__ == "__main__":
    main()
