"""QEMU guests: spec, process lifecycle, QMP, balloon control, accelerator choice."""

from harness.vm.balloon import Balloon
from harness.vm.machine import Machine
from harness.vm.spec import BalloonDevice, MachineSpec

__all__ = ["Balloon", "BalloonDevice", "Machine", "MachineSpec"]
