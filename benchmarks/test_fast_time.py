"""`make test-fast` on an empty harness cache, against issue 22's goal of 45 s.

    .venv/bin/python benchmarks/test_fast_time.py [--runs N] [--workers W]

Each run points BALLOON_HARNESS_CACHE at a new empty folder (what the fast tests build for
themselves, e.g. usemem, is built again) and times `make test-fast` as a whole process:
wall time, and the CPU seconds (user + system) of make and every process under it, with the
host's load average before and after. On a shared host the wall time says how busy the host
was; the CPU seconds are the suite's own cost (45 s on 2 cores is at most 90 CPU-s, packed
perfectly). Prints every run and the medians. ``--workers`` sets make's FAST_WORKERS (default:
the Makefile's; 0: one process). Prints figures, never judges.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 45.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one(workers: str | None) -> tuple[float, float, str]:
    """(wall s, CPU s, pytest's last line) of one `make test-fast` on an empty cache."""
    with tempfile.TemporaryDirectory(prefix="bh-empty-cache-") as cache:
        cpu0, start = _children_cpu(), time.monotonic()
        proc = subprocess.run(["make", "-s", "test-fast", *([f"FAST_WORKERS={workers}"] if workers else [])],
                              cwd=ROOT, env={**os.environ, "BALLOON_HARNESS_CACHE": cache},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall, cpu = time.monotonic() - start, _children_cpu() - cpu0
    tail = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return wall, cpu, (tail[-1].strip("= ") if tail else f"exit {proc.returncode}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workers", default=None, help="pytest-xdist workers (make FAST_WORKERS; 0: one process)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; make test-fast"
          f"{f' FAST_WORKERS={args.workers}' if args.workers else ''}, empty cache each run")
    walls, cpus = [], []
    for i in range(1, args.runs + 1):
        load = os.getloadavg()[0]
        wall, cpu, result = one(args.workers)
        walls.append(wall)
        cpus.append(cpu)
        print(f"run {i}: {wall:.1f} s wall, {cpu:.1f} CPU-s, load {load:.1f} -> {os.getloadavg()[0]:.1f}  ({result})",
              flush=True)
    print(f"make test-fast on an empty cache: median {statistics.median(walls):.1f} s wall, "
          f"{statistics.median(cpus):.1f} CPU-s (goal {GOAL_SECONDS:.0f} s wall on an idle host: "
          f"at most {2 * GOAL_SECONDS:.0f} CPU-s on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
