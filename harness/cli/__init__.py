"""The command line: ``balloon-harness <command>``.

One module per group of commands, each with a ``register(subparsers)`` that adds its
commands (the one way a command is added: write the module, list it in
:data:`harness.cli.main.COMMAND_MODULES`). A command turns its argparse ``Namespace`` into a
request dataclass at once; nothing below the CLI sees a ``Namespace``. The CLI owns the
terminal: library code logs, :mod:`harness.cli.output` decides what of it is shown.
"""

from harness.cli.main import install_process_handlers, main, make_parser

__all__ = ["install_process_handlers", "main", "make_parser"]
