"""Print cold and warm `balloon-harness build` wall times (figures, not assertions).

    .venv/bin/python benchmarks/build_times.py                    # warm, default stack (your cache)
    .venv/bin/python benchmarks/build_times.py --stack trixie     # warm, another stack (builds it once)
    .venv/bin/python benchmarks/build_times.py --cold [--stack S] # also cold: a fresh, empty cache

Cold builds everything (kernel .deb, initramfs, QEMU from source, the module) into a
temporary cache; warm runs the same build again and should only check keys.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

HARNESS = [sys.executable, "-m", "harness", "build"]


def timed_build(env: dict[str, str], stacks: list[str]) -> float:
    start = time.monotonic()
    subprocess.run([*HARNESS, *[a for s in stacks for a in ("--stack", s)]], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also time a build into an empty cache")
    ap.add_argument("--stack", action="append", default=[], help="guest stack(s) to build (default: bookworm)")
    args = ap.parse_args()
    stacks = args.stack or ["bookworm"]
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs; stacks: {', '.join(stacks)}")
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="bh-cold-cache-") as tmp:
            env = {**os.environ, "BALLOON_HARNESS_CACHE": tmp}  # the pins of stacks.lock, built afresh
            print(f"cold build: {timed_build(env, stacks):7.1f} s  (empty cache {tmp})")
            print(f"warm build: {timed_build(env, stacks):7.1f} s  (same cache, second time)")
    else:
        print(f"warm build: {timed_build(dict(os.environ), stacks):7.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
