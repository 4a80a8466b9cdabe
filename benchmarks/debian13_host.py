"""Print the per-phase wall times of the Debian 13 host check (figures, not assertions).

    sudo .venv/bin/python benchmarks/debian13_host.py            # reuses the trixie root
    sudo .venv/bin/python benchmarks/debian13_host.py --fresh    # a cold root (20-40 min)

Runs ``tools/debian13-host-check.sh`` (debootstrap a trixie root, ``make bootstrap``,
``balloon-harness build``, an rfc-v1 run of two arms under TCG, all inside it) and prints
the time of each phase as the script reported it; its full output goes to a log file.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", action="store_true", help="delete the trixie root first (a cold start)")
    args = ap.parse_args()
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs")
    fd, name = tempfile.mkstemp(prefix="debian13-host-check-", suffix=".log")
    log = Path(name)
    start = time.monotonic()
    with os.fdopen(fd, "w") as out:
        proc = subprocess.run(["bash", str(SCRIPT), *(["--fresh"] if args.fresh else [])],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    total = time.monotonic() - start
    phases = PHASE.findall(log.read_text(errors="replace"))
    for phase, status, seconds in phases:
        print(f"{phase:12s} {float(seconds):8.1f} s  {status}")
    print(f"{'total':12s} {total:8.1f} s  (exit {proc.returncode}; log {log})")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
