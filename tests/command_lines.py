"""A QEMU command line as the harness would start it, without starting it: the machine spec
with placeholder files, and the argv `Machine.command_line` builds from it (TCG, a fixed SSH
port). The unit tests of devices, mechanisms and backings read their options from it."""

from __future__ import annotations

from pathlib import Path

from harness.vm.machine import Machine
from harness.vm.spec import MachineSpec


def spec(**kw) -> MachineSpec:
    return MachineSpec(kernel=Path("/k"), initrd=Path("/i"), host_key="ssh-ed25519 AAAA", qemu=Path("/q"), **kw)


def argv(s: MachineSpec) -> list[str]:
    m = Machine(s)
    m.run_dir = Path("/tmp/x")
    return m.command_line("tcg", 2222, 3)
