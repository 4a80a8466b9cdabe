"""Faults on real QEMU: a guest panic, a dropped SSH connection and a QEMU SIGKILLed in the
middle of a balloon step each fail their own run with the evidence; the next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import qemu_pids

from harness.results import load_results

pytestmark = pytest.mark.vm

SCENARIO = """
name = "faults"
repetitions = 4
[vm]
memory_mib = 512
[timing]
settle_seconds = 3
step_pause_seconds = 0.5
[[steps]]
kind = "background"
label = "wl"
command = "usemem --punch-holes -s -1 200m"
ready = "punch holes done"
[[steps]]
kind = "run"
label = "fault"
command = ". /run/bh-run.env; case $BH_REP in 1) echo c > /proc/sysrq-trigger;; 2) killall dropbear;; esac; true"
[[steps]]
kind = "balloon"
label = "balloon 300"
target_mib = 300
[[arms]]
name = "stock"
qemu = "stock"
module = "stock"
"""


def _qemu_of(name: str, marker: str) -> int | None:
    for pid in qemu_pids(marker):
        try:
            if f"-name\0{name}\0".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def fault_results(tmp_path_factory, artifacts):
    tmp = tmp_path_factory.mktemp("faults")
    path = tmp / "faults.toml"
    path.write_text(SCENARIO)
    out = tmp / "out"
    before = qemu_pids(str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list[int] = []
    lines: list[str] = []

    def watch() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "stock rep 3: step balloon 300" in line and not killed:
                pid = _qemu_of("bh-stock-r3", str(out))
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    t = threading.Thread(target=watch)
    t.start()
    try:
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    t.join(30)
    assert killed, "the third run's balloon step was never seen:\n" + "".join(lines[-30:])
    return proc, out, "".join(lines), before


def test_panic_mid_run_fails_that_run_with_the_console(fault_results):
    _, out, _, _ = fault_results
    err = (out / "runs/stock-r1/error.txt").read_text()
    assert "GuestDied" in err and "guest console" in err and "sysrq" in err.lower()


def test_dropped_ssh_fails_that_run(fault_results):
    _, out, _, _ = fault_results
    err = (out / "runs/stock-r2/error.txt").read_text()
    assert "GuestCommandError" in err and "killall dropbear" in err


def test_qemu_killed_mid_balloon_fails_that_run_with_the_console(fault_results):
    _, out, stderr, _ = fault_results
    err = (out / "runs/stock-r3/error.txt").read_text()
    assert "GuestDied" in err and "-9" in err and "guest console" in err
    assert "QEMU did not quit cleanly: died (killed by SIGKILL)" in stderr


def test_the_next_run_completes_and_the_command_names_the_failures(fault_results):
    proc, out, stderr, before = fault_results
    res = load_results(out)
    assert [r["run_id"] for r in res.runs] == ["stock-r4"]
    assert proc.returncode == 1
    assert "3 run(s) failed: stock-r1, stock-r2, stock-r3" in stderr
    assert qemu_pids(str(out)) <= before, "a QEMU was left running"
