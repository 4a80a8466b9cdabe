"""Print build wall times: warm, cold (what `reproduce` needs, then the rest), and QEMU's
configure flags before and after issue 22 (figures, not assertions).

    .venv/bin/python benchmarks/build_times.py                    # warm, default stack (your cache)
    .venv/bin/python benchmarks/build_times.py --stack trixie     # warm, another stack (builds it once)
    .venv/bin/python benchmarks/build_times.py --cold [--cache DIR] [--serial]
    .venv/bin/python benchmarks/build_times.py --qemu-flags [--compile]

--cold builds into an empty cache (a temporary one, or --cache DIR, which must not exist):
first only what the RFC scenario's arms need (what `make reproduce` builds on a fresh
machine: the guest kernel, the stock and RFC-port modules and images, the stock and
RFC-port QEMU), then everything else `balloon-harness build` makes (the designs), then
the same again warm. --serial builds the QEMUs after the guest side instead of beside it
(lever 3's before). The stacks' pins come from stacks.lock, downloads from Debian's archive.

--qemu-flags configures the default stack's QEMU source (from your cache) with the flags
before issue 22 and with today's (harness.artifacts.qemu), counts ninja's steps for
qemu-system-x86_64, and with --compile builds both, one after the other (minutes each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HARNESS = [sys.executable, "-m", "harness", "build"]
# QEMU's configure flags before issue 22 (the default devices and features, a few disabled).
FLAGS_BEFORE = ("--target-list=x86_64-softmmu", "--disable-docs", "--disable-werror", "--enable-slirp",
                "--enable-fdt=system", "--disable-gtk", "--disable-sdl", "--disable-vnc", "--disable-tools",
                "--disable-guest-agent", "--disable-install-blobs", "--disable-capstone")
SCENARIO_BUILD = """
import sys, time
from harness.artifacts.build import build_all
from harness.artifacts.needs import needs_of
from harness.experiment.scenario import load_scenario
from harness.resources import scenario_path
start = time.monotonic()
build_all(needs=needs_of(load_scenario(scenario_path("rfc-v1.toml")).arms), overlap={overlap})
print(time.monotonic() - start)
"""


def timed_build(env: dict[str, str], stacks: list[str]) -> float:
    start = time.monotonic()
    subprocess.run([*HARNESS, *[a for s in stacks for a in ("--stack", s)]], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def timed_scenario_build(env: dict[str, str], overlap: bool) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", SCENARIO_BUILD.format(overlap=overlap)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def cold(args: argparse.Namespace) -> None:
    tmp = None
    if args.cache:
        cache = Path(args.cache)
        if cache.exists():
            raise SystemExit(f"{cache} exists: --cold wants an empty cache")
    else:
        tmp = tempfile.mkdtemp(prefix="bh-cold-cache-", dir="/var/tmp")
        cache = Path(tmp)
    env = {**os.environ, "BALLOON_HARNESS_CACHE": str(cache)}
    try:
        load = os.getloadavg()[0]
        scenario = timed_scenario_build(env, overlap=not args.serial)
        rest = timed_build(env, ["bookworm"])
        warm = timed_build(env, ["bookworm"])
        print(f"cold, what reproduce needs (stock + RFC port):  {scenario:7.1f} s  "
              f"({'QEMU after the guest side' if args.serial else 'QEMU beside the guest side'}; "
              f"load {load:.1f} at start)")
        print(f"cold, the rest of `build` (the designs):        {rest:7.1f} s")
        print(f"warm `build`:                                   {warm:7.1f} s")
        manifest = json.loads((cache / "manifest.json").read_text())
        print(f"QEMU configure: {' '.join(manifest['inputs'].get('patched_qemu', {}).get('configure', []))}")
    finally:
        if tmp and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp:
            print(f"cache kept: {tmp}")


def qemu_flags(args: argparse.Namespace) -> None:
    from harness.artifacts import cache as hcache
    from harness.artifacts.qemu import CONFIGURE_FLAGS, write_device_config
    sources = sorted((hcache.cache_root() / "qemu-source").glob("*/qemu-*/"))
    if not sources:
        raise SystemExit("no QEMU source in the cache: run `balloon-harness build` first")
    src = sources[0]
    with tempfile.TemporaryDirectory(prefix="bh-qemu-flags-", dir="/var/tmp") as tmp:
        tree = Path(tmp) / "src"
        shutil.copytree(src, tree, symlinks=True)
        write_device_config(tree, src.name.removeprefix("qemu-"))
        for label, flags in (("before issue 22", FLAGS_BEFORE), ("now", CONFIGURE_FLAGS)):
            build = Path(tmp) / label.replace(" ", "-")
            build.mkdir()
            subprocess.run([tree / "configure", *flags], cwd=build, check=True, stdout=subprocess.DEVNULL)
            steps = subprocess.run(["ninja", "-n", "qemu-system-x86_64"], cwd=build, check=True,
                                   capture_output=True, text=True).stdout.count("\n")
            line = f"QEMU {src.name} {label:<16} {steps:5d} ninja steps"
            if args.compile:
                start, load = time.monotonic(), os.getloadavg()[0]
                subprocess.run(["ninja", "-j", str(os.cpu_count() or 2), "qemu-system-x86_64"], cwd=build,
                               check=True, stdout=subprocess.DEVNULL)
                line += f", compiled in {time.monotonic() - start:6.1f} s (load {load:.1f} at start)"
            print(line, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also time builds into an empty cache")
    ap.add_argument("--cache", help="with --cold: the empty cache to build into (kept)")
    ap.add_argument("--keep", action="store_true", help="with --cold: keep the temporary cache")
    ap.add_argument("--serial", action="store_true", help="with --cold: QEMU after the guest side (no overlap)")
    ap.add_argument("--qemu-flags", action="store_true", help="QEMU's ninja steps with the flags before/now")
    ap.add_argument("--compile", action="store_true", help="with --qemu-flags: also compile both")
    ap.add_argument("--stack", action="append", default=[], help="guest stack(s) to build (default: bookworm)")
    args = ap.parse_args()
    stacks = args.stack or ["bookworm"]
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"stacks: {', '.join(stacks)}")
    if args.qemu_flags:
        qemu_flags(args)
    elif args.cold:
        cold(args)
    else:
        print(f"warm build: {timed_build(dict(os.environ), stacks):7.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
