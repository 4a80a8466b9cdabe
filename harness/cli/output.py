"""The terminal: where the library's log records go, and how loud.

Library modules log with ``logging.getLogger(__name__)`` and never print; the CLI calls
:func:`configure` once with ``-v``/``-q``. Records go to stderr as ``[name] message``
lines (the build's and the runner's progress), so stdout keeps only a command's result
(tables, paths) and can be piped. Progress over runs goes through :func:`progress`
(tqdm), which draws a bar on a terminal and stays silent in a pipe or a CI log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG
# Third-party loggers that narrate every packet or connection: shown only with -vv.
CHATTY = ("paramiko", "qemu.qmp", "asyncio", "matplotlib", "PIL")


class _Short(logging.Formatter):
    """``[build] message``: the harness package's second name part, as the old printers did."""

    def format(self, record: logging.LogRecord) -> str:
        parts = record.name.split(".")
        who = parts[1] if parts[0] == "harness" and len(parts) > 1 else parts[0]
        text = super().format(record)
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"[{who}] {prefix}{text}"


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is at the time of the record (a test's
    capture, a redirect), not to the stream it was created with, which may be closed by then."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(verbosity: int = 0) -> None:
    """``verbosity``: -1 quiet (warnings only), 0 normal, 1 debug of the harness, 2 also chatty libraries."""
    level = QUIET if verbosity < 0 else (NORMAL if verbosity == 0 else VERBOSE)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_balloon_harness", False):
            root.removeHandler(h)
    handler = _Stderr()
    handler.setFormatter(_Short("%(message)s"))
    handler._balloon_harness = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    # paramiko logs every refused connection while a guest boots and SSH is polled: expected
    # noise, not a warning (the harness says itself when a guest never answers)
    logging.getLogger("paramiko.transport").setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL)


@contextmanager
def progress(total: int, what: str, **kwargs: Any) -> Iterator[Optional[Any]]:
    """A tqdm bar over ``total`` items on a terminal; None (no bar) in a pipe or CI log."""
    if not sys.stderr.isatty() or total <= 1:
        yield None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    # log records are written above the bar (tqdm.write), not through it
    with logging_redirect_tqdm():
        bar = tqdm(total=total, desc=what, unit="run", file=sys.stderr, leave=False, **kwargs)
        try:
            yield bar
        finally:
            bar.close()


def interactive() -> bool:
    """Whether a person watches: the tables so far go to a terminal, not to a log."""
    return sys.stdout.isatty()


def write_above(bar: Optional[Any], text: str) -> None:
    """Print ``text`` to stdout without tearing the progress bar (cleared, then redrawn)."""
    if bar is None:
        print(text, flush=True)
        return
    from tqdm import tqdm
    with tqdm.external_write_mode(file=sys.stderr):
        print(text, flush=True)
