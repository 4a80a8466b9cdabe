"""Does the host have room for the guests a run starts at once? Checked before anything builds.

A guest larger than the host's available memory boots, then the host swaps or the OOM
killer takes QEMU mid-run, hours in; more vCPUs than the host has cores make every timing
figure describe the host's scheduler. So a run is refused up front, in one line with the
numbers: each guest's ``memory_mib`` and ``vcpus``, times the guests that run at once
(``--jobs``, at most the planned runs), against ``MemAvailable`` and the cores this process
may run on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.probes.host import meminfo


@dataclass(frozen=True)
class HostRoom:
    """What the host offers now: available memory (MiB) and usable cores."""

    memory_mib: int
    cores: int

    @classmethod
    def now(cls) -> HostRoom:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):   # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        return cls(meminfo().get("MemAvailable", 0) // 1024, cores)


def check_room(memory_mib: int, vcpus: int, jobs: int, runs: int, room: HostRoom | None = None) -> None:
    """Refuse (ConfigError, one line) guests that do not fit the host: ``jobs`` of them at once,
    at most ``runs``."""
    room = room or HostRoom.now()
    at_once = max(1, min(jobs, runs))
    guests = f"{at_once} guests at once (--jobs {jobs})" if at_once > 1 else "one guest"
    if vcpus * at_once > room.cores:
        raise ConfigError(f"{guests} of {vcpus} vCPU(s) need {vcpus * at_once} cores; this host has "
                          f"{room.cores}: lower vm.vcpus or --jobs")
    if memory_mib * at_once > room.memory_mib:
        raise ConfigError(f"{guests} of {memory_mib} MiB need {memory_mib * at_once} MiB; this host has "
                          f"{room.memory_mib} MiB available (MemAvailable): lower vm.memory_mib or --jobs")
