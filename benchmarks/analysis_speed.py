"""Print how long the analysis takes on synthetic results (figures, not assertions).

    .venv/bin/python benchmarks/analysis_speed.py [--folders 1000] [--runs 200]

- ``compare`` and ``check`` of two folders of 200 runs each (target: under 2 s each);
- a history of 1,000 nightly results folders: appending them (set-up, printed), then
  ``history`` (the trend table and its PNG) over all of them (target: under 5 s).

The synthetic folders are written by ``tests/synthetic.py`` (the tests' helper); the
1,000 nights are copies of a few distinct folders with their own dates.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from synthetic import BALLOON_STEP, ArmSpec, make_results  # noqa: E402

from harness.analysis.check import check_results  # noqa: E402
from harness.analysis.compare import compare, format_comparison  # noqa: E402
from harness.analysis.history import history_trend  # noqa: E402
from harness.analysis.history_render import format_trend, plot_trend  # noqa: E402
from harness.analysis.history_store import append_history  # noqa: E402

ARMS = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1, shrink=0.9),
        "stock": ArmSpec(ratio=2.1), "other": ArmSpec(ratio=1.5)}
EXPECT = [{"arm": "thp-order", "step": BALLOON_STEP, "metric": "reached_fraction", "op": ">=", "value": 0.8},
          {"arm": "thp-order", "step": BALLOON_STEP, "metric": "thp_lost_per_ballooned_mib", "op": "<",
           "than": "baseline"}]


def timed(fn):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        value = fn()
    return value, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="runs per folder for compare/check (default 200)")
    ap.add_argument("--folders", type=int, default=1000, help="nightly folders in the history (default 1000)")
    args = ap.parse_args()
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    reps = max(1, args.runs // len(ARMS))
    with tempfile.TemporaryDirectory(prefix="bh-analysis-") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        a = make_results(d / "a", arms=ARMS, reps=reps, seed=1, expect=EXPECT, fast=True)
        b = make_results(d / "b", arms=ARMS, reps=reps, seed=2, expect=EXPECT, fast=True)
        print(f"set-up: two folders of {reps * len(ARMS)} runs in {time.perf_counter() - t:.1f} s")
        _, secs = timed(lambda: __import__("scipy.stats"))
        print(f"importing scipy.stats (once per process, paid by the first compare/check): {secs:.2f} s")
        c, secs = timed(lambda: format_comparison(compare(str(a), str(b))))
        print(f"compare, {reps * len(ARMS)} vs {reps * len(ARMS)} runs: {secs:.2f} s (target < 2 s)")
        code, secs = timed(lambda: check_results(a, junit=d / "junit.xml"))
        print(f"check with JUnit, {reps * len(ARMS)} runs, exit {code}: {secs:.2f} s (target < 2 s)")
        for cmd in (["compare", str(a), str(b)], ["check", str(a), "--junit", str(d / "junit.xml")]):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "harness", *cmd], stdout=subprocess.DEVNULL, cwd=REPO)
            print(f"`balloon-harness {cmd[0]}` as a command (Python start and imports included): "
                  f"{time.perf_counter() - t:.2f} s")

        templates = [make_results(d / "t" / f"night-{i}", arms=dict(list(ARMS.items())[:2]), reps=3, seed=10 + i,
                                  fast=True) for i in range(5)]
        nights = d / "nights"
        nights.mkdir()
        start = dt.date(2022, 1, 1)
        t = time.perf_counter()
        h = d / "history"
        for i in range(args.folders):
            day = (start + dt.timedelta(days=i)).isoformat()
            f = nights / f"nightly-{day}"
            shutil.copytree(templates[i % len(templates)], f)
            meta = json.loads((f / "metadata.json").read_text())
            meta["created"] = f"{day}T02:00:00+0000"
            if i % 100 == 0:
                meta["build_manifest"]["qemu_sha256"]["patched"] = f"{i:064d}"
            (f / "metadata.json").write_text(json.dumps(meta))
            append_history(f, h)
        secs = time.perf_counter() - t
        print(f"history set-up: {args.folders} folders copied and appended in {secs:.1f} s "
              f"({1000 * secs / args.folders:.0f} ms per append)")
        def trend_and_plot():
            found = history_trend(h, metric="thp_lost_per_ballooned_mib")
            return found, plot_trend(found, d / "trend.png")
        (trend, png), secs = timed(trend_and_plot)
        text = format_trend(trend, png)
        print(f"history trend over {args.folders} folders ({len(trend.table)} lines, PNG): "
              f"{secs:.2f} s (target < 5 s)")
        print(text.splitlines()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
