"""Running long build commands: a log file each, progress while they run, a useful failure.

A user watching ``balloon-harness build`` must see what is happening and where
the log is; when a step fails they get its last lines and the exact command to
re-run by hand, not a Python traceback.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import BuildError

HEARTBEAT_SECONDS = 20.0


log = logging.getLogger("harness.build")


def say(message: str) -> None:
    """One progress record of the build (logger ``harness.build``; the CLI shows it on stderr)."""
    log.info(message)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# A compiler's or linker's diagnostics (gcc, clang, ld): with parallel jobs, make and ninja go
# on with other jobs after the first error, so the log's last lines may not show it.
_DIAGNOSTIC = re.compile(r"(: (fatal )?error: |: undefined reference to |^Error: |^ERROR: )")


def errors(path: Path, since: int = 0, most: int = 12) -> str:
    """The first diagnostic lines of ``path`` after byte ``since``, each with the two lines
    after it (the source line and its caret), at most ``most`` lines; empty when none."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    picked: list[str] = []
    for i, line in enumerate(lines):
        if _DIAGNOSTIC.search(line):
            picked += [x for x in lines[i:i + 3] if x not in picked[-3:]]
            if len(picked) >= most:
                break
    return "\n".join(picked[:most])


def _fmt_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def run_step(title: str, cmd: Sequence[str | Path], log: Path, cwd: Path | None = None,
             env: Mapping[str, str] | None = None, quiet: bool = False) -> float:
    """Run ``cmd`` with output appended to ``log``; return its wall time.

    Prints the step and its log path, a heartbeat while it runs, and on failure
    raises :class:`BuildError` with the log tail and the command to re-run.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pretty = shlex.join(str(c) for c in cmd)
    if not quiet:
        say(f"{title} (log: {log})")
    start = time.monotonic()
    since = log.stat().st_size if log.exists() else 0
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            say(f"  ... {title}: {_fmt_elapsed(time.monotonic() - start)} elapsed")

    beat = threading.Thread(target=heartbeat, daemon=True)
    if not quiet:
        beat.start()
    try:
        with open(log, "a") as out:
            out.write(f"\n$ (cd {cwd or '.'} && {pretty})\n")
            out.flush()
            proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise BuildError(f"{title}: command not found: {cmd[0]} ({e})") from None
    finally:
        done.set()
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        diagnostics = errors(log, since)
        last = tail(log)
        first = f"--- the first errors in {log} ---\n{diagnostics}\n" if diagnostics and diagnostics not in last else ""
        raise BuildError(
            f"{title} failed (exit {proc.returncode}) after {_fmt_elapsed(elapsed)}.\n"
            f"{first}--- last lines of {log} ---\n{last}\n---\n"
            f"re-run by hand: cd {shlex.quote(str(cwd or Path.cwd()))} && {pretty}")
    if not quiet:
        say(f"  done: {title} in {_fmt_elapsed(elapsed)}")
    return elapsed


def capture(cmd: Sequence[str | Path], what: str) -> str:
    """Run a short query command and return its stdout; a failure names the command."""
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BuildError(f"{what}: command not found: {cmd[0]}") from None
    if proc.returncode != 0:
        raise BuildError(f"{what} failed: {shlex.join(str(c) for c in cmd)}\n{proc.stderr.strip()}")
    return proc.stdout
