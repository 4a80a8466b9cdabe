"""``cover-letter`` on a folder a real ``balloon-harness run`` wrote: the stacks, host and
builds it prints are the ones the folder recorded (metadata.json, each run's run.json), and
the decisions are ``compare``'s. One repetition of two RFC arms (about a minute under TCG)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
from test_cover_letter import _fits, assert_decisions_are_compares

from harness.analysis.cover_letter import cover_letter
from harness.cli import main

pytestmark = pytest.mark.vm
RFC = Path(__file__).resolve().parents[1] / "scenarios" / "rfc-v1.toml"


@pytest.fixture(scope="module")
def real_folder(artifacts, tmp_path_factory):
    d = tmp_path_factory.mktemp("cover")
    text = RFC.read_text()
    text = text[:text.index('\n[[arms]]\nname = "stock"')] + "\n"     # baseline and thp-order only
    scenario = d / "cover-rfc.toml"
    scenario.write_text(text)
    out = d / "rfc-1rep"
    assert main(["run", str(scenario), "--reps", "1", "--out", str(out)]) == 0
    return out


def test_the_letter_says_what_the_folder_recorded(real_folder):
    letter = cover_letter([real_folder])
    _fits(letter)
    meta = json.loads((real_folder / "metadata.json").read_text())
    runs = {r: json.loads((real_folder / "runs" / r / "run.json").read_text())
            for r in ("baseline-r1", "thp-order-r1")}
    kernel = meta["guest_kernel"]
    assert f"guest Linux {kernel['version']} ({kernel['release']})" in letter
    qemu = meta["qemu"]["patched"]["version"].replace("QEMU emulator version ", "")
    assert f"qemu patched: {qemu}, sha256" in letter
    assert f"module patched: sha256 {runs['baseline-r1']['module_sha256'][:12]}" in letter
    assert f"host Linux {platform.release()}" in letter
    accel = runs["baseline-r1"]["accel"]
    assert f"accelerator {accel}" in letter
    thp = meta["host"]["thp"]
    assert f"THP enabled={thp['enabled']} defrag={thp['defrag']}" in letter
    # not from a checkout's scenarios/: the folder's own copy of the scenario is the one to run
    assert f"$ balloon-harness run {real_folder.name}/scenario.toml --reps 1" in letter
    assert f"harness {meta['harness_revision'][:12]}" in letter
    assert_decisions_are_compares(letter, real_folder, "baseline", real_folder, "thp-order")
