"""Workloads the harness starts and watches, and files of the user's own in the guest image,
on real guests: a dead workload or vanished workload memory fails the run, never silently."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from conftest import run_scenario_cli

from harness.results import load_results

pytestmark = pytest.mark.vm

HELLO_C = r"""
#include <stdio.h>
int main(void) { puts("hello from a file of the user's own"); return 0; }
"""

# rep 1: all is well. rep 2: the background workload ends at once (exit 7).
# rep 3: a workload that detaches itself gives its memory back early: holds_mib catches it.
SCENARIO = """
name = "workloads"
repetitions = 3
[guest]
files = {{ "/usr/bin/bh-hello" = "{hello}" }}
[vm]
memory_mib = 512
[timing]
settle_seconds = 3
step_pause_seconds = 0.5
[[steps]]
kind = "run"
label = "tool"
command = "bh-hello | grep -q 'user.s own'"
[[steps]]
kind = "background"
label = "wl"
command = ". /run/bh-run.env; if [ $BH_REP = 2 ]; then echo dying; exit 7; fi; usemem --punch-holes -s -1 300m"
ready = "punch holes done"
holds_mib = 120
[[steps]]
kind = "run"
label = "daemon"
command = ". /run/bh-run.env; if [ $BH_REP = 3 ]; then usemem -d -s 2 100m; else usemem -d -s -1 100m; fi"
holds_mib = 220
[[steps]]
kind = "sleep"
label = "wait"
seconds = 4
[[steps]]
kind = "balloon"
label = "balloon 400"
target_mib = 400
[[arms]]
name = "stock"
qemu = "stock"
module = "stock"
"""


@pytest.fixture(scope="module")
def workload_results(tmp_path_factory, artifacts):
    tmp = tmp_path_factory.mktemp("workloads")
    (tmp / "hello.c").write_text(HELLO_C)
    subprocess.run(["cc", "-static", "-O2", "-o", str(tmp / "hello"), str(tmp / "hello.c")], check=True)
    return run_scenario_cli(tmp, SCENARIO.format(hello=tmp / "hello"))


def test_a_healthy_workload_is_kept_and_its_log_copied(workload_results):
    proc, out = workload_results
    res = load_results(out)
    assert [r["run_id"] for r in res.runs] == ["stock-r1"], proc.stderr
    s = res.summary
    row = s[(s["run_id"] == "stock-r1") & (s["step"] == "balloon 400")].iloc[0]
    assert row["guest_anon_after_kib"] >= 220 * 1024
    assert row["reached"]
    log = (out / "runs/stock-r1/bh-workload-1.log").read_text()
    assert "punch holes done" in log
    info = res.runs[0]
    assert info["workloads"][0]["pid"] > 1 and info["qemu_ending"]["how"] == "quit"


def test_user_file_in_the_image_ran(workload_results):
    _, out = workload_results
    s = load_results(out).summary
    assert "tool" in set(s[s["run_id"] == "stock-r1"]["step"])  # the step `bh-hello | grep` passed


def test_dead_workload_fails_the_run_with_status_and_log(workload_results):
    proc, out = workload_results
    err = (out / "runs/stock-r2/error.txt").read_text()
    assert "WorkloadDied" in err and "exit status 7" in err and "dying" in err
    # what the run measured before it failed is kept beside the error, not as a result
    partial = pd.read_csv(out / "runs/stock-r2/partial-summary.csv")
    assert list(partial["step"]) == ["tool"]
    assert (out / "runs/stock-r2/dmesg.log").stat().st_size > 0


def test_vanished_workload_memory_fails_the_run(workload_results):
    proc, out = workload_results
    err = (out / "runs/stock-r3/error.txt").read_text()
    assert "GuestStateError" in err and "holds_mib" in err and "after step 'wait'" in err


def test_command_exits_nonzero_naming_the_failed_runs(workload_results):
    proc, _ = workload_results
    assert proc.returncode == 1
    assert "2 run(s) failed: stock-r2, stock-r3" in proc.stderr
