"""The neighbour test (issue 32, item 4; docs/neighbours.md), on real guests.

One run of scenarios/neighbours.toml's arm for each design and stack: while the balloon
inflates, (a) the neighbour virtio-mem device unplugs 128 MiB, (b) the guest asks for 32
hugetlb pages of 2 MiB at once, (c) the guest offlines one ZONE_MOVABLE block of its boot
memory. Each must succeed, and (b) and (c) must have started while the balloon still had
at least 8 MiB to take (the guest's own count of its balloon, before the operation,
against what the balloon held at the step's end). A design that refuses the guest's
migrations while it allocates fails here: that is what the test is for.

contig on bookworm is in `make test`; the six-case matrix (contig, compact x Linux 6.1,
6.12, 7.2) is `make test-slow`. The guest probes ([probes]) are recorded too, and checked to
have counted (the migrations (a) and (c) cause must show in pgmigrate_success).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_scenario_cli

from harness.results.probes import probe_deltas

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = [pytest.mark.vm, pytest.mark.build]

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "neighbours.toml"
STACK_KERNEL = {"bookworm": "6.1", "trixie": "6.12", "sid": "7.2"}
STILL_TO_TAKE_KIB = 8 * 1024     # (b) and (c) start while the balloon has at least this left to take
LINE = re.compile(r"^bh-neighbour (\w+) (.*)$", re.MULTILINE)


def one_arm_scenario(design: str, stack: str) -> str:
    """scenarios/neighbours.toml with only the arm of ``design`` on ``stack`` (its guest file
    named by absolute path, as the copy lives elsewhere)."""
    text = SCENARIO.read_text()
    head, _, arms = text.partition("[[arms]]")
    name = f"{design}-{STACK_KERNEL[stack]}"
    keep = [b for b in arms.split("[[arms]]") if f'name = "{name}"' in b]
    assert keep, f"no arm {name} in {SCENARIO}"
    script = SCENARIO.parent / "neighbours" / "bh-neighbours"
    head = head.replace('"neighbours/bh-neighbours"', json.dumps(str(script)))
    return head + "[[arms]]" + keep[0]


def neighbour_lines(log: str) -> dict[str, dict[str, str]]:
    """op -> its key=value fields, from the guest half's output."""
    return {op: dict(kv.split("=", 1) for kv in rest.split() if "=" in kv) for op, rest in LINE.findall(log)}


def _check(design: str, stack: str, tmp_path: Path) -> None:
    from harness.artifacts.build import build_all
    artifacts = build_all([stack])
    if design not in artifacts.images or "fallback" not in artifacts.qemus:
        pytest.skip(f"{design} has no port to the {stack} stack (guest-kernel-patches/, qemu-patches/)")
    proc, out = run_scenario_cli(tmp_path, one_arm_scenario(design, stack), timeout=1800)
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 1, proc.stderr[-3000:]
    run = runs[0]
    error = run / "error.txt"
    assert not error.exists(), error.read_text()[:3000]
    summary = pd.read_parquet(run / "summary.parquet")
    inflate = summary[summary["step"] == "balloon 512"].iloc[0]
    log = (run / "steps" / "neighbours.log").read_text()
    ops = neighbour_lines(log)
    problems = []
    # (a) the virtio-mem unplug reached its size while the balloon inflated
    if inflate["neighbour_reached"] != 1.0:
        problems.append(f"(a) virtio-mem unplug: unplugged {inflate['neighbour_unplugged_mib']:.0f} of 128 MiB "
                        f"in {inflate['neighbour_seconds']:.1f}s")
    ballooned_kib = float(inflate["ballooned_mib"]) * 1024
    for op in ("hugetlb", "offline"):
        fields = ops.get(op)
        if fields is None:
            problems.append(f"({'b' if op == 'hugetlb' else 'c'}) {op}: no result line in the guest's output:\n{log}")
            continue
        if fields.get("ok") != "1":
            problems.append(f"({'b' if op == 'hugetlb' else 'c'}) {op} failed: {fields}")
        before = float(fields.get("balloon_kib", "0/0").split("/")[0])
        if ballooned_kib - before < STILL_TO_TAKE_KIB:
            problems.append(f"{op} started when the balloon held {before:.0f} kB of the {ballooned_kib:.0f} kB it "
                            f"ended with: not while it inflated")
    info = json.loads((run / "run.json").read_text())
    deltas = probe_deltas(pd.read_parquet(run / "samples.parquet"))
    migrated = deltas[(deltas["step"] == "balloon 512") & (deltas["name"] == "pgmigrate_success")]
    assert info["probes"]["vmstat"], info["probes"]
    assert not migrated.empty, "the guest probes recorded no pgmigrate_success during the balloon step"
    assert not problems, f"{design} on {stack}: neighbours failed while the balloon inflated " \
                         f"(results: {out}):\n" + "\n".join(problems)


def test_neighbours_survive_contig_on_bookworm(tmp_path):
    """The one case `make test` runs (about 4 minutes under TCG)."""
    _check("contig", "bookworm", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("stack", list(STACK_KERNEL))
@pytest.mark.parametrize("design", ["contig", "compact"])
def test_neighbours_survive_the_balloon(design, stack, tmp_path):
    _check(design, stack, tmp_path)


def test_the_matrix_covers_every_arm_of_the_scenario():
    arms = {a["name"] for a in tomllib.loads(SCENARIO.read_text())["arms"]}
    assert arms == {f"{d}-{k}" for d in ("contig", "compact") for k in STACK_KERNEL.values()}
