"""``Machine``: one QEMU process, owned from start to a guaranteed stop.

Modelled on QEMU's own ``python/qemu/machine``: a context manager that owns the
process, its QMP socket, its console log and a private run directory, with one
cleanup funnel (:meth:`Machine.shutdown`) and errors that carry their evidence
(QEMU's stderr, the console tail). What it adds for unattended lab use: the
serial console always goes to a file (a full console buffer can never stall the
guest), QEMU dies with the harness (``setpriv --pdeathsig``, required), and how
QEMU ended is recorded (:class:`Ending`), like QEMUMachine's AbnormalShutdown.

It knows nothing of SSH: it forwards one guest TCP port to 127.0.0.1 and the
caller (:class:`harness.guest.Guest`) connects there. It installs no signal
handler and no atexit hook: those are process-wide and belong to ``cli.main``.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from harness.arch import KERNEL_CONSOLE
from harness.errors import GuestDied, HarnessError, QEMUStartError, QMPError
from harness.vm.accel import resolve_accel
from harness.vm.balloon import EXACT_TOLERANCE_MIB, THP_ORDER_TOLERANCE_MIB, Balloon
from harness.vm.lifeline import pdeathsig_wrapper
from harness.vm.qmp import QMPConnection
from harness.vm.spec import MachineSpec, firmware_args

QUIT_TIMEOUT = 10.0
TERM_TIMEOUT = 5.0
HOSTFWD_RETRIES = 3

_live: set[Machine] = set()
_live_lock = threading.Lock()


def stop_all_live() -> None:
    """Stop every machine of this process (for cli's atexit/SIGTERM path and Ctrl-C with --jobs)."""
    with _live_lock:
        machines = list(_live)
    for m in machines:
        m.shutdown()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repeatable_script(cmd: list[str]) -> str:
    """``cmd.sh``: the exact command line, runnable by hand. The harness hands QEMU a
    connected QMP socket (``fd=N``); the script uses a socket file next to it instead."""
    args = [a if not a.startswith("socket,id=qmp,fd=") else "socket,id=qmp,path=qmp.sock,server=on,wait=off"
            for a in cmd]
    return ("#!/bin/sh\n# QEMU command line of this run, as the harness started it (QMP on ./qmp.sock;\n"
            "# the guest's SSH key is only valid for the original run).\n"
            + " \\\n  ".join(shlex.quote(a) for a in args) + "\n")


@dataclass(frozen=True)
class Ending:
    """How QEMU ended: ``quit`` (acknowledged QMP quit), ``sigterm``/``sigkill`` (it needed a
    signal), ``died`` (it exited by itself: crash, guest panic with -no-reboot), or
    ``not started``."""

    how: str
    returncode: Optional[int] = None

    @property
    def clean(self) -> bool:
        return self.how in ("quit", "not started")

    def describe(self) -> str:
        rc = self.returncode
        if rc is None:
            return self.how
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = str(-rc)
            return f"{self.how} (killed by {name})"
        return f"{self.how} (exit {rc})"

    def as_dict(self) -> dict:
        return {"how": self.how, "returncode": self.returncode, "clean": self.clean,
                "text": self.describe()}


class Machine:
    """Start QEMU from ``spec``; ``with Machine(spec) as m:`` gives a running QEMU with QMP.

    ``run_dir``: where logs go. If omitted a temporary directory is used and removed
    at shutdown; if given it is kept (console and QEMU logs stay for the user).
    """

    def __init__(self, spec: MachineSpec, run_dir: Path | None = None):
        self.spec = spec
        self._given_run_dir = Path(run_dir) if run_dir else None
        self.run_dir: Path | None = None
        self.accel: str | None = None
        self.host_port: int | None = None   # 127.0.0.1 port forwarded to spec.forward_port
        self.ending = Ending("not started")
        self._proc: subprocess.Popen | None = None
        self._qmp: QMPConnection | None = None
        self._qmp_sock: socket.socket | None = None
        self._stderr_file: IO[str] | None = None
        self._down = False

    # ---- paths and state -------------------------------------------------
    @property
    def console_log(self) -> Path:
        assert self.run_dir
        return self.run_dir / "console.log"

    @property
    def stderr_log(self) -> Path:
        assert self.run_dir
        return self.run_dir / "qemu.stderr.log"

    @property
    def pid(self) -> int:
        if not self._proc:
            raise HarnessError("machine not started")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def qmp(self) -> QMPConnection:
        if not self._qmp:
            raise HarnessError("machine not started")
        return self._qmp

    @property
    def balloon(self) -> Balloon:
        # A balloon that moves 2 MiB blocks (the RFC's thp-order, or a host-chosen order that
        # releases whole blocks on deflate) may land up to one block off its target.
        b = self.spec.balloon
        thp = b is not None and (b.prop("thp-order") == "on" or (b.prop("balloon-order") or "0") != "0")
        return Balloon(self.qmp, self.spec.memory_mib, alive=self.is_running,
                       tolerance_mib=THP_ORDER_TOLERANCE_MIB if thp else EXACT_TOLERANCE_MIB)

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stderr_text(self) -> str:
        try:
            return self.stderr_log.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    # ---- command line ----------------------------------------------------
    def command_line(self, accel: str, host_port: int, qmp_fd: int) -> list[str]:
        """QEMU's argv (without the setpriv wrapper): loopback-only user networking with
        ``spec.forward_port`` of the guest on 127.0.0.1:``host_port``."""
        s = self.spec
        append = [f"console={KERNEL_CONSOLE}", "panic=-1", "loglevel=4"]
        if s.guest_thp:
            append.append(f"bh.thp={s.guest_thp}")
        if s.append:
            append.append(s.append)
        # issue 29: the backing of the boot RAM (nothing added for the default, anonymous)
        machine, backing_args = s.backing.machine_args(s.machine, s.memory_mib)
        cmd = [str(s.qemu), "-name", s.name, "-machine", machine, "-accel", accel,
               "-m", f"{s.memory_mib}M" + (f",maxmem={s.maxmem_mib}M" if s.maxmem_mib else ""), *backing_args,
               "-smp", str(s.vcpus),
               "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-no-reboot",
               "-kernel", str(s.kernel), "-initrd", str(s.initrd), "-append", " ".join(append),
               "-chardev", f"socket,id=qmp,fd={qmp_fd}", "-mon", "chardev=qmp,mode=control",
               "-chardev", f"file,id=con,path={self.console_log}", "-serial", "chardev:con",
               "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:{s.forward_port}",
               "-device", "virtio-net-pci,netdev=net0,romfile="]
        cmd += firmware_args(s.firmware_dirs)
        if s.entropy:
            cmd += ["-device", "virtio-rng-pci"]
        if s.balloon:
            cmd += ["-device", s.balloon.arg()]
        cmd += list(s.extra_args)
        return cmd

    # ---- lifecycle -------------------------------------------------------
    def __enter__(self) -> Machine:
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def start(self) -> None:
        """Start QEMU and connect QMP. Does not wait for the guest: see harness.guest.Guest."""
        self.spec.validate()
        wrapper = pdeathsig_wrapper()
        self.accel = resolve_accel(self.spec.accel, self.spec.qemu, self.spec.kernel, self.spec.firmware_dirs)
        self.spec.backing.check_guest(self.spec.memory_mib, self.accel)   # issue 29: guest_memfd needs KVM
        if self._given_run_dir:
            self._given_run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir = self._given_run_dir
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix="bh-vm-"))
        with _live_lock:
            _live.add(self)
        for attempt in range(HOSTFWD_RETRIES):
            self.host_port = free_port()
            try:
                self._launch(wrapper)
                break
            except QEMUStartError as e:
                # Another process may have taken the port between probe and bind.
                if "hostfwd" in e.stderr or "host forwarding" in e.stderr:
                    if attempt + 1 < HOSTFWD_RETRIES:
                        continue
                raise

    def _launch(self, wrapper: list[str]) -> None:
        assert self.run_dir is not None and self.host_port is not None
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = self.command_line(self.accel or "tcg", self.host_port, child_sock.fileno())
        (self.run_dir / "qemu.cmdline").write_text(" ".join(cmd) + "\n")
        (self.run_dir / "cmd.sh").write_text(repeatable_script(cmd))
        self._stderr_file = open(self.stderr_log, "w")
        try:
            self._proc = subprocess.Popen([*wrapper, *cmd], stdin=subprocess.DEVNULL,
                                          stdout=self._stderr_file, stderr=self._stderr_file,
                                          pass_fds=(child_sock.fileno(),), start_new_session=True)
        except OSError as e:
            raise QEMUStartError(f"could not start {self.spec.qemu}: {e}") from e
        finally:
            child_sock.close()
        self._qmp_sock = parent_sock
        try:
            self._qmp = QMPConnection(parent_sock, name=self.spec.name)
        except QMPError as e:
            try:
                self._proc.wait(TERM_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_process()
            err = self.stderr_text()
            self._close_io()
            raise QEMUStartError(f"QEMU exited at start (exit {self._proc.returncode}; {e})",
                                 self.console_tail(), err) from None

    def died(self, message: str) -> GuestDied:
        """A :class:`GuestDied` for ``message`` with QEMU's status, stderr and console tail."""
        code = self._proc.poll() if self._proc else None
        return GuestDied(f"{message} (QEMU exit status {code})", self.console_tail(), self.stderr_text())

    def wait_exit(self, timeout: float) -> bool:
        """True if QEMU has exited or does within ``timeout`` seconds (a panicking guest's
        QEMU closes its sockets a moment before it is reaped)."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def check_alive(self) -> None:
        """Raise :class:`GuestDied` with the console tail if QEMU has exited."""
        if not self.is_running():
            raise self.died("QEMU exited")

    def shutdown(self) -> Ending:
        """QMP ``quit``, then SIGTERM, then SIGKILL, each with a timeout. Idempotent.

        Records and returns how QEMU ended (:attr:`ending`).
        """
        if self._down:
            return self.ending
        self._down = True
        proc = self._proc
        if proc is not None:
            if proc.poll() is not None:
                self.ending = Ending("died", proc.returncode)
            else:
                self.ending = self._stop(proc)
        self._close_io()
        with _live_lock:
            _live.discard(self)
        if self.run_dir and not self._given_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.ending

    def _stop(self, proc: subprocess.Popen) -> Ending:
        if self._qmp:
            try:
                self._qmp.execute("quit", timeout=QUIT_TIMEOUT)
            except QMPError:
                pass  # QEMU closes the socket as it quits; a lost answer is no failure yet
            try:
                proc.wait(QUIT_TIMEOUT)
                return Ending("quit", proc.returncode)
            except subprocess.TimeoutExpired:
                pass
        proc.terminate()
        try:
            proc.wait(TERM_TIMEOUT)
            return Ending("sigterm", proc.returncode)
        except subprocess.TimeoutExpired:
            self._kill_process()
            return Ending("sigkill", proc.returncode)

    def _kill_process(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _close_io(self) -> None:
        if self._qmp:
            self._qmp.close()
        if self._qmp_sock:
            self._qmp_sock.close()
        if self._stderr_file:
            self._stderr_file.close()
