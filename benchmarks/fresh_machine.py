"""Fresh machine to the RFC table: `make reproduce` in a new Debian root (issue 22's first goal).

    sudo .venv/bin/python benchmarks/fresh_machine.py [--release bookworm|trixie] [--keep-root]

Debootstraps a minimal root of the release (not timed: the machine comes with its OS), copies
the repository's tracked files in, installs what a user has before the README (make, git,
python3), empties the harness cache, and times `make reproduce` there: system packages, the
venv, the build of what the RFC's arms need, its 9 runs and the table, as `make bootstrap`
then `make reproduce` (the second skips what the first did). Through
``tools/debian13-host-check.sh --make-reproduce``; its full output goes to a log file.
The root is deleted first (``--fresh``) unless --keep-root. Prints figures, never judges:
the goal line says how far from 5 minutes it is.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "debian13-host-check.sh"
PHASE = re.compile(r"phase=(\S+) status=(\S+) seconds=([0-9.]+)")
GOAL_SECONDS = 300.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", default="bookworm", choices=("bookworm", "trixie"))
    ap.add_argument("--keep-root", action="store_true",
                    help="reuse a complete root (its harness cache is emptied anyway)")
    args = ap.parse_args()
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    fd, name = tempfile.mkstemp(prefix=f"fresh-{args.release}-", suffix=".log")
    log = Path(name)
    start = time.monotonic()
    cmd = ["bash", str(SCRIPT), "--release", args.release, "--make-reproduce", *([] if args.keep_root else ["--fresh"])]
    with os.fdopen(fd, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env={**os.environ, "DEBIAN13_NICE": "0"})
    total = time.monotonic() - start
    text = log.read_text(errors="replace")
    phases = {p: (s, float(sec)) for p, s, sec in PHASE.findall(text)}
    for phase, (status, seconds) in phases.items():
        print(f"{phase:12s} {seconds:8.1f} s  {status}")
    made = [p for p in ("bootstrap", "reproduce") if p in phases]
    if len(made) == 2:
        seconds = sum(phases[p][1] for p in made)
        verdict = "met" if seconds <= GOAL_SECONDS else "not met"
        print(f"fresh machine -> RFC table (make reproduce = bootstrap + build and runs): {seconds:.0f} s = "
              f"{seconds / 60:.1f} min (goal {GOAL_SECONDS / 60:.0f} min: {verdict})")
    print(f"{'total':12s} {total:8.1f} s  (exit {proc.returncode}; log {log})")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
