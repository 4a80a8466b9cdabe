"""``kernel-config``: the harness's guest kernel configuration fragment, for users who build
their kernel themselves.

The harness builds a kernel tree named by an arm (``kernel = { source = DIR }``) with this
fragment on ``allnoconfig`` (harness.artifacts.kernel_tree); a kernel built elsewhere boots
in the harness's guests when its configuration has every ``=y`` of it:

    balloon-harness kernel-config > harness.config
    scripts/kconfig/merge_config.sh -m .config harness.config && make olddefconfig
"""

from __future__ import annotations

import argparse
import sys


def _cmd_kernel_config(args: argparse.Namespace) -> int:
    from harness.artifacts.kernel_tree import fragment_text, required_symbols

    if args.required:
        sys.stdout.write("".join(f"{sym}\n" for sym in required_symbols()))
    else:
        sys.stdout.write(fragment_text())
    return 0


def register(sub) -> None:
    k = sub.add_parser("kernel-config", help="print the guest kernel's configuration fragment (for make olddefconfig)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--required", action="store_true",
                   help="only the symbols a guest kernel must have built in, one a line")
    k.set_defaults(func=_cmd_kernel_config)
