"""``calibrate`` on real guests: one arm and its copy, interleaved, 2 runs each; the floors
file says how it was measured; no QEMU left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import qemu_pids
from toml_text import small_stock_run

from harness.results.folder import open_folder

pytestmark = pytest.mark.vm

SCENARIO = small_stock_run("calibrate-test", ('stock', 'other'))


def test_calibrate_runs_an_arm_against_its_copy_and_writes_the_floors(tmp_path, artifacts):
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    before = qemu_pids(str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "harness", "calibrate", str(scenario), "--arm", "stock",
                           "--reps", "2", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert qemu_pids(str(tmp_path)) <= before
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = open_folder(out)
    assert sorted(r["run_id"] for r in folder.runs) == ["stock-r1", "stock-r2", "stock-twin-r1", "stock-twin-r2"]
    assert sorted((r["rep"], r["slot"]) for r in folder.runs) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert folder.metadata["arm_order"]["order"] == "random"
    record = json.loads((out / "floors.json").read_text())
    assert record["arm"] == "stock" and record["twin"] == "stock-twin" and record["reps_per_copy"] == 2
    assert "thp_lost_per_ballooned_mib" in record["floors"] and "calibrate" in record["command"]
    assert "A/A decision" in proc.stdout and "floors: " in proc.stdout
