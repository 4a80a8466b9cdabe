"""Exceptions the harness raises on purpose.

Every error a user can meet carries a one-line explanation; the CLI prints that
line instead of a traceback. Errors about a guest carry the tail of its console
log, because that is where a kernel says why it died.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: an expected failure with a message meant for a human."""


class MissingDependency(HarnessError):
    """A tool or package is not installed; the message says what to install."""


class BuildError(HarnessError):
    """A build step failed; the message names its log and the command to re-run."""


class ConfigError(HarnessError):
    """A spec or scenario value is impossible; refused before anything boots."""


class VMError(HarnessError):
    """QEMU or the guest failed. ``console_tail`` holds the last console lines."""

    def __init__(self, message: str, console_tail: str = "", stderr: str = ""):
        self.console_tail = console_tail
        self.stderr = stderr
        parts = [message]
        if stderr.strip():
            parts.append("--- QEMU stderr ---\n" + stderr.rstrip())
        if console_tail.strip():
            parts.append("--- guest console (tail) ---\n" + console_tail.rstrip())
        super().__init__("\n".join(parts))


class QEMUStartError(VMError):
    """QEMU exited before the guest came up (bad option, missing file...)."""


class GuestDied(VMError):
    """QEMU exited while we were using the guest (panic, triple fault...)."""


class BootTimeout(VMError):
    """The guest never answered SSH within the deadline."""


class SSHError(HarnessError):
    """The guest's sshd could not be reached, or answered with the wrong host key."""


class SSHTimeout(SSHError):
    """sshd did not answer before the deadline (the guest may still be booting or hung)."""


class QMPError(HarnessError):
    """A QMP command failed: an error reply, a timeout, or a connection that went away."""

    def __init__(self, message: str, command: str = ""):
        self.command = command
        super().__init__(message)


class WorkloadDied(HarnessError):
    """A workload the harness watches in the guest (a background step's command, or what a
    run step left running) is no longer running, or did not start."""


class UnsupportedGuest(HarnessError):
    """The guest kernel lacks what the harness needs (cgroup v2 with the memory controller)."""


class GuestStateError(HarnessError):
    """The guest's memory is not in the state a step declares (e.g. the workload's memory is gone)."""


class ResultsWriteError(HarnessError):
    """Results could not be written (full disk, permissions): the scenario stops, nothing half-written."""


class GuestCommandError(HarnessError):
    """A command run in the guest failed or timed out; names the command."""

    def __init__(self, message: str, command: str, exit_code: int | None = None,
                 stdout: str = "", stderr: str = ""):
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        detail = message
        if stderr.strip():
            detail += "\n--- stderr ---\n" + stderr.rstrip()[-2000:]
        super().__init__(detail)
