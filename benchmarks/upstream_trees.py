"""What ``balloon-harness upstream-trees`` costs on a warm cache: both trees made into an empty
directory, then the same command again (the trees kept).

    .venv/bin/python benchmarks/upstream_trees.py [--reps N]

Warm means the cache has the sid stack's Linux tree and QEMU import (the first run of the
command, or of tests/test_upstream_trees.py, makes them). Each repetition makes the trees in a
new temporary directory, removed after. Prints seconds per phase and the load average (the
host is shared: wall time under load is not idle time).
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
sys.path[:0] = [str(REPO)]

from harness.artifacts.upstream_trees import make_upstream_trees  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=1, help="repetitions (each into a new directory)")
    args = p.parse_args()
    for rep in range(args.reps):
        dest = Path(tempfile.mkdtemp(prefix="bh-upstream-trees-"))
        try:
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            trees = make_upstream_trees(dest)
            made = time.monotonic() - t0
            t0 = time.monotonic()
            again = make_upstream_trees(dest)
            kept = time.monotonic() - t0
            assert all(t.made for t in trees) and not any(t.made for t in again)
            print(f"rep {rep + 1}: made both trees {made:.1f} s, second run (kept) {kept:.2f} s "
                  f"(load {load:.1f} -> {os.getloadavg()[0]:.1f})")
        finally:
            shutil.rmtree(dest, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
