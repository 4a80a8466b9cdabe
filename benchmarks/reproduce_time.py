"""Print the wall time of `balloon-harness reproduce` split into boot, workload, balloon, overhead.

    .venv/bin/python benchmarks/reproduce_time.py

Runs the RFC scenario into a temporary results folder (warm cache expected: run
`balloon-harness build` first) and reads each run's `run.json` timings. "harness overhead"
is everything not spent booting, in workload steps or waiting for the balloon: sampling
snapshots, step pauses, shutdown, writing results, the build check and the report.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bh-bench-") as tmp:
        out = Path(tmp) / "out"
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "harness", "reproduce", "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.monotonic() - start
        runs = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/run.json"))]
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs; "
          f"accel: {', '.join(sorted({r['accel'] for r in runs}))}")
    print(f"{'run':<16}{'boot':>8}{'workload':>10}{'balloon':>9}{'other':>8}{'total':>8}  (seconds)")
    totals = {"boot": 0.0, "run": 0.0, "balloon": 0.0}
    for r in runs:
        s = r["seconds"]
        for k in totals:
            totals[k] += s[k]
        print(f"{r['run_id']:<16}{s['boot']:8.1f}{s['run']:10.1f}{s['balloon']:9.1f}"
              f"{r['wall_seconds'] - s['boot'] - s['run'] - s['balloon']:8.1f}{r['wall_seconds']:8.1f}")
    overhead = wall - sum(totals.values())
    print(f"reproduce wall time {wall:.1f} s = boot {totals['boot']:.1f} + workload {totals['run']:.1f} "
          f"+ balloon {totals['balloon']:.1f} + harness overhead {overhead:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
