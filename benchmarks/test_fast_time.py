"""`make test-fast` on an empty harness cache, against issue 22's goal of 45 s.

    .venv/bin/python benchmarks/test_fast_time.py [--runs N] [--workers W]

Each run points BALLOON_HARNESS_CACHE at a new empty folder (what the fast tests build for
themselves, e.g. usemem, is built again) and times `make test-fast` as a whole process,
then prints every run, the median and the goal. ``--workers 0`` times the one-process suite
(the figure before it ran in pytest-xdist workers). Prints figures, never judges.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 45.0


def one(workers: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bh-empty-cache-") as cache:
        start = time.monotonic()
        proc = subprocess.run(["make", "-s", "test-fast", f"FAST_WORKERS={workers}"], cwd=ROOT,
                              env={**os.environ, "BALLOON_HARNESS_CACHE": cache},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.monotonic() - start
    tail = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return wall, (tail[-1].strip("= ") if tail else f"exit {proc.returncode}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workers", default="4", help="pytest-xdist workers (make FAST_WORKERS; 0: one process)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; make test-fast FAST_WORKERS={args.workers}, "
          "empty cache each run")
    walls = []
    for i in range(1, args.runs + 1):
        wall, result = one(args.workers)
        walls.append(wall)
        print(f"run {i}: {wall:.1f} s  ({result})", flush=True)
    median = statistics.median(walls)
    print(f"make test-fast on an empty cache: median {median:.1f} s (goal {GOAL_SECONDS:.0f} s: "
          f"{'met' if median <= GOAL_SECONDS else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
