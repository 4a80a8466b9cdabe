"""The QEMU half alone, without a guest: qemu-patches/verify_thp_order.py drives the
balloon device of the patched binary through qtest (units, bad PFNs skipped without
looping, one 2 MiB discard per PFN, feature off by default, free page reporting beside)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from harness.artifacts.patches import QEMU_PATCHES


def test_patched_qemu_balloon_device_under_qtest(artifacts):
    cmd = [sys.executable, str(QEMU_PATCHES / "verify_thp_order.py"), str(artifacts.qemus["patched"])]
    if shutil.which("strace"):
        cmd.append("--strace")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ALL PASSED" in proc.stdout
    assert "FAIL " not in proc.stdout


@pytest.mark.parametrize("design, script", [("fallback", "verify_fallback.py"), ("host-pbp", "verify_host_pbp.py")])
def test_design_qemu_halves_under_qtest(artifacts, design, script):
    """Each design's QEMU half, guest-less: huge and ordinary queues, bad PFNs, partial and
    complete 2 MiB ranges, deflate of a discarded range (see qemu-patches/designs/README.md)."""
    cmd = [sys.executable, str(QEMU_PATCHES / "designs" / design / script), str(artifacts.qemus[design])]
    if shutil.which("strace"):
        cmd.append("--strace")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ALL PASSED" in proc.stdout and "FAIL " not in proc.stdout
