"""What a results folder must say about where its numbers came from.

A figure without its host kernel, THP settings, accelerator and exact QEMU and
module builds cannot be compared with anyone else's; so every results folder gets
a ``metadata.json`` with all of them, written before the first run starts.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import __version__
from harness.artifacts.build import Artifacts
from harness.artifacts.cache import file_sha256
from harness.artifacts.qemu import qemu_version
from harness.experiment.scenario import Scenario
from harness.host.room import host_metadata
from harness.probes.host import thp_settings
from harness.resources import CHECKOUT

REPO = CHECKOUT  # a git checkout, or an installed package (then "unknown")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def harness_revision() -> str:
    """git revision of the harness, with ``-dirty`` when the work tree has changes."""
    if not (REPO / ".git").exists():
        return f"unknown (harness {__version__}, installed, not a git checkout)"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"unknown (harness {__version__}, not a git checkout)"


def collect(scenario: Scenario, artifacts: Artifacts) -> dict[str, Any]:
    manifest = json.loads(artifacts.manifest.read_text()) if artifacts.manifest else {}
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "harness_revision": harness_revision(),
        "host": {
            "hostname": socket.gethostname(),
            "kernel": platform.release(),
            "kernel_version": platform.version(),
            "cpu": cpu_model(),
            "cpus": len([l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("processor")]),
            "thp": thp_settings(),
            **host_metadata(),       # issue 29: every THP knob and huge-page pool, set or not
        },
        "qemu": {name: {"path": str(path), "version": qemu_version(path)} for name, path in artifacts.qemus.items()},
        "stacks": {name: {"pins": a.pins.__dict__ if a.pins else None, "qemu": {k: str(v) for k, v in a.qemus.items()}}
                   for name, a in artifacts.by_stack.items()},
        "guest_kernel": {"package": artifacts.kernel.package, "version": artifacts.kernel.version,
                         "release": artifacts.kernel.release},
        "guest_modules": {name: {"sha256": img.balloon_module_sha256, "initrd": str(img.initrd)}
                          for name, img in artifacts.images.items()},
        # Kernels and QEMUs built from users' trees: path, content (tree hash, uncommitted
        # changes), dirty flag, compiler (harness.artifacts.trees, kernel_tree, qemu)
        "own_trees": own_trees(artifacts),
        "build_manifest": manifest,
        "scenario": {"name": scenario.name, "path": str(scenario.path), "text": scenario.path.read_text()},
    }


def own_trees(artifacts: Artifacts) -> dict[str, Any]:
    """Each tree built for the arms, by stack: its identity (dirty or not) and its build."""
    stacks = artifacts.by_stack or {artifacts.stack: artifacts}
    trees: dict[str, Any] = {}
    for stack, arts in stacks.items():
        for label, info in arts.trees.items():
            trees[f"{stack}: {label}"] = info
        for tree, binary in arts.tree_qemus.items():
            trees[f"{stack}: qemu {tree.describe()}"] = {**trees.get(f"{stack}: qemu {tree.describe()}", {}),
                                                         "binary": str(binary), "qemu_version": qemu_version(binary),
                                                         "sha256": file_sha256(binary)}
    return trees


def run_records(out: Path) -> dict[str, dict[str, Any]]:
    """run id -> the accelerator it used, its exact QEMU command line (``cmd.sh`` text, to
    repeat it by hand) and how its QEMU ended, from the finished runs."""
    runs = {}
    for done in sorted(Path(out).glob("runs/*/run.json")):
        info = json.loads(done.read_text())
        runs[info["run_id"]] = {"accel": info.get("accel", "unknown"),
                                "qemu_cmdline": info.get("qemu_cmdline"),
                                "qemu_ending": info.get("qemu_ending")}
    return runs


def finished(meta: dict[str, Any], out: Path) -> dict[str, Any]:
    """The metadata with what only the finished runs know."""
    runs = run_records(out)
    return {**meta, "runs": runs, "accelerator": {k: v["accel"] for k, v in runs.items()}}
