"""``balloon-harness``: build, run scenarios, reproduce the RFC, report, check the host.

Expected failures print one line (``balloon-harness: error: ...``), not a traceback.
"""

from __future__ import annotations

import argparse
import sys

from harness.cli import analysis, calibrate, doctor, kernel_config, output, review, runs, schema, trees
from harness.errors import HarnessError

# Each adds its commands with register(subparsers): a new command is a function in one of
# these (or a new module listed here), nothing else.
COMMAND_MODULES = (runs, calibrate, doctor, analysis, review, kernel_config, trees, schema)

# The documentation page of each command, under docs/ (built by `make docs` into site/, the
# same name with .html): its `--help` ends with it. tests/test_docs_reference.py fails on a
# command without one, and on an option without help.
COMMAND_DOCS = {
    "build": "stacks.md",
    "run": "scenarios.md",
    "reproduce": "getting-started.md",
    "report": "results.md",
    "doctor": "troubleshooting.md",
    "compare": "decisions.md",
    "check": "nightly-ci.md",
    "history": "nightly-ci.md",
    "merge": "nightly-ci.md",
    "cover-letter": "results.md",
    "review": "mechanisms.md",
    "kernel-config": "own-trees.md",
    "upstream-trees": "own-trees.md",
    "calibrate": "decisions-over-time.md",
    "schema": "scenarios.md",
}


def docs_line(command: str) -> str:
    """The last line of ``COMMAND --help``: where its documentation is (there is no public
    site: the pages are Markdown in docs/, and `make docs` builds them into site/)."""
    page = COMMAND_DOCS.get(command, "index.md")
    return f"docs: docs/{page} (built: site/{page[:-3]}.html)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its refusal kept to one line whatever the user typed (an argument
    with a newline or a carriage return in it is quoted with escapes)."""

    def error(self, message: str):
        if not message.isprintable():
            message = message.encode("unicode_escape").decode("ascii")
        super().error(message)


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="balloon-harness", description=__doc__)
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more detail on stderr (-vv: also the SSH/QMP libraries)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    for name, command in sub.choices.items():
        command.epilog = f"{command.epilog}\n\n{docs_line(name)}" if command.epilog else docs_line(name)
    return p


def install_process_handlers() -> None:
    """Process-wide hooks, owned by the program rather than the library: SIGTERM unwinds
    like Ctrl-C (every ``with Guest``/``Machine`` block stops its QEMU), and an atexit hook
    stops any machine still live. Only in the main thread (signal's own rule)."""
    import atexit
    import signal
    import threading

    from harness.vm.machine import stop_all_live

    atexit.register(stop_all_live)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _sigterm(signum, frame):
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, _sigterm)


def recover_host_leftovers() -> None:
    """Issue 29: undo what a killed balloon-harness left on the host (THP knobs it set, huge
    pages it reserved, hugetlbfs it mounted: harness.host.journal), and say so."""
    from harness.host import recover_leftovers

    for line in recover_leftovers():
        print(f"balloon-harness: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    output.configure(-1 if args.quiet else args.verbose)
    install_process_handlers()
    try:
        recover_host_leftovers()
        return args.func(args)
    except HarnessError as e:
        print(f"balloon-harness: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("balloon-harness: interrupted; finished runs are on disk (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
