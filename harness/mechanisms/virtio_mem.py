"""virtio-mem: memory hot(un)plug in device blocks, the other mechanism upstream chose.

The guest boots with ``boot_mib`` and a virtio-mem device of ``memory_mib - boot_mib``
(by default half and half), plugged at boot, so the guest starts with the scenario's
``memory_mib`` like every other arm. A ``resize`` sets the device's ``requested-size``
(QMP ``qom-set``) and follows its ``size``. Unplug works in device blocks (2 MiB with
host THP) and only where the guest can empty them: movable memory in use must migrate
first, and how far an unplug gets when it cannot is the measurement.

The guest needs the virtio_mem module (in our initramfs) and ``memhp_default_state``
(Debian's 6.1 kernel onlines nothing by default): ``online_movable`` by default, so every
block can be emptied by migration, at the price that the kernel's own allocations must all
fit in the boot memory; ``online = "kernel"`` trades that the other way.

The device's region lies above 4 GiB, and QEMU's ACPI SRAT announces it as hotpluggable
memory: Linux then counts it in ``max_possible_pfn``, decides that DMA may need bouncing
below 4 GiB and reserves a 64 MiB SWIOTLB buffer out of the boot memory ("software IO
TLB: mapped ... (64MB)"), which a guest without hotplug memory below 4 GiB never does.
Measured on the 1 GiB guest of ``scenarios/mechanisms.toml``: 56 MiB less MemTotal than
the balloon guest (the 64 MiB buffer, less the 8 MiB of memmap the 512 MiB it did not
boot with would have cost). virtio devices that do not negotiate
VIRTIO_F_ACCESS_PLATFORM never bounce, so ``swiotlb = "off"`` (``swiotlb=noforce``) gives
the guest its memory back; ``"kernel"`` (the default) leaves the kernel's choice.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from harness.errors import ConfigError, GuestStateError
from harness.mechanisms.base import Mechanism, OnSample
from harness.results.scenario_schema import VirtioMemOptions
from harness.vm.follow import Follow, MoveResult, follow, late_events
from harness.vm.spec import MachineSpec
from harness.vm.timing import Timing

MIB = 1 << 20
DEVICE_ID = "vmem0"
DEVICE_PATH = f"/machine/peripheral/{DEVICE_ID}"
PLUG_AT_BOOT_TIMEOUT = 120.0
SIZE_EVENT = "MEMORY_DEVICE_SIZE_CHANGE"


class VirtioMem(Mechanism):
    name = "virtio-mem"
    description = "virtio-mem-pci: plug/unplug device blocks (qom-set requested-size)"
    Options = VirtioMemOptions

    plug_seconds: Optional[float] = None

    @property
    def boot_mib(self) -> int:
        return self.options["boot_mib"] or self.memory_mib // 2

    @property
    def region_mib(self) -> int:
        return self.memory_mib - self.boot_mib

    def configure(self, spec: MachineSpec) -> MachineSpec:
        block = self.options["block_mib"]
        device = (f"virtio-mem-pci,id={DEVICE_ID},memdev={DEVICE_ID}-mem,requested-size={self.region_mib}M"
                  + (f",block-size={block}M" if block else ""))
        return dataclasses.replace(
            spec, memory_mib=self.boot_mib, maxmem_mib=self.memory_mib, balloon=None,
            append=" ".join(filter(None, [spec.append, f"memhp_default_state=online_{self.options['online']}",
                                          "swiotlb=noforce" if self.options["swiotlb"] == "off" else ""])),
            extra_args=(*spec.extra_args, "-object", spec.backing.qemu_object(f"{DEVICE_ID}-mem", self.region_mib),
                        "-device", device))

    def plugged_mib(self) -> float:
        return int(self._guest().qmp.execute("qom-get", {"path": DEVICE_PATH, "property": "size"})) / MIB

    def size_mib(self) -> float:
        return self.boot_mib + self.plugged_mib()

    def attach(self, guest) -> None:
        """Wait until the guest has plugged what the device asks for at boot (it must, or
        every later figure describes a smaller guest)."""
        super().attach(guest)
        t0 = time.monotonic()
        how = Follow(settle=PLUG_AT_BOOT_TIMEOUT, timeout=PLUG_AT_BOOT_TIMEOUT, poll=0.2)
        outcome, seconds, size, _ = follow(self.size_mib, float(self.memory_mib), how, t0, guest.is_running)
        if outcome != "reached":
            raise GuestStateError(
                f"virtio-mem: the guest plugged {size - self.boot_mib:.0f} of {self.region_mib} MiB within "
                f"{PLUG_AT_BOOT_TIMEOUT:.0f}s of boot (virtio_mem module loaded? memory onlined?)")
        self.plug_seconds = seconds

    def resize(self, target_mib: int, timing: Timing, on_sample: OnSample = None) -> MoveResult:
        guest = self._guest()
        requested = target_mib - self.boot_mib
        if not 0 <= requested <= self.region_mib:
            raise ConfigError(f"virtio-mem: target {target_mib} MiB is outside what the device can give: "
                              f"{self.boot_mib} (boot memory) to {self.memory_mib} MiB")
        first_event = len(guest.qmp.events())
        start = self.size_mib()
        t0, requested_at = time.monotonic(), time.time()
        guest.qmp.execute("qom-set", {"path": DEVICE_PATH, "property": "requested-size", "value": requested * MIB})
        how = Follow(settle=timing.settle_seconds, timeout=timing.balloon_timeout_seconds,
                     poll=1.0 / timing.host_sample_hz)
        outcome, seconds, size, trajectory = follow(self.size_mib, float(target_mib), how, t0,
                                                    guest.is_running, on_sample)
        events = late_events(guest.qmp.events, first_event, SIZE_EVENT)
        return MoveResult(target_mib, outcome == "reached", size, seconds, outcome, start,
                          [(0.0, start), *trajectory], events, requested_at)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "boot_mib": self.boot_mib, "device_mib": self.region_mib,
                "plugged_at_boot_seconds": self.plug_seconds}


# ---- issue 32: a virtio-mem device beside another mechanism (the neighbour test) -------------
# ``[vm] neighbour_virtio_mem_mib`` adds a second memory device to a balloon arm's guest; a
# resize step's ``neighbour_mib`` shrinks (or grows) it while the balloon moves, so the
# guest's virtio-mem driver unplugs (alloc_contig_range or offlining, with migration) under
# the balloon's allocations: docs/neighbours.md.
NEIGHBOUR_ID = "vmem-neighbour"
NEIGHBOUR_PATH = f"/machine/peripheral/{NEIGHBOUR_ID}"


def with_neighbour(spec: MachineSpec, mib: int) -> MachineSpec:
    """``spec`` with a virtio-mem device of ``mib`` MiB, all plugged at boot, onlined movable."""
    if mib <= 0:
        return spec
    online = "" if "memhp_default_state=" in spec.append else "memhp_default_state=online_movable"
    return dataclasses.replace(
        spec, maxmem_mib=(spec.maxmem_mib or spec.memory_mib) + mib,
        append=" ".join(filter(None, [spec.append, online])),
        extra_args=(*spec.extra_args, "-object", spec.backing.qemu_object(f"{NEIGHBOUR_ID}-mem", mib),
                    "-device", f"virtio-mem-pci,id={NEIGHBOUR_ID},memdev={NEIGHBOUR_ID}-mem,requested-size={mib}M"))


def neighbour_plugged_mib(guest) -> float:
    """What the neighbour device has plugged now (QMP ``size``), MiB."""
    return int(guest.qmp.execute("qom-get", {"path": NEIGHBOUR_PATH, "property": "size"})) / MIB


def wait_neighbour_plugged(guest, mib: int) -> float:
    """Wait until the guest plugged the neighbour's ``mib`` at boot; its seconds."""
    how = Follow(settle=PLUG_AT_BOOT_TIMEOUT, timeout=PLUG_AT_BOOT_TIMEOUT, poll=0.2)
    outcome, seconds, size, _ = follow(lambda: neighbour_plugged_mib(guest), float(mib), how, time.monotonic(),
                                       guest.is_running)
    if outcome != "reached":
        raise GuestStateError(f"neighbour virtio-mem: the guest plugged {size:.0f} of {mib} MiB within "
                              f"{PLUG_AT_BOOT_TIMEOUT:.0f}s of boot (virtio_mem loaded? memory onlined?)")
    return seconds


def move_neighbour(guest, target_mib: int, timing: Timing) -> MoveResult:
    """Set the neighbour's requested size and follow its ``size`` until it settles."""
    first_event = len(guest.qmp.events())
    start = neighbour_plugged_mib(guest)
    t0, requested_at = time.monotonic(), time.time()
    guest.qmp.execute("qom-set", {"path": NEIGHBOUR_PATH, "property": "requested-size", "value": target_mib * MIB})
    how = Follow(settle=timing.settle_seconds, timeout=timing.balloon_timeout_seconds,
                 poll=1.0 / timing.host_sample_hz)
    outcome, seconds, size, trajectory = follow(lambda: neighbour_plugged_mib(guest), float(target_mib), how, t0,
                                                guest.is_running)
    events = late_events(guest.qmp.events, first_event, SIZE_EVENT)
    return MoveResult(target_mib, outcome == "reached", size, seconds, outcome, start,
                      [(0.0, start), *trajectory], events, requested_at)
