"""``Machine``: one QEMU process, owned from start to a guaranteed stop.

Modelled on QEMU's own ``python/qemu/machine``: a context manager that owns the
process, its QMP socket, its logs and a private run directory. What it adds for
unattended lab use: the serial console always goes to a file (a full console
buffer can never stall the guest), QEMU dies with the harness (``setpriv
--pdeathsig``), a SIGTERM of the harness unwinds through ``__exit__``, and every
failure names its cause with QEMU's stderr and the console tail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness.errors import BootTimeout, GuestDied, HarnessError, QEMUStartError
from harness.guest.ssh import GuestSSH, authorized_key_arg, generate_client_key
from harness.vm.accel import resolve_accel
from harness.vm.balloon import EXACT_TOLERANCE_MIB, THP_ORDER_TOLERANCE_MIB, Balloon
from harness.vm.qmp import QMPConnection
from harness.vm.spec import MachineSpec, firmware_args

QUIT_TIMEOUT = 10.0
TERM_TIMEOUT = 5.0
HOSTFWD_RETRIES = 3

_live: "set[Machine]" = set()
_live_lock = threading.Lock()


def stop_all_live() -> None:
    """Stop every machine of this process (atexit safety net; also used on Ctrl-C with --jobs)."""
    with _live_lock:
        machines = list(_live)
    for m in machines:
        m.shutdown()


atexit.register(stop_all_live)


def _sigterm_to_exit(signum, frame):  # noqa: ARG001 - signal handler signature
    raise SystemExit(128 + signum)


def _install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so ``with Machine(...)`` blocks unwind and stop QEMU."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm_to_exit)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Machine:
    """Boot a guest from ``spec``; ``with Machine(spec) as m:`` gives a guest that answers SSH.

    ``run_dir``: where logs go. If omitted a temporary directory is used and removed
    at shutdown; if given it is kept (console and QEMU logs stay for the user).
    """

    def __init__(self, spec: MachineSpec, run_dir: Path | None = None):
        self.spec = spec
        self._given_run_dir = Path(run_dir) if run_dir else None
        self.run_dir: Path | None = None
        self.accel: str | None = None
        self.ssh_port: int | None = None
        self.boot_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._qmp: QMPConnection | None = None
        self._ssh: GuestSSH | None = None
        self._extra_ssh: list[GuestSSH] = []
        self._qmp_sock: socket.socket | None = None
        self._stderr_file = None
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
    def ssh(self) -> GuestSSH:
        if not self._ssh:
            raise HarnessError("machine not started")
        return self._ssh

    def open_ssh(self, timeout: float = 60.0) -> GuestSSH:
        """Another SSH connection to the guest, for a thread that runs commands concurrently
        with the main one (closed at shutdown)."""
        conn = self.ssh.clone()
        conn.connect(time.monotonic() + timeout, alive=self.is_running)
        self._extra_ssh.append(conn)
        return conn

    @property
    def balloon(self) -> Balloon:
        thp = self.spec.balloon is not None and self.spec.balloon.prop("thp-order") == "on"
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
    def command_line(self, accel: str, ssh_port: int, qmp_fd: int, client_key_arg: str) -> list[str]:
        s = self.spec
        append = ["console=ttyS0", "panic=-1", "loglevel=4", f"bh.authkey={client_key_arg}"]
        if s.guest_thp:
            append.append(f"bh.thp={s.guest_thp}")
        if s.append:
            append.append(s.append)
        cmd = [str(s.qemu), "-name", s.name, "-machine", s.machine, "-accel", accel,
               "-m", str(s.memory_mib), "-smp", str(s.vcpus),
               "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-no-reboot",
               "-kernel", str(s.kernel), "-initrd", str(s.initrd), "-append", " ".join(append),
               "-chardev", f"socket,id=qmp,fd={qmp_fd}", "-mon", "chardev=qmp,mode=control",
               "-chardev", f"file,id=con,path={self.console_log}", "-serial", "chardev:con",
               "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
               "-device", "virtio-net-pci,netdev=net0,romfile="]
        cmd += firmware_args(s.firmware_dirs)
        if s.balloon:
            cmd += ["-device", s.balloon.arg()]
        cmd += list(s.extra_args)
        if shutil.which("setpriv"):  # QEMU gets SIGKILL if the harness dies without cleanup
            cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
        return cmd

    # ---- lifecycle -------------------------------------------------------
    def __enter__(self) -> "Machine":
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def start(self) -> None:
        self.spec.validate()
        _install_sigterm_handler()
        self.accel = resolve_accel(self.spec.accel, self.spec.qemu, self.spec.kernel, self.spec.firmware_dirs)
        if self._given_run_dir:
            self._given_run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir = self._given_run_dir
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix="bh-vm-"))
        with _live_lock:
            _live.add(self)
        client_key = generate_client_key()
        started = time.monotonic()
        for attempt in range(HOSTFWD_RETRIES):
            self.ssh_port = free_port()
            try:
                self._launch(client_key)
                break
            except QEMUStartError as e:
                # Another process may have taken the port between probe and bind.
                if "hostfwd" in e.stderr or "host forwarding" in e.stderr:
                    if attempt + 1 < HOSTFWD_RETRIES:
                        continue
                raise
        self._ssh = GuestSSH("127.0.0.1", self.ssh_port, client_key, self.spec.host_key)
        try:
            self._ssh.connect(started + self.spec.boot_timeout, alive=self.is_running)
        except TimeoutError as e:
            raise BootTimeout(f"guest did not answer SSH within {self.spec.boot_timeout:.0f}s "
                              f"(accel={self.accel}): {e}", self.console_tail(), self.stderr_text()) from None
        except HarnessError:
            raise self._died("guest died while booting") from None
        self.boot_seconds = time.monotonic() - started

    def _launch(self, client_key) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = self.command_line(self.accel, self.ssh_port, child_sock.fileno(),
                                authorized_key_arg(client_key))
        (self.run_dir / "qemu.cmdline").write_text(" ".join(cmd) + "\n")
        self._stderr_file = open(self.stderr_log, "w")
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr_file,
                                          stderr=self._stderr_file, pass_fds=(child_sock.fileno(),),
                                          start_new_session=True)
        except OSError as e:
            raise QEMUStartError(f"could not start {self.spec.qemu}: {e}") from e
        finally:
            child_sock.close()
        self._qmp_sock = parent_sock
        try:
            self._qmp = QMPConnection(parent_sock, name=self.spec.name)
        except Exception as e:
            try:
                self._proc.wait(TERM_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_process()
            err = self.stderr_text()
            self._close_io()
            raise QEMUStartError(f"QEMU exited at start (exit {self._proc.returncode}; QMP: {e!r})",
                                 self.console_tail(), err) from None

    def _died(self, message: str) -> GuestDied:
        code = self._proc.poll() if self._proc else None
        return GuestDied(f"{message} (QEMU exit status {code})", self.console_tail(), self.stderr_text())

    def check_alive(self) -> None:
        """Raise :class:`GuestDied` with the console tail if QEMU has exited."""
        if not self.is_running():
            raise self._died("QEMU exited")

    def shutdown(self) -> None:
        """QMP ``quit``, then SIGTERM, then SIGKILL, each with a timeout. Idempotent."""
        if self._down:
            return
        self._down = True
        for conn in [self._ssh, *self._extra_ssh]:
            if conn:
                conn.close()
        if self._proc and self._proc.poll() is None and self._qmp:
            try:
                self._qmp.execute("quit", timeout=QUIT_TIMEOUT)
            except Exception:
                pass  # QEMU closes the socket as it quits; any error here means "try harder"
            try:
                self._proc.wait(QUIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(TERM_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_process()
        self._close_io()
        with _live_lock:
            _live.discard(self)
        if self.run_dir and not self._given_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

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
