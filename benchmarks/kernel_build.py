"""Build time of the minimal guest kernel from a Linux tree (issue 19): cold, then warm.

    .venv/bin/python benchmarks/kernel_build.py [--tree DIR | --stack NAME] [--cache DIR]

The tree is the test suite's user's tree (Debian's linux-source of the default stack with
the RFC port as a commit, tests/own_trees.py; ``--stack sid``: Linux 7.2 with sid's port)
unless --tree names one. Cold: the build into
``--cache`` (default: a new empty folder, removed after; give the shared cache to keep the
kernel for the tests and boot_time.py --source-kernel); warm: the same call again, which
only identifies the tree (git) and finds the build. Prints the figures, the load average
(the host is shared: wall time under load is not idle time) and the CPU seconds of the
compile (user + sys of the children), which load does not inflate much.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.artifacts.kernel_tree import build_kernel_tree, cached_kernel_tree  # noqa: E402
from harness.artifacts.trees import KernelTree  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", help="a Linux tree (default: the tests' Debian 6.1 tree with the RFC port)")
    p.add_argument("--stack", default="bookworm",
                   help="the stack whose linux-source makes the test tree (bookworm: 6.1, trixie: 6.12, sid: 7.2)")
    p.add_argument("--cache", help="the cache to build into (default: a new empty one, removed after)")
    args = p.parse_args()
    if args.tree:
        tree = Path(args.tree)
    else:
        from own_trees import linux_tree
        tree = linux_tree(args.stack)   # made in the shared cache once (a download and a git commit)
    temporary = args.cache is None
    root = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bh-kernel-build-"))
    os.environ["BALLOON_HARNESS_CACHE"] = str(root)
    try:
        if cached_kernel_tree(KernelTree(tree)) is not None:
            print(f"{root} has this kernel already: no cold figure (give a new --cache)", file=sys.stderr)
            return 1
        load = os.getloadavg()[0]
        cpu0, t0 = _children_cpu(), time.monotonic()
        kernel = build_kernel_tree(KernelTree(tree))
        cold, cold_cpu = time.monotonic() - t0, _children_cpu() - cpu0
        t0 = time.monotonic()
        build_kernel_tree(KernelTree(tree))
        warm = time.monotonic() - t0
        size = kernel.vmlinuz.stat().st_size
        symbols = sum(1 for line in kernel.config.read_text().splitlines() if line.endswith("=y"))
        print(f"tree: {kernel.identity.describe() if kernel.identity else tree}")
        print(f"kernel {kernel.release}: bzImage {size / 2**20:.1f} MiB, {symbols} symbols =y, {kernel.compiler}")
        print(f"cold build: {cold:.0f} s wall, {cold_cpu:.0f} CPU s (make -j{os.cpu_count()}; load average "
              f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
        print(f"warm (cached, nothing built): {warm:.2f} s")
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
