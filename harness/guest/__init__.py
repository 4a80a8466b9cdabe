"""The guest on top of a machine: SSH access (paramiko), reading the guest's /proc."""

from harness.guest.guest import Guest
from harness.guest.ssh import CommandResult, GuestSSH, generate_client_key

__all__ = ["CommandResult", "Guest", "GuestSSH", "generate_client_key"]
