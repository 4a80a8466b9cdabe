"""Failure paths of the VM lifecycle: each must say why and leave nothing behind."""

from __future__ import annotations

import pytest
from conftest import pid_alive, qemu_pids

from harness.errors import BootTimeout, GuestDied, QEMUStartError
from harness.guest import Guest
from harness.vm import MachineSpec

pytestmark = pytest.mark.vm


def test_bad_qemu_option_reports_stderr(stock_image):
    # only this test's QEMU (its option is on its command line): other guests on the host come and go
    before = qemu_pids("-no-such-option-xyz")
    spec = MachineSpec.for_image(stock_image, extra_args=("-no-such-option-xyz",))
    with pytest.raises(QEMUStartError) as info:
        with Guest(spec):
            pass
    assert "no-such-option-xyz" in str(info.value)
    assert "no-such-option-xyz" in info.value.stderr
    assert qemu_pids("-no-such-option-xyz") <= before


def test_guest_never_answering_ssh_times_out_with_console(stock_image):
    # A shell as the initramfs init: the guest lives but never starts sshd.
    spec = MachineSpec.for_image(stock_image, append="rdinit=/bin/sh", boot_timeout=20)
    with pytest.raises(BootTimeout) as info:
        with Guest(spec):
            pass
    assert "built-in shell" in info.value.console_tail
    assert "guest console" in str(info.value)


def test_guest_that_dies_is_reported_with_console(stock_image):
    # init exits at once: the kernel panics, panic=-1 -no-reboot makes QEMU exit.
    spec = MachineSpec.for_image(stock_image, append="rdinit=/bin/false", boot_timeout=120)
    with pytest.raises(GuestDied) as info:
        with Guest(spec):
            pass
    assert "Kernel panic" in info.value.console_tail


def test_exception_inside_with_leaves_nothing(stock_image):
    spec = MachineSpec.for_image(stock_image)
    with pytest.raises(RuntimeError, match="boom"):
        with Guest(spec) as m:
            pid, run_dir = m.pid, m.run_dir
            assert pid_alive(pid) and run_dir.is_dir()
            assert m.ssh.run("echo alive").stdout.strip() == "alive"
            raise RuntimeError("boom")
    assert not pid_alive(pid)
    assert pid not in qemu_pids()
    assert not run_dir.exists()


# A program embedding the library installs the process-wide hooks itself (the library
# never does): SIGTERM then unwinds through `with Guest` like Ctrl-C.
SIGNAL_SCRIPT = r"""
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks if it hangs
# Ctrl-C as at a terminal: a test run started in the background (`.ci/run &`) hands its
# children SIGINT ignored, and Python then never raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
from harness.artifacts.build import build_all
from harness.cli import install_process_handlers
from harness.guest import Guest
from harness.vm import MachineSpec
install_process_handlers()
image = build_all().images["stock"]
with Guest(MachineSpec.for_image(image)) as m:
    print(m.pid, m.run_dir, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signal_to_harness_stops_qemu(stock_image, signame, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    stderr = tmp_path / "child.stderr"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, "the child harness never booted its guest"
        pid, run_dir = int(line[0]), Path(line[1])
        assert pid_alive(pid)
        os.kill(proc.pid, getattr(signal, signame))
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:  # say where it hangs: every thread's stack
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2)
            pytest.fail(f"the harness did not end within 60 s of {signame}; its threads:\n"
                        + stderr.read_text()[-6000:])
        assert not pid_alive(pid)
        assert not run_dir.exists()
    finally:
        proc.kill()
        proc.wait()
