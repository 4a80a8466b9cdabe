"""``balloon-harness`` command line. Expected failures print one line, not a traceback."""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.build import build_all
    arts = build_all()
    print(f"manifest: {arts.manifest}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="balloon-harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or fetch guest kernel, images, QEMU into the cache")
    b.set_defaults(func=_cmd_build)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"balloon-harness: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("balloon-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
