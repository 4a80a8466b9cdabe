"""Print how fast each mechanism shrinks and grows a guest, and what it costs in footprint.

    .venv/bin/python benchmarks/mechanism_speed.py [--reps N]   # default: 1 repetition

Runs `scenarios/mechanisms-phases.toml` (2 GiB guest: 1 GiB shrunk and grown back, first
untouched, then after the guest touched 1.5 GiB; then the demand rises and falls) into a
temporary folder with `--jobs auto` and prints, per mechanism and step, the median time and
speed. Two clocks: `settle` polls QMP (or, for free page reporting, the QEMU process's RSS)
at the scenario's host_sample_hz, 0.2 s resolution; `event` is the time to the last QMP size
event by QEMU's own microsecond timestamps (none for free page reporting). Under TCG the
speeds are the emulator's, not KVM's (HyperAlloc's KVM figures for a 18 GiB reclaim:
balloon 21 s, virtio-mem 0.58 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "mechanisms-phases.toml"
STEPS = ("shrink untouched", "grow untouched", "shrink touched", "grow touched", "idle")


def print_table(s, reps: int) -> None:
    """The medians per mechanism and step, and the footprint per run."""
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs; accel: "
          f"{', '.join(sorted(set(s['accel'])))}; {reps} rep(s), medians")
    print(f"{'mechanism':<21}{'step':<18}{'settle s':>9}{'event s':>9}{'moved GiB/s':>12}"
          f"{'returned GiB/s':>15}{'RSS freed MiB':>14}")
    for (arm, step), g in s[s["step"].isin(STEPS)].groupby(["arm", "step"], sort=False):
        med = g.median(numeric_only=True)
        print(f"{arm:<21}{step:<18}{med['settle_seconds']:9.2f}{med['event_seconds']:9.3f}"
              f"{med['moved_gib_per_s']:12.2f}{med['returned_gib_per_s']:15.2f}{med['rss_freed_kib'] / 1024:14.0f}")
    runs = s.groupby(["arm", "run_id"])[["rss_gib_min", "thp_gib_min"]].sum().groupby("arm").median()
    print("footprint per run (sum over its steps), GiB*min:")
    for arm, row in runs.iterrows():
        print(f"  {arm:<21} QEMU RSS {row['rss_gib_min']:.2f}  QEMU AnonHugePages {row['thp_gib_min']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    from harness.results import load_results
    with tempfile.TemporaryDirectory(prefix="bh-bench-") as tmp:
        out = Path(tmp) / "out"
        subprocess.run([sys.executable, "-m", "harness", "run", str(SCENARIO), "--out", str(out), "--reps",
                        str(args.reps), "--jobs", "auto"], check=True, stdout=subprocess.DEVNULL)
        res = load_results(out)
    print_table(res.summary, args.reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
