"""SSH into the guest with paramiko: pinned host key, per-run client key, hard deadlines.

Lessons baked in: QEMU's user networking accepts TCP before sshd is up, so the
whole ``connect()`` is retried while QEMU lives; stdout and stderr are drained
together before asking for the exit status (``recv_exit_status`` deadlocks on
large output otherwise); paramiko's timeouts are per read, so each command gets
a wall-clock deadline of our own.
"""

from __future__ import annotations

import base64
import select
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paramiko

from harness.errors import GuestCommandError, SSHError, SSHTimeout
from harness.procfs import BuddyZone, parse_buddyinfo, parse_meminfo, parse_vmstat

# While the guest boots, failed connects are expected; paramiko would print each
# one's traceback. Our own exceptions carry the last error instead.


# Connecting while a guest boots (GuestSSH.connect): wait this long for sshd's greeting,
# pause this long between attempts, and wait the full attempt timeout again after this
# many seconds of attempts.
BOOT_BANNER_TIMEOUT = 1.5
RETRY_PAUSE = 0.25
BANNER_PATIENT_AFTER = 60.0


def generate_client_key() -> paramiko.PKey:
    """A fresh key pair for one run (ECDSA P-256: paramiko can generate it, dropbear accepts it)."""
    return paramiko.ECDSAKey.generate(bits=256)


def authorized_key_arg(key: paramiko.PKey) -> str:
    """The public key as ``type:base64`` for the kernel command line (no spaces allowed there)."""
    return f"{key.get_name()}:{key.get_base64()}"


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class GuestSSH:
    """One SSH connection to a guest's sshd, forwarded to ``host:port``."""

    def __init__(self, host: str, port: int, client_key: paramiko.PKey, host_key: str,
                 user: str = "root"):
        self.host, self.port, self.user = host, port, user
        self._client_key = client_key
        keytype, b64 = host_key.split()[:2]
        self._host_key = paramiko.PKey.from_type_string(keytype, base64.b64decode(b64))
        self._client: paramiko.SSHClient | None = None
        # One command at a time per connection: dropbear 2022.83 aborts the whole
        # connection (assertion `!channel->sent_close`) when channels open and close
        # concurrently. Concurrent users (the sampler) take a connection of their own.
        self._lock = threading.Lock()

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        client.get_host_keys().add(name, self._host_key.get_name(), self._host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())  # pinned, never auto-accept
        return client

    def connect(self, deadline: float, alive: Callable[[], bool] = lambda: True,
                attempt_timeout: float = 10.0, banner_timeout: float | None = None,
                patient_after: float = BANNER_PATIENT_AFTER) -> int:
        """Retry the whole connect until it works, ``alive()`` turns false or ``deadline``
        (a ``time.monotonic()`` value) passes. Returns the number of attempts.

        ``banner_timeout`` (default ``attempt_timeout``) is how long an attempt waits for
        sshd's greeting. Booting, a short one pays: QEMU's user networking accepts the
        host's connection at once, before the guest has a network, and the connection then
        only gets its greeting once a retransmitted SYN reaches a listening sshd, or never:
        a first attempt waiting 10 s for it cost 3-5 s of every boot. An sshd that listens
        greets within milliseconds, so a short wait misses nothing; after ``patient_after``
        seconds of attempts (a guest too loaded to greet quickly) the waits are
        ``attempt_timeout`` again.

        A host key mismatch is not retried: it means the wrong guest answered.
        Raises :class:`SSHTimeout` at the deadline, :class:`SSHError` otherwise.
        """
        attempts = 0
        last_error: Exception | None = None
        first = time.monotonic()
        while True:
            attempts += 1
            client = self._new_client()
            patient = banner_timeout is None or time.monotonic() - first >= patient_after
            try:
                client.connect(self.host, port=self.port, username=self.user, pkey=self._client_key,
                               timeout=attempt_timeout,
                               banner_timeout=attempt_timeout if patient else banner_timeout,
                               auth_timeout=attempt_timeout, allow_agent=False, look_for_keys=False)
                self._client = client
                return attempts
            except paramiko.BadHostKeyException as e:
                client.close()
                raise SSHError(f"{self.host}:{self.port} answered with host key "
                               f"{e.key.get_name()} {e.key.get_fingerprint().hex()}, not the guest's "
                               f"pinned key: another machine holds this port") from e
            except (paramiko.SSHException, OSError, EOFError) as e:
                client.close()
                last_error = e
            if not alive():
                raise SSHError(f"guest went away while connecting over SSH ({last_error})")
            if time.monotonic() >= deadline:
                raise SSHTimeout(f"SSH to {self.host}:{self.port} not answering after "
                                   f"{attempts} attempts (last error: {last_error})")
            time.sleep(RETRY_PAUSE)

    @property
    def connected(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def run(self, command: str, timeout: float = 60.0, check: bool = True) -> CommandResult:
        """Run ``command`` in the guest's shell; return its exit code and output.

        Commands on one connection run one after another (see ``_lock``); the
        timeout counts from when this command starts.

        Raises :class:`GuestCommandError` naming the command when it times out,
        the connection drops, or (with ``check``) it exits non-zero.
        """
        if not self._client:
            raise GuestCommandError("not connected", command)
        with self._lock:
            return self._run_locked(command, timeout, check)

    def _run_locked(self, command: str, timeout: float, check: bool) -> CommandResult:
        start = time.monotonic()
        deadline = start + timeout
        try:
            transport = self._client.get_transport() if self._client else None
            if transport is None:
                raise GuestCommandError(f"not connected: cannot run `{command}`", command)
            chan = transport.open_session(timeout=timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError, AttributeError) as e:
            # EOFError: the guest's sshd went away while the session opened (paramiko's
            # transport thread raises it into open_session; seen when dropbear was killed)
            raise GuestCommandError(f"could not start `{command}` in the guest: {e!r}", command) from e
        out, err = bytearray(), bytearray()
        try:
            while True:
                drained = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    drained = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    drained = True
                if chan.exit_status_ready() and chan.eof_received and not drained \
                        and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed and not drained:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GuestCommandError(
                        f"`{command}` timed out after {timeout:.0f}s in the guest", command, None,
                        out.decode(errors="replace"), err.decode(errors="replace"))
                if not drained:
                    select.select([chan], [], [], min(0.2, remaining))
            code = chan.recv_exit_status() if chan.exit_status_ready() else -1
        except (OSError, paramiko.SSHException, EOFError) as e:
            raise GuestCommandError(f"connection lost while running `{command}`: {e}", command) from e
        finally:
            chan.close()
        result = CommandResult(command, code, out.decode(errors="replace"),
                               err.decode(errors="replace"), time.monotonic() - start)
        if check and code != 0:
            raise GuestCommandError(f"`{command}` exited with {code} in the guest", command, code,
                                    result.stdout, result.stderr)
        return result

    def read_file(self, path: str, timeout: float = 30.0) -> str:
        return self.run(f"cat {shlex.quote(path)}", timeout=timeout).stdout

    def meminfo(self) -> dict[str, int]:
        return parse_meminfo(self.read_file("/proc/meminfo"))

    def vmstat(self) -> dict[str, int]:
        return parse_vmstat(self.read_file("/proc/vmstat"))

    def buddyinfo(self) -> list[BuddyZone]:
        return parse_buddyinfo(self.read_file("/proc/buddyinfo"))

    def clone(self) -> GuestSSH:
        """A new, unconnected client for the same guest (a second connection)."""
        return GuestSSH(self.host, self.port, self._client_key,
                        f"{self._host_key.get_name()} {self._host_key.get_base64()}", self.user)

    def close(self) -> None:
        if self._client:
            self._client.close()
            self._client = None
