"""``upstream-trees``: make the Linux and QEMU git trees the upstream series runs on.

The upstream series (guest-kernel-patches/upstream/, qemu-patches/upstream/) is built and run
by scenarios/upstream-series.toml from two git trees beside the checkout: linux-upstream
(Debian's linux-source-7.2 7.2.13-1, the kernel series on a branch `upstream`) and
qemu-upstream (Debian's QEMU 10.2.2 source, debian/patches applied, the QEMU series on a
branch `upstream`). This makes both: it fetches and unpacks what the cache lacks, clones the
cache's git trees (hard links: seconds), checks out Debian's source, applies each series with
`git am`, and prints where the trees are and the command that runs the scenario. An existing
tree is never changed: one that already is the series on Debian's source is kept (a re-run is
harmless), anything else is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_upstream_trees(args: argparse.Namespace) -> int:
    from harness.artifacts.upstream_trees import (
        BRANCH,
        NEXT_COMMAND,
        SCENARIO,
        make_upstream_trees,
        scenario_reaches,
    )

    trees = make_upstream_trees(args.dest)
    for tree in trees:
        state = "made" if tree.made else "already there, kept"
        print(f"{tree.what}: {tree.path} ({state}): branch {BRANCH} at {tree.head[:12]}, "
              f"{len(tree.subjects)} patches on Debian's source {tree.base[:12]}")
        for title in tree.subjects:
            print(f"    {title}")
    dest = trees[0].path.parent
    if not scenario_reaches(dest):
        print(f"note: scenarios/{SCENARIO} reads ../../linux-upstream and ../../qemu-upstream (relative to "
              f"scenarios/): edit its kernel and qemu source paths to {dest}/...")
    print(f"next: {NEXT_COMMAND}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("upstream-trees", help="make the Linux 7.2 and QEMU 10.2 git trees the upstream series runs on",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, metavar="DIR",
                   help="where to make linux-upstream/ and qemu-upstream/ (default: the checkout's parent "
                        "directory, where scenarios/upstream-series.toml looks for them)")
    p.set_defaults(func=_cmd_upstream_trees)
