"""The QEMU half alone, without a guest: qemu-patches/verify_thp_order.py drives the
balloon device of the patched binary through qtest (units, bad PFNs skipped without
looping, one 2 MiB discard per PFN, feature off by default, free page reporting beside)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from harness.artifacts.patches import QEMU_PATCHES


def test_patched_qemu_balloon_device_under_qtest(artifacts):
    cmd = [sys.executable, str(QEMU_PATCHES / "verify_thp_order.py"), str(artifacts.qemus["patched"])]
    if shutil.which("strace"):
        cmd.append("--strace")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ALL PASSED" in proc.stdout
    assert "FAIL " not in proc.stdout
