"""``Guest``: a booted guest that answers SSH, on top of a :class:`harness.vm.Machine`.

The machine owns QEMU; the guest adds what our image's protocol needs: a fresh
client key per boot passed on the kernel command line (``bh.authkey=``), the
pinned host key of the image, and the wait for sshd. Boot failures carry the
console tail: a guest that died while booting is :class:`GuestDied`, one that
never answered is :class:`BootTimeout`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

from harness.errors import BootTimeout, SSHError, SSHTimeout
from harness.guest.ssh import BOOT_BANNER_TIMEOUT, GuestSSH, authorized_key_arg, generate_client_key
from harness.vm.balloon import Balloon
from harness.vm.machine import Ending, Machine
from harness.vm.qmp import QMPConnection
from harness.vm.spec import MachineSpec


class Guest:
    """``with Guest(spec, run_dir) as g:`` boots, waits for SSH, and always stops QEMU."""

    def __init__(self, spec: MachineSpec, run_dir: Optional[Path] = None):
        self._client_key = generate_client_key()
        append = " ".join(filter(None, [spec.append, f"bh.authkey={authorized_key_arg(self._client_key)}"]))
        self.machine = Machine(dataclasses.replace(spec, append=append), run_dir=run_dir)
        self.spec = spec
        self.boot_seconds: Optional[float] = None
        self._ssh: Optional[GuestSSH] = None
        self._extra_ssh: list[GuestSSH] = []

    def __enter__(self) -> Guest:
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def start(self) -> None:
        started = time.monotonic()
        m = self.machine
        m.start()
        assert m.host_port is not None
        self._ssh = GuestSSH("127.0.0.1", m.host_port, self._client_key, self.spec.host_key)
        try:
            self._ssh.connect(started + self.spec.boot_timeout, alive=m.is_running, banner_timeout=BOOT_BANNER_TIMEOUT)
        except SSHTimeout as e:
            raise BootTimeout(f"guest did not answer SSH within {self.spec.boot_timeout:.0f}s "
                              f"(accel={m.accel}): {e}", m.console_tail(), m.stderr_text()) from None
        except SSHError:
            if not m.is_running():
                raise m.died("guest died while booting") from None
            raise
        self.boot_seconds = time.monotonic() - started

    def shutdown(self) -> Ending:
        for conn in [self._ssh, *self._extra_ssh]:
            if conn:
                conn.close()
        return self.machine.shutdown()

    # ---- access ------------------------------------------------------------
    @property
    def ssh(self) -> GuestSSH:
        if not self._ssh:
            raise SSHError("guest not started")
        return self._ssh

    def open_ssh(self, timeout: float = 60.0) -> GuestSSH:
        """Another SSH connection, for a thread that runs commands beside the main one
        (dropbear wants one channel at a time per connection); closed at shutdown."""
        conn = self.ssh.clone()
        conn.connect(time.monotonic() + timeout, alive=self.machine.is_running)
        self._extra_ssh.append(conn)
        return conn

    @property
    def pid(self) -> int:
        return self.machine.pid

    @property
    def accel(self) -> Optional[str]:
        return self.machine.accel

    @property
    def qmp(self) -> QMPConnection:
        return self.machine.qmp

    @property
    def balloon(self) -> Balloon:
        return self.machine.balloon

    @property
    def run_dir(self) -> Optional[Path]:
        return self.machine.run_dir

    @property
    def ending(self) -> Ending:
        return self.machine.ending

    def is_running(self) -> bool:
        return self.machine.is_running()

    def check_alive(self) -> None:
        self.machine.check_alive()

    def console_tail(self, lines: int = 40) -> str:
        return self.machine.console_tail(lines)
