"""A run builds only what its scenario's arms name (issue 22, lever 2); `build` alone
still builds every variant."""

from __future__ import annotations

import pytest

from harness.artifacts.needs import EVERYTHING, Needs, for_stack, needs_of
from harness.experiment.scenario import load_scenario
from harness.resources import scenario_path


def test_rfc_scenario_needs_stock_and_the_rfc_port_only():
    needs = needs_of(load_scenario(scenario_path("rfc-v1.toml")).arms)
    assert needs == {"bookworm": Needs(frozenset({"stock", "patched"}), frozenset({"stock", "patched"}))}
    assert not needs["bookworm"].wants_qemu("movable") and not needs["bookworm"].wants_module("fallback")


def test_needs_follow_each_arms_stack_and_keep_every_design_named():
    stacks = needs_of(load_scenario(scenario_path("rfc-v1-stacks.toml")).arms)
    assert set(stacks) == {"bookworm", "trixie"}
    designs = needs_of(load_scenario(scenario_path("review-designs.toml")).arms)["bookworm"]
    assert {"stock", "patched", "fallback", "host-pbp"} <= set(designs.qemus or ())
    assert {"stock", "patched", "fallback", "movable", "split-alloc"} <= set(designs.modules or ())


def test_no_needs_means_every_variant():
    assert for_stack(None, "bookworm") is EVERYTHING
    assert EVERYTHING.wants_qemu("anything") and EVERYTHING.wants_module("anything") and EVERYTHING.everything


@pytest.mark.build
def test_a_scenarios_build_touches_only_its_arms_variants(artifacts, caplog):
    """Against the real cache (warm after the session's full build): the RFC scenario's
    build looks up the stock and RFC-port QEMU and images and no design's."""
    import json
    import logging

    from harness.artifacts.build import build_all
    assert {"fallback", "host-pbp"} <= set(artifacts.qemus) and "movable" in artifacts.images  # `build`: all
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="harness.build"):
        arts = build_all(needs=needs_of(load_scenario(scenario_path("rfc-v1.toml")).arms))
    said = [r.getMessage() for r in caplog.records]
    assert set(arts.qemus) == {"stock", "patched"}
    assert set(arts.images) == {"stock", "patched"}
    assert set(arts.modules) <= {"stock", "patched"}
    qemu_lines = [line for line in said if " QEMU: " in line]
    assert qemu_lines and all(line.split()[0] in ("stock", "patched") for line in qemu_lines), said
    for design in ("fallback", "host-pbp", "movable", "split-alloc"):
        assert not any(design in line for line in said), said
    # The manifest still lists what `build` made before (a scenario's build adds, never drops).
    manifest = json.loads(arts.manifest.read_text())
    assert {"fallback", "host-pbp"} <= set(manifest["stacks"]["bookworm"]["qemu"])
    assert "movable" in manifest["stacks"]["bookworm"]["images"]
