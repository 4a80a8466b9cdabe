"""Guest access over SSH (paramiko): run commands, read the guest's /proc."""

from harness.guest.ssh import CommandResult, GuestSSH, generate_client_key

__all__ = ["CommandResult", "GuestSSH", "generate_client_key"]
