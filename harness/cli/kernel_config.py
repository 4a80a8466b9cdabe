"""``kernel-config``: the harness's guest kernel configuration fragment, for users who build
their kernel themselves.

The fragment states what the guests need by meaning (``# need:`` lines), each spelled as
Linux 6.1 spells it (the default stack's kernel) and, where later kernels renamed the
symbols, as they do (``# or:`` lines; Linux 7.2's ``BALLOON``/``BALLOON_MIGRATION``). With
``--tree DIR`` it is resolved to the symbols DIR's Kconfig defines; a tree that has no
spelling of a requirement is refused, naming it and the symbols tried.

The harness builds a kernel tree named by an arm (``kernel = { source = DIR }``) with this
fragment, resolved for that tree, on ``allnoconfig`` (harness.artifacts.kernel_tree); a
kernel built elsewhere boots in the harness's guests when its configuration has every
``=y`` of it:

    balloon-harness kernel-config --tree ~/linux > harness.config
    scripts/kconfig/merge_config.sh -m .config harness.config && make olddefconfig
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_kernel_config(args: argparse.Namespace) -> int:
    from harness.artifacts.kernel_tree import (
        fragment_for,
        fragment_text,
        require_linux_tree,
        required_symbols,
        resolution_for,
    )

    tree = require_linux_tree(args.tree) if args.tree is not None else None
    if args.required:
        sys.stdout.write("".join(f"{sym}\n" for sym in required_symbols(resolution_for(tree))))
    elif tree is not None:
        sys.stdout.write(fragment_for(tree))
    else:
        sys.stdout.write(fragment_text())
    return 0


def register(sub) -> None:
    k = sub.add_parser("kernel-config", help="print the guest kernel's configuration fragment (for make olddefconfig)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--tree", type=Path, metavar="DIR",
                   help="resolve the fragment for this Linux source tree's Kconfig (default: the default "
                        "stack's kernel, Linux 6.1)")
    k.add_argument("--required", action="store_true",
                   help="only the symbols a guest kernel must have built in, one a line")
    k.set_defaults(func=_cmd_kernel_config)
