"""``run --until-decided`` on real guests: after the planned repetition, one more of each arm
whose comparison is open, then the limit; every run is an ordinary run of the folder."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import qemu_pids
from toml_text import small_stock_run

from harness.results.folder import open_folder

pytestmark = pytest.mark.vm

# Two arms of the same stock build on a small guest: their THP ratios cannot be told apart
# from 1 run a side, nor shown equal from 2, so the loop must add exactly one round.
SCENARIO = small_stock_run("until-decided-test", ('first', 'second'))


def test_until_decided_adds_a_round_of_real_runs_then_stops_at_the_limit(tmp_path, artifacts):
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    before = qemu_pids(str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out),
                           "--until-decided", "--max-reps", "2"], capture_output=True, text=True, timeout=1200)
    assert qemu_pids(str(tmp_path)) <= before
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = open_folder(out)
    assert sorted(r["run_id"] for r in folder.runs) == ["first-r1", "first-r2", "second-r1", "second-r2"]
    assert len({r["run_uid"] for r in folder.runs}) == 4
    assert "until decided: 2 arm(s) still open" in proc.stderr          # the round it added
    assert "4 run(s) spent (first 2, second 2) against 4 for --reps 2" in proc.stderr
    assert "second vs first at 'balloon 400': thp_lost_per_ballooned_mib" in proc.stderr
    # the boundary it decided against, printed before the first look: one look at n = 2 here
    assert "stopping boundary" in proc.stderr and "n=2: p<0.05 (cannot reach)" in proc.stderr
    # the arms' order per round is recorded: its seed in metadata.json, each run's place in run.json
    assert folder.metadata["arm_order"]["order"] == "random" and isinstance(folder.metadata["arm_order"]["seed"], int)
    assert sorted((r["rep"], r["slot"]) for r in folder.runs) == [(1, 1), (1, 2), (2, 1), (2, 2)]
