"""Do guests run at once give the same figures as guests run one at a time? (issue 22, lever 4)

    .venv/bin/python benchmarks/parallel_runs.py [--reps N] [--rounds R] [--jobs J] [--keep DIR]

Runs the RFC scenario (`reproduce`) into two folders, one guest at a time (`--jobs 1`) and
`--jobs J` guests at once, in R interleaved rounds (each round adds N/R repetitions of every
arm to each folder, with `--resume`), so both see the same host over the same hours. Then
per arm it asks the comparison core (harness.analysis.decide, as `compare` does) whether
each per-process headline figure moved, compares "reached k/n", and prints the wall time
of each mode. Host-wide figures (host AnonHugePages, /proc/vmstat deltas) are left out:
with several guests they mix the guests, by construction.

Exit 0 whatever it finds: it prints figures, it does not judge. docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The per-process headline figures: read from the QEMU process's own smaps_rollup.
FIGURES = ("thp_lost_per_ballooned_mib", "thp_lost_per_returned_mib", "returned_fraction", "settle_seconds")


def run_round(out: Path, reps: int, jobs: str) -> float:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "-q", "reproduce", "--out", str(out), "--reps",
                           str(reps), "--jobs", jobs, "--resume"], stdout=subprocess.DEVNULL)
    if proc.returncode not in (0, 1):      # 1: some run failed; its failure is a result here
        raise SystemExit(f"reproduce --jobs {jobs} exited {proc.returncode}")
    return time.monotonic() - start


def balloon_rows(out: Path):
    from harness.results.folder import open_folder
    s = open_folder(out).summary
    return s[s["kind"] == "balloon"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=6, help="repetitions of every arm in each mode (default 6)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--jobs", default="2", help="guests at once in the parallel mode (default 2)")
    ap.add_argument("--keep", type=Path, help="keep both results folders here")
    args = ap.parse_args()
    from harness.analysis.decide import decide

    tmp = tempfile.TemporaryDirectory(prefix="bh-parallel-")
    base = args.keep or Path(tmp.name)
    serial, parallel = base / "serial", base / "parallel"
    walls = {"serial": 0.0, "parallel": 0.0}
    per_round = max(1, args.reps // args.rounds)
    reps = 0
    while reps < args.reps:
        reps = min(args.reps, reps + per_round)
        walls["serial"] += run_round(serial, reps, "1")
        walls["parallel"] += run_round(parallel, reps, args.jobs)
        print(f"round to {reps} reps: serial {walls['serial']:.0f} s, --jobs {args.jobs} {walls['parallel']:.0f} s "
              f"so far (load {os.getloadavg()[0]:.1f})", flush=True)
    a, b = balloon_rows(serial), balloon_rows(parallel)
    print(f"\n{os.cpu_count()} CPUs; {args.reps} reps per arm and mode; wall: serial {walls['serial']:.0f} s, "
          f"--jobs {args.jobs} {walls['parallel']:.0f} s ({walls['serial'] / walls['parallel']:.2f}x)")
    print(f"{'arm':<11}{'figure':<28}{'serial':>9}{'parallel':>10}  {'shift [95% CI]':<26}{'p':>7}  verdict")
    for arm in a["arm"].drop_duplicates():
        ra, rb = a[a["arm"] == arm], b[b["arm"] == arm]
        ka, kb = int(ra["reached"].fillna(False).sum()), int(rb["reached"].fillna(False).sum())
        test = fisher(ka, len(ra), kb, len(rb))
        print(f"{arm:<11}{'reached':<28}{f'{ka}/{len(ra)}':>9}{f'{kb}/{len(rb)}':>10}  {test}")
        for fig in FIGURES:
            d = decide(fig, ra[fig], rb[fig])
            ci = f"{fmt_number(d.shift)} [{fmt_number(d.ci_low)}, {fmt_number(d.ci_high)}]"
            print(f"{'':<11}{fig:<28}{fmt_number(d.median_a):>9}{fmt_number(d.median_b):>10}  {ci:<26}"
                  f"{fmt_number(d.p_value):>7}  {d.verdict_text()}")
    if args.keep:
        print(f"folders kept: {serial} {parallel}")
    return 0


def fmt_number(v: float) -> str:
    return f"{v:.3g}"


def fisher(ka: int, na: int, kb: int, nb: int) -> str:
    """Fisher's exact test of reached k/n between the modes (two-sided)."""
    from scipy.stats import fisher_exact
    _, p = fisher_exact([[ka, na - ka], [kb, nb - kb]])
    return f"Fisher p {p:.2f}"


if __name__ == "__main__":
    sys.exit(main())
