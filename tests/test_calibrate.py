"""calibrate without a VM: the A/A scenario it derives, the floors it measures on synthetic
A/A folders, and the floors file it writes (the real run: tests/test_calibrate_vm.py)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.calibrate import calibrate_folder, noise_floor
from harness.cli.calibrate import report
from harness.errors import ConfigError, HarnessError
from harness.experiment.scenario import load_scenario
from harness.experiment.twins import dump_toml, twin_scenario_text
from harness.resources import scenario_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RATIO = "thp_lost_per_ballooned_mib"


def test_the_twin_scenario_is_one_arm_twice_in_random_order(tmp_path):
    text, arm, twin = twin_scenario_text(scenario_path("rfc-v1.toml"), "thp-order")
    path = tmp_path / "twin.toml"
    path.write_text(text)
    s = load_scenario(path)                                    # a valid scenario, checked like any other
    assert [a.name for a in s.arms] == ["thp-order", "thp-order-twin"] == [arm, twin]
    a, b = s.arms
    assert (a.qemu, a.module, a.device, a.stack) == (b.qemu, b.module, b.device, b.stack)
    assert s.order == "random" and not s.expectations and not s.reference
    original = load_scenario(scenario_path("rfc-v1.toml"))
    assert s.steps == original.steps and s.vm == original.vm and s.timing == original.timing
    with pytest.raises(ConfigError, match="no arm named 'nope'"):
        twin_scenario_text(scenario_path("rfc-v1.toml"), "nope")


def test_toml_written_back_reads_the_same():
    raw = tomllib.loads(scenario_path("rfc-v1.toml").read_text())
    assert tomllib.loads(dump_toml(raw)) == raw


def _aa(tmp_path, noise, seed=1, reps=5):
    arms = {"baseline": ArmSpec(ratio=2.0, noise=noise), "baseline-twin": ArmSpec(ratio=2.0, noise=noise)}
    return make_results(tmp_path / f"aa-{noise}-{seed}", arms=arms, reps=reps, seed=seed)


def test_floors_grow_with_the_noise_and_shrink_with_the_runs(tmp_path):
    quiet = calibrate_folder(_aa(tmp_path, 0.02), "baseline", "baseline-twin")
    noisy = calibrate_folder(_aa(tmp_path, 0.2), "baseline", "baseline-twin")
    assert 0 < quiet.floors[RATIO] < noisy.floors[RATIO]
    assert noisy.floors[RATIO] == pytest.approx(10 * quiet.floors[RATIO], rel=0.6)   # about linear in the noise
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 0.1, 40)
    few, many = noise_floor(RATIO, values, 3, rng), noise_floor(RATIO, values, 20, rng)
    assert many < few                                           # more runs per arm, a finer floor
    row = next(r for r in noisy.rows if r.metric == RATIO and r.step == BALLOON_STEP)
    assert row.n == 5 and row.aa_verdict in ("same", "undecided", "better", "worse")


def test_a_folder_without_the_twin_is_refused(tmp_path):
    out = make_results(tmp_path / "r", reps=2)
    with pytest.raises(HarnessError, match="no finished run of baseline-twin"):
        calibrate_folder(out, "baseline", "baseline-twin")


def test_the_floors_file_says_how_it_was_measured(tmp_path, capsys):
    out = _aa(tmp_path, 0.05)
    target = tmp_path / "data" / "floors.json"
    args = argparse.Namespace(scenario="scenarios/rfc-v1.toml", reps=5, write_floors=str(target))
    assert report(out, "baseline", "baseline-twin", args, 0) == 0
    record = json.loads(target.read_text())
    assert json.loads((out / "floors.json").read_text()) == record
    assert {"measured", "commit", "host", "command", "definition", "floors", "by_step"} <= set(record)
    assert record["host"]["hostname"] == "testhost" and record["reps_per_copy"] == 5
    assert record["floors"][RATIO] > 0 and "95%" in record["definition"]
    printed = capsys.readouterr().out
    assert "A/A decision" in printed and "floors: " in printed and "called better or worse" in printed
