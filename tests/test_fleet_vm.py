"""A fleet on real guests (issue 30, docs/fleet.md): two stock 512 MiB guests in one run,
usemem punching holes in 200 MiB of each (host huge pages behind it), then the balloon to
400 MiB in both at once, through `balloon-harness run --reps 1` as a user runs it.

Measured, not assumed: each guest has its own QEMU and its own rows; the fleet's row sums
what the guests' rows measured, and its "more guests fit" follows its definition from the
fleet's own figure. Then a fleet whose second guest's QEMU is SIGKILLed mid-run: the first
guest's results stay on disk and complete, the killed guest's failure is recorded (its own
error.txt, run.json, the command's exit status), and no QEMU of the run is left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import qemu_pids

from tests.toml_text import arm, preamble, step

pytestmark = pytest.mark.vm

GUEST_MIB, BALLOON_MIB, GUESTS = 512, 400, 2
RUN = "stock-r1"


def fleet_text(name: str, extra_steps: str = "") -> str:
    return (preamble(name, memory_mib=GUEST_MIB, vm={"guest_thp": "always"}, top=f"guests = {GUESTS}\n",
                     timing={"settle_seconds": 3, "step_pause_seconds": 0.5, "host_sample_hz": 2})
            + step("background", "usemem", command="usemem --punch-holes -s -1 200m", ready="punch holes done",
                   holds_mib=80, timeout=900)
            + step("balloon", "balloon", target_mib=BALLOON_MIB)
            + extra_steps
            + arm("stock"))


def start_run(tmp: Path, text: str) -> tuple[subprocess.Popen, Path]:
    path = tmp / "scenario.toml"
    path.write_text(text)
    out = tmp / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out", str(out), "--reps", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, artifacts):
    tmp = tmp_path_factory.mktemp("fleet")
    proc, out = start_run(tmp, fleet_text("fleet2"))
    stdout, stderr = proc.communicate(timeout=1800)
    assert not qemu_pids(str(tmp)), "a QEMU of the fleet was left running"
    assert proc.returncode == 0, stderr[-3000:]
    return pd.read_csv(out / "summary.csv", dtype={"guest": str}), out, stdout


def test_each_guest_of_the_fleet_is_measured_in_its_own_qemu(fleet):
    summary, out, _ = fleet
    balloon = summary[summary["step"] == "balloon"].set_index("guest")
    assert sorted(balloon.index) == ["1", "2"]
    for g in ("1", "2"):
        row = balloon.loc[g]
        assert bool(row["reached"]) and row["actual_mib"] == BALLOON_MIB
        assert row["qemu_rss_after_kib"] > 0 and math.isfinite(row["rss_freed_kib"]), row   # its own QEMU read
        assert (out / "runs" / RUN / f"guest-{g}" / "summary.csv").exists()
        assert (out / "runs" / RUN / f"guest-{g}" / "vm" / "console.log").exists()
    info = json.loads((out / "runs" / RUN / "run.json").read_text())
    members = info["fleet"]["members"]
    assert [m["status"] for m in members] == ["complete", "complete"]
    assert all(m["qemu_ending"]["clean"] for m in members)
    cmdlines = {(out / "runs" / RUN / f"guest-{g}" / "vm" / "qemu.cmdline").read_text() for g in ("1", "2")}
    assert len(cmdlines) == 2   # two QEMUs, each its own name and SSH port


def test_the_fleet_row_sums_its_guests_and_derives_more_guests_fit(fleet):
    summary, out, stdout = fleet
    guests = summary[summary["step"] == "balloon"]
    row = summary[summary["step"] == "balloon [fleet]"].iloc[0]
    assert row["guest"] == "fleet" and row["fleet_guests"] == GUESTS
    assert row["rss_freed_kib"] == guests["rss_freed_kib"].sum()
    assert row["fleet_returned_mib"] == pytest.approx(guests["rss_freed_kib"].sum() / 1024)
    assert row["fleet_thp_kept_kib"] == guests["qemu_ahp_after_kib"].sum()
    assert row["fleet_more_guests_fit"] == math.floor(max(0.0, row["fleet_returned_mib"]) / GUEST_MIB)
    # the host-wide figures are marked as such in the table the command prints, and said in its legend
    assert "more guests fit*" in stdout and "host AHP kB*" in stdout
    legend = subprocess.run([sys.executable, "-m", "harness", "report", str(out), "--explain"],
                            capture_output=True, text=True, timeout=300).stdout
    assert "host-wide" in legend and "floor(fleet_returned_mib / one guest's memory_mib)" in legend


def _kill_when(proc: subprocess.Popen, marker: str, tmp: Path, lines: list[str]) -> list[int]:
    """Read the run's progress; when guest 2 starts the step ``marker``, SIGKILL its QEMU."""
    killed: list[int] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if not killed and f"guest 2: step {marker}" in line:
            pids = [p for p in qemu_pids(str(tmp))
                    if b"-g2" in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")]
            assert len(pids) == 1, pids
            time.sleep(2.0)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
    return killed


def test_killing_one_guest_keeps_the_others_results_and_leaves_no_qemu(tmp_path, artifacts):
    text = fleet_text("fleet-kill", step("sleep", "hold", seconds=20) + step("measure", "after hold"))
    proc, out = start_run(tmp_path, text)
    lines: list[str] = []
    killed: list[int] = []
    reader = threading.Thread(target=lambda: killed.extend(_kill_when(proc, "hold", tmp_path, lines)))
    reader.start()
    proc.wait(timeout=1800)
    reader.join(60)
    assert killed, "".join(lines[-40:])
    assert not qemu_pids(str(tmp_path)), "a QEMU of the fleet was left running"
    assert proc.returncode != 0   # the run says a part is missing
    run = out / "runs" / RUN
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "partial"
    status = {m["guest"]: m for m in info["fleet"]["members"]}
    assert status[1]["status"] == "complete" and status[2]["status"] == "failed"
    assert status[2]["qemu_ending"]["returncode"] == -signal.SIGKILL
    assert "hold" in (run / "guest-2" / "error.txt").read_text()
    assert (run / "error.txt").exists()   # the run's failure, as any failed run's
    # guest 1 finished every step, on disk in its folder and in the results' summary
    steps = ["usemem", "balloon", "hold", "after hold"]
    own = pd.read_csv(run / "guest-1" / "summary.csv")
    assert list(own["step"]) == steps
    summary = pd.read_csv(out / "summary.csv", dtype={"guest": str})
    assert list(summary[summary["guest"] == "1"]["step"]) == steps
    assert "2" not in set(summary["guest"])
    # guest 2's finished steps are kept beside its error
    partial = pd.read_csv(run / "guest-2" / "partial-summary.csv")
    assert {"usemem", "balloon"} <= set(partial["step"])
    # the fleet rows after the kill hold guest 1 alone
    after = summary[summary["step"] == "after hold [fleet]"].iloc[0]
    assert after["fleet_guests"] == 1
