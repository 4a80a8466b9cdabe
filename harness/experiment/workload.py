"""Background workloads that the harness starts in the guest itself and keeps an eye on.

Why not let the workload daemonize: a tool that detaches with a plain ``fork()``
and writes to its stdout afterwards dies with SIGPIPE once the SSH channel that
started it has closed (vm-scalability's ``usemem -d`` does exactly that), and the
guest's memory is silently free again: every later figure would describe an idle
guest. So the harness detaches the workload itself: its own session, stdin from
/dev/null, output to a log file in the guest, its PID recorded, and its exit
status written by the wrapper shell when it ends. Before and after every later
step the runner asks whether it still runs; a dead workload fails the run with
its exit status and the last lines of its log.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from harness.errors import GuestCommandError, WorkloadDied
from harness.guest.ssh import GuestSSH

LOG_DIR = "/var/log"
STATUS_DIR = "/run"
LOG_TAIL_LINES = 20


@dataclass
class BackgroundWorkload:
    """One detached workload in the guest: ``start``, ``wait_ready``, ``check``, ``fetch_log``."""

    ssh: GuestSSH
    label: str
    command: str
    index: int
    pid: Optional[int] = None

    @property
    def slug(self) -> str:
        return f"bh-workload-{self.index}"

    @property
    def log_path(self) -> str:
        return f"{LOG_DIR}/{self.slug}.log"

    @property
    def status_path(self) -> str:
        return f"{STATUS_DIR}/{self.slug}.status"

    def start(self) -> int:
        """Start the command detached (setsid, stdin /dev/null, output to the log); return its PID."""
        # A subshell: the command's own `exit` must not skip writing its status.
        inner = f"(\n{self.command}\n)\necho $? > {shlex.quote(self.status_path)}"
        line = (f"rm -f {shlex.quote(self.status_path)}; "
                f"setsid sh -c {shlex.quote(inner)} </dev/null >{shlex.quote(self.log_path)} 2>&1 & echo $!")
        out = self.ssh.run(line, timeout=30).stdout.strip()
        if not out.isdigit():
            raise WorkloadDied(f"workload {self.label!r} did not start: `{self.command}` printed {out!r}")
        self.pid = int(out)
        return self.pid

    def state(self) -> tuple[bool, Optional[int], str]:
        """(running, exit status if it ended, log tail if it ended) in one SSH round trip."""
        q = shlex.quote
        out = self.ssh.run(
            f"if kill -0 {self.pid} 2>/dev/null && [ ! -e {q(self.status_path)} ]; then echo RUNNING; "
            f"else echo ENDED; cat {q(self.status_path)} 2>/dev/null || echo '?'; echo '--'; "
            f"tail -n {LOG_TAIL_LINES} {q(self.log_path)} 2>/dev/null; fi", timeout=30).stdout
        lines = out.splitlines()
        if lines and lines[0] == "RUNNING":
            return True, None, ""
        status = lines[1].strip() if len(lines) > 1 else "?"
        tail = "\n".join(lines[3:]) if len(lines) > 3 else ""
        return False, int(status) if status.lstrip("-").isdigit() else None, tail

    def check(self, when: str) -> None:
        """Raise :class:`WorkloadDied` (exit status, log tail) unless the workload still runs."""
        running, status, tail = self.state()
        if not running:
            how = f"exit status {status}" if status is not None else "no exit status (killed?)"
            raise WorkloadDied(f"background workload {self.label!r} (`{self.command}`, pid {self.pid}) "
                               f"is not running {when}: {how}\n--- last lines of its log "
                               f"({self.log_path}) ---\n{tail}")

    def stop(self, timeout: float = 30.0) -> float:
        """End the workload (SIGTERM to its whole session, the harness started it with setsid)
        and wait until it is gone; returns the seconds it took. Its memory is free after this."""
        t0 = time.monotonic()
        self.ssh.run(f"kill -TERM -- -{self.pid} 2>/dev/null; true", timeout=30)
        while self.state()[0]:
            if time.monotonic() - t0 > timeout:
                self.ssh.run(f"kill -KILL -- -{self.pid} 2>/dev/null; true", timeout=30)
                raise WorkloadDied(f"background workload {self.label!r} (pid {self.pid}) did not end "
                                   f"within {timeout:.0f}s of SIGTERM; killed")
            time.sleep(0.2)
        return time.monotonic() - t0

    def wait_ready(self, pattern: Optional[str], timeout: float,
                   sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until the log matches ``pattern`` (its memory is in place); returns the seconds.

        Without a pattern the workload counts as ready at once. Fails with its log when it
        ends first or ``timeout`` passes.
        """
        t0 = time.monotonic()
        if not pattern:
            return 0.0
        regex = re.compile(pattern)
        while True:
            log = self.ssh.run(f"cat {shlex.quote(self.log_path)} 2>/dev/null; true", timeout=30).stdout
            if regex.search(log):
                return time.monotonic() - t0
            self.check(f"while waiting for it to print /{pattern}/")
            if time.monotonic() - t0 > timeout:
                raise WorkloadDied(f"background workload {self.label!r} did not print /{pattern}/ within "
                                   f"{timeout:.0f}s\n--- its log so far ---\n{log[-2000:]}")
            sleep(0.5)

    def fetch_log(self, dest: Path) -> Optional[Path]:
        """Copy the guest log into ``dest`` (the run folder); None when the guest cannot say."""
        try:
            text = self.ssh.run(f"cat {shlex.quote(self.log_path)}", timeout=30, check=False).stdout
        except GuestCommandError:
            return None
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{self.slug}.log"
        path.write_text(text)
        return path


_USEMEM_SPEED = re.compile(r"^\d+ bytes / \d+ usecs = (\d+) KB/s$", re.M)


def usemem_throughput_mb_s(output: str) -> float:
    """The write speed usemem printed, summed over its tasks (MB/s); the "read again" lines
    of ``-Z`` are not counted. Raises ValueError when the output has no such line."""
    speeds = [int(m.group(1)) for m in _USEMEM_SPEED.finditer(output)]
    if not speeds:
        raise ValueError("no usemem throughput line ('<bytes> bytes / <usecs> usecs = <KB/s> KB/s') in the output")
    return sum(speeds) / 1000
