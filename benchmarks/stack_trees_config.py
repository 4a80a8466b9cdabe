"""What the configuration check of every stack's Linux costs `make test` (issue 27): cold, then warm.

    .venv/bin/python benchmarks/stack_trees_config.py [--stacks bookworm,trixie,sid] [--cold]

For each stack: the test tree (Debian's linux-source at the pinned version as a git tree
with the stack's RFC port committed, tests/own_trees.py) from the shared cache, or, with
``--cold``, made again in a new empty cache (download, unpack, git add and commit, git am;
removed after); then the reading of its Kconfig (the requirements' resolution) and ``make
allnoconfig`` with the resolved fragment (no compile), as tests/test_own_trees_stacks.py
does. Prints seconds per step and the load average (the host is shared: wall time under
load is not idle time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.artifacts.kernel_tree import configure, required_symbols, resolution_for  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stacks", default="bookworm,trixie,sid")
    p.add_argument("--cold", action="store_true", help="make the trees again in a new empty cache")
    args = p.parse_args()
    cold_root = Path(tempfile.mkdtemp(prefix="bh-stack-trees-")) if args.cold else None
    if cold_root:
        os.environ["BALLOON_HARNESS_CACHE"] = str(cold_root)
    from own_trees import linux_tree
    total = 0.0
    try:
        for stack in args.stacks.split(","):
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            tree = linux_tree(stack)
            made = time.monotonic() - t0
            t0 = time.monotonic()
            resolved = resolution_for(tree)
            resolving = time.monotonic() - t0
            with tempfile.TemporaryDirectory(prefix="bh-config-") as tmp:
                t0 = time.monotonic()
                configure(tree, Path(tmp) / "obj", (), Path(tmp) / "log")
                configuring = time.monotonic() - t0
            core = [s for s in required_symbols(resolved) if "BALLOON" in s and s != "CONFIG_VIRTIO_BALLOON"]
            total += made + configuring
            print(f"{stack}: tree {made:.1f} s ({'made' if args.cold else 'cached'}), requirements resolved "
                  f"{resolving:.2f} s ({', '.join(core)}), configuration {configuring:.1f} s "
                  f"(load {load:.1f} -> {os.getloadavg()[0]:.1f})")
        print(f"total {total:.0f} s")
    finally:
        if cold_root:
            shutil.rmtree(cold_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
