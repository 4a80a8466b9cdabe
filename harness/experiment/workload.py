"""Step commands in the guest: each in a cgroup of its own, never on the SSH channel.

Why: a tool that detaches itself (vm-scalability's ``usemem -d`` forks, its parent
exits, the child prints later) used to die of SIGPIPE once the SSH channel that
started it closed, and the guest's memory was silently free again: every later
figure described an idle guest. So no step command talks to SSH. ``bh-step`` (a
small static program in the image, ``images/bh-step.c``) starts it in its own
session, in a new cgroup under ``/sys/fs/cgroup/bh`` with the memory controller
on, stdin from /dev/null, stdout and stderr to a log file in the guest; it is the
command's child subreaper, so it also records how every process the command left
behind ends (exit status or signal), in a status file the harness reads.

The cgroup is what the harness watches: processes still in it after the command
returned are that step's detached workload; the cgroup's own ``memory.current``
and ``memory.stat`` say what the workload holds, whatever it forks.
"""

from __future__ import annotations

import logging
import re
import shlex
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from harness.errors import GuestCommandError, UnsupportedGuest, WorkloadDied
from harness.guest.ssh import GuestSSH
from harness.procfs import is_int, is_uint
from harness.results.layout import within

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
STEP_CGROUPS = f"{CGROUP_ROOT}/bh"    # made by the image's init (images/rootfs/etc/bh-rc)
LOG_DIR = "/var/log/bh-steps"
STATUS_DIR = "/run/bh-steps"
BH_STEP = "/usr/bin/bh-step"
LOG_TAIL_LINES = 20
# Processes a command leaves behind that end within this long are its own clean-up,
# not a detached workload (a pipeline's last member, a helper finishing its write).
DETACH_GRACE_SECONDS = 1.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ProcessEnd:
    """How one process of a step command ended, as bh-step's wait() saw it."""

    pid: int
    role: str          # "main": the command itself; "orphan": a process it left behind
    how: str           # "exit" or "signal"
    value: int

    def describe(self) -> str:
        if self.how == "signal":
            try:
                name = f" ({signal.Signals(self.value).name})"
            except ValueError:
                name = ""
            what = f"killed by signal {self.value}{name}"
        else:
            what = f"exit status {self.value}"
        who = "the command" if self.role == "main" else "left running by it"
        return f"pid {self.pid} ({who}) {what}"

    @property
    def failed(self) -> bool:
        return self.how == "signal" or self.value != 0


@dataclass(frozen=True)
class CgroupMemory:
    """A cgroup's memory: ``memory.current`` and ``memory.stat`` anon, anon_thp, file (kB)."""

    current_kib: float
    anon_kib: float
    anon_thp_kib: float
    file_kib: float


@dataclass(frozen=True)
class CommandState:
    """What the guest says about one step command at one moment (one SSH round trip)."""

    exists: bool                      # the cgroup is there
    populated: bool                   # some process is in it
    pids: tuple[int, ...]
    main_pid: Optional[int]
    main_end: Optional[ProcessEnd]
    ends: tuple[ProcessEnd, ...]      # every process that ended, main included, in order
    done: bool                        # bh-step reaped the last process
    error: Optional[str]              # bh-step could not run the command
    memory: Optional[CgroupMemory]
    oom_kills: int                    # memory.events oom_kill: its processes the OOM killer took

    def why_ended(self, limit: int = 5) -> str:
        """The ends worth naming: failures first, the command's own end, then the last ones."""
        if self.error:
            return f"bh-step could not run it: {self.error}"
        if not self.ends:
            return "no exit status (the guest recorded none)"
        picked = [e for e in self.ends if e.failed][:limit] or list(self.ends[-limit:])
        text = "; ".join(e.describe() for e in picked)
        if len(self.ends) > len(picked):
            text += f" ({len(self.ends)} processes ended in all)"
        if self.oom_kills:
            text += f"; the OOM killer killed {self.oom_kills} of its processes (memory.events oom_kill)"
        return text


def _kib(value: str) -> float:
    return int(value) / 1024


def parse_state(text: str) -> CommandState:
    """Parse one command's block of :func:`state_script` output."""
    populated = exists = done = False
    pids: tuple[int, ...] = ()
    main_pid: Optional[int] = None
    main_end: Optional[ProcessEnd] = None
    ends: list[ProcessEnd] = []
    error: Optional[str] = None
    mem: dict[str, float] = {}
    oom = 0
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        words = rest.split()
        if key == "populated":
            exists, populated = True, rest.strip() == "1"
        elif key in ("current", "anon", "anon_thp", "file") and words and is_uint(words[0]):
            mem[key] = _kib(words[0])
        elif key == "oom_kill" and words and is_uint(words[0]):
            oom = int(words[0])
        elif key == "procs":
            pids = tuple(int(w) for w in words if is_uint(w))
        elif key == "start" and words and is_uint(words[0]):
            main_pid = int(words[0])
        elif key in ("main", "orphan") and len(words) == 3 and is_uint(words[0]) \
                and words[1] in ("exit", "signal") and is_int(words[2]):
            end = ProcessEnd(int(words[0]), key, words[1], int(words[2]))
            ends.append(end)
            if key == "main":
                main_end = end
        elif key == "done":
            done = True
        elif key == "error":
            error = rest.strip()
    memory = (CgroupMemory(mem.get("current", 0.0), mem.get("anon", 0.0), mem.get("anon_thp", 0.0),
                           mem.get("file", 0.0)) if exists and "current" in mem else None)
    return CommandState(exists, populated, pids, main_pid, main_end, tuple(ends), done, error, memory, oom)


_BLOCK = "== bh-step "


@dataclass
class StepCommand:
    """One step's command in the guest: ``start``, ``wait`` (run steps), ``state``, ``stop``, logs.

    ``index`` numbers the step commands of a run (1, 2, ...): it names the cgroup
    (``/sys/fs/cgroup/bh/step-N``), the log (``/var/log/bh-steps/step-N.log``) and the
    status file in the guest.
    """

    ssh: GuestSSH
    label: str
    command: str
    index: int
    kind: str                       # the step kind that started it: run or background
    main_pid: Optional[int] = None

    @property
    def slug(self) -> str:
        return f"step-{self.index}"

    @property
    def cgroup(self) -> str:
        return f"{STEP_CGROUPS}/{self.slug}"

    @property
    def log_path(self) -> str:
        return f"{LOG_DIR}/{self.slug}.log"

    @property
    def status_path(self) -> str:
        return f"{STATUS_DIR}/{self.slug}.status"

    def start(self) -> int:
        """Start the command under bh-step (own session and cgroup, stdin /dev/null, output to
        the log); return its PID once it runs in its cgroup."""
        q = shlex.quote
        tries = int(10 / 0.05)
        out = self._guest(
            f"mkdir -p {LOG_DIR} {STATUS_DIR}; rm -f {q(self.status_path)}; "
            f"{BH_STEP} {q(self.cgroup)} {q(self.status_path)} {q(self.command)} "
            f"</dev/null >{q(self.log_path)} 2>&1 & "
            f"i=0; while ! grep -qE '^(start|error) ' {q(self.status_path)} 2>/dev/null "
            f"&& [ $i -lt {tries} ]; do usleep 50000; i=$((i+1)); done; "
            f"cat {q(self.status_path)} 2>/dev/null; echo '--'; tail -n {LOG_TAIL_LINES} {q(self.log_path)}",
            timeout=60)
        status, _, tail = out.partition("--\n")
        state = parse_state(status)
        if state.main_pid is None:
            raise WorkloadDied(f"step {self.label!r}: `{self.command}` did not start in its cgroup "
                               f"{self.cgroup}: {state.error or 'bh-step wrote no status'}\n"
                               f"--- bh-step's output ---\n{tail}")
        self.main_pid = state.main_pid
        log.debug("step %r: `%s` runs as pid %d in %s, output in %s", self.label, self.command,
                  self.main_pid, self.cgroup, self.log_path)
        return self.main_pid

    def state(self) -> CommandState:
        return read_states(self.ssh, [self])[self.slug]

    def wait(self, timeout: float) -> CommandState:
        """Wait until the command returns, then up to DETACH_GRACE_SECONDS for what it left
        to end; return the state then. Past ``timeout`` its processes are killed and
        :class:`GuestCommandError` names the command with its log tail."""
        q = shlex.quote
        polls, grace = int(timeout / POLL_SECONDS) + 1, int(DETACH_GRACE_SECONDS / POLL_SECONDS)
        events = f"{q(self.cgroup)}/cgroup.events"
        out = self._guest(
            f"i=0; while ! grep -qE '^(main|error) ' {q(self.status_path)} 2>/dev/null; do "
            f"[ $i -ge {polls} ] && echo TIMEOUT && exit; usleep {int(POLL_SECONDS * 1e6)}; i=$((i+1)); done; "
            f"i=0; while [ $i -lt {grace} ] && grep -q '^populated 1' {events} 2>/dev/null; do "
            f"usleep {int(POLL_SECONDS * 1e6)}; i=$((i+1)); done",
            timeout=timeout + 60)
        if "TIMEOUT" in out:
            self.kill()
            raise GuestCommandError(f"`{self.command}` did not end within {timeout:.0f}s in the guest; its "
                                    f"processes were killed\n--- last lines of its log ({self.log_path}) ---\n"
                                    f"{self.log_tail()}", self.command)
        log.debug("step %r: `%s` returned", self.label, self.command)
        return self.state()

    def _guest(self, line: str, timeout: float) -> str:
        """Run one harness command about this step command; a lost connection or a guest that
        stops answering names the step command, not only the harness's shell line."""
        try:
            return self.ssh.run(line, timeout=timeout).stdout
        except GuestCommandError as e:
            raise GuestCommandError(f"step {self.label!r} (`{self.command}`): {e}", self.command,
                                    e.exit_code, e.stdout, e.stderr) from e

    def kill(self) -> None:
        """SIGKILL every process of the command at once (cgroup.kill)."""
        self.ssh.run(f"echo 1 > {shlex.quote(self.cgroup)}/cgroup.kill 2>/dev/null; true", timeout=30)

    def stop(self, timeout: float = 30.0) -> float:
        """End every process of the command (SIGTERM to each, then SIGKILL through cgroup.kill
        after ``timeout``) and wait until none is left; returns the seconds it took. Its
        anonymous memory is free after this."""
        q = shlex.quote
        t0 = time.monotonic()
        polls = int(timeout / POLL_SECONDS) + 1
        events = f"{q(self.cgroup)}/cgroup.events"
        out = self._guest(
            f"for p in $(cat {q(self.cgroup)}/cgroup.procs 2>/dev/null); do kill -TERM $p 2>/dev/null; done; "
            f"i=0; while grep -q '^populated 1' {events} 2>/dev/null && [ $i -lt {polls} ]; do "
            f"usleep {int(POLL_SECONDS * 1e6)}; i=$((i+1)); done; "
            f"if grep -q '^populated 1' {events} 2>/dev/null; then echo 1 > {q(self.cgroup)}/cgroup.kill; "
            f"echo KILLED; fi", timeout=timeout + 60)
        if "KILLED" in out:
            raise WorkloadDied(f"workload {self.label!r} (`{self.command}`) did not end within "
                               f"{timeout:.0f}s of SIGTERM; killed")
        return time.monotonic() - t0

    def read_log(self) -> str:
        return self.ssh.run(f"cat {shlex.quote(self.log_path)} 2>/dev/null; true", timeout=60).stdout

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return self.ssh.run(f"tail -n {lines} {shlex.quote(self.log_path)} 2>/dev/null; true",
                                timeout=30).stdout
        except GuestCommandError as e:
            return f"(its log could not be read: {e})"

    def fetch_log(self, dest: Path, text: Optional[str] = None) -> Optional[Path]:
        """Copy the guest log (or ``text``, just read from it) to ``dest/<label>.log`` (the run's
        ``steps/`` folder); None when the guest cannot say."""
        if text is None:
            try:
                text = self.read_log()
            except GuestCommandError:
                return None
        dest.mkdir(parents=True, exist_ok=True)
        path = within(dest, dest / f"{safe_name(self.label)}.log")
        path.write_text(text)
        return path

    def wait_ready(self, pattern: Optional[str], timeout: float,
                   sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until the log matches ``pattern`` (the memory is in place); returns the seconds.

        Without a pattern the command counts as ready at once. Fails with its log when all
        its processes end first, when the command itself fails, or when ``timeout`` passes.
        """
        t0 = time.monotonic()
        if not pattern:
            return 0.0
        regex = re.compile(pattern)
        while True:
            text = self.read_log()
            if regex.search(text):
                return time.monotonic() - t0
            state = self.state()
            if not state.populated or (state.main_end is not None and state.main_end.failed):
                raise WorkloadDied(f"background workload {self.label!r} (`{self.command}`) ended while "
                                   f"waiting for it to print /{pattern}/: {state.why_ended()}\n"
                                   f"--- last lines of its log ({self.log_path}) ---\n{_tail(text)}")
            if time.monotonic() - t0 > timeout:
                raise WorkloadDied(f"background workload {self.label!r} did not print /{pattern}/ within "
                                   f"{timeout:.0f}s\n--- its log so far ---\n{text[-2000:]}")
            sleep(0.5)


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def safe_name(label: str) -> str:
    """A step label as a file name: letters, digits and . _ + - only, never a dot name
    ("." or "..") or empty, at most 100 characters."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", label)[:100]
    return name if name.strip(".") else f"_{name}"


def state_script(commands: Iterable[StepCommand]) -> str:
    """One shell line printing every command's cgroup and status (see :func:`parse_state`)."""
    parts = []
    for c in commands:
        cg, q = c.cgroup, shlex.quote
        parts.append(
            f"echo {q(_BLOCK + c.slug)}; cat {q(cg)}/cgroup.events 2>/dev/null; "
            f"printf 'current '; cat {q(cg)}/memory.current 2>/dev/null || echo; "
            f"grep -E '^(anon|anon_thp|file) ' {q(cg)}/memory.stat 2>/dev/null; "
            f"grep '^oom_kill ' {q(cg)}/memory.events 2>/dev/null; "
            f"echo procs $(cat {q(cg)}/cgroup.procs 2>/dev/null); cat {q(c.status_path)} 2>/dev/null")
    return "; ".join(parts) + "; true"


def read_states(ssh: GuestSSH, commands: list[StepCommand]) -> dict[str, CommandState]:
    """Every command's state in one SSH round trip, by slug."""
    if not commands:
        return {}
    out = ssh.run(state_script(commands), timeout=60).stdout
    blocks: dict[str, str] = {}
    for chunk in out.split(_BLOCK)[1:]:
        slug, _, body = chunk.partition("\n")
        blocks[slug.strip()] = body
    return {c.slug: parse_state(blocks.get(c.slug, "")) for c in commands}


def require_memory_cgroup(ssh: GuestSSH) -> None:
    """Refuse a guest whose kernel cannot put step commands in memory cgroups.

    The image's init mounts cgroup2 and enables the memory controller for the step
    cgroups; a kernel without cgroup2 or memcg (or booted with ``cgroup_disable=memory``)
    leaves no ``memory`` in ``/sys/fs/cgroup/bh/cgroup.subtree_control``.
    """
    out = ssh.run(f"echo mounted $(grep -c ' {CGROUP_ROOT} cgroup2 ' /proc/mounts); "
                  f"echo controllers $(cat {CGROUP_ROOT}/cgroup.controllers 2>/dev/null); "
                  f"echo enabled $(cat {STEP_CGROUPS}/cgroup.subtree_control 2>/dev/null)", timeout=30).stdout
    fields = {k: v.split() for k, _, v in (line.partition(" ") for line in out.splitlines())}
    mounted = fields.get("mounted", ["0"]) not in ([], ["0"])
    controllers, enabled = fields.get("controllers", []), fields.get("enabled", [])
    if mounted and "memory" in enabled:
        return
    if not mounted:
        why = f"cgroup2 is not mounted on {CGROUP_ROOT} (a kernel without CONFIG_CGROUPS?)"
    elif "memory" not in controllers:
        why = ("cgroup2 has no memory controller (a kernel without CONFIG_MEMCG, or booted with "
               "cgroup_disable=memory); its controllers: " + (" ".join(controllers) or "none"))
    else:
        why = (f"the memory controller is not enabled for {STEP_CGROUPS} "
               f"(cgroup.subtree_control: {' '.join(enabled) or 'empty'})")
    raise UnsupportedGuest(
        f"the guest kernel cannot run step commands in memory cgroups: {why}. The harness runs every "
        f"step command in a cgroup of its own to watch what it leaves running and the memory it holds; "
        f"use a kernel with cgroup v2 and the memory controller (CONFIG_MEMCG=y).")


_USEMEM_SPEED = re.compile(r"^\d+ bytes / \d+ usecs = (\d+) KB/s$", re.M)


def usemem_throughput_mb_s(output: str) -> float:
    """The write speed usemem printed, summed over its tasks (MB/s); the "read again" lines
    of ``-Z`` are not counted. Raises ValueError when the output has no such line."""
    speeds = [int(m.group(1)) for m in _USEMEM_SPEED.finditer(output)]
    if not speeds:
        raise ValueError("no usemem throughput line ('<bytes> bytes / <usecs> usecs = <KB/s> KB/s') in the output")
    return sum(speeds) / 1000
