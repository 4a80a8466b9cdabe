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


def check_room(memory_mib: int, vcpus: int, jobs: int, runs: int, room: HostRoom | None = None,
               guests: int = 1) -> None:
    """Refuse (ConfigError, one line) guests that do not fit the host: ``jobs`` of them at once,
    at most ``runs``; a fleet (``guests`` > 1) by :func:`check_fleet_room`."""
    room = room or HostRoom.now()
    if guests > 1:
        check_fleet_room(memory_mib, vcpus, guests, jobs, room)
        return
    at_once = max(1, min(jobs, runs))
    who = f"{at_once} guests at once (--jobs {jobs})" if at_once > 1 else "one guest"
    if vcpus * at_once > room.cores:
        raise ConfigError(f"{who} of {vcpus} vCPU(s) need {vcpus * at_once} cores; this host has "
                          f"{room.cores}: lower vm.vcpus or --jobs")
    if memory_mib * at_once > room.memory_mib:
        raise ConfigError(f"{who} of {memory_mib} MiB need {memory_mib * at_once} MiB; this host has "
                          f"{room.memory_mib} MiB available (MemAvailable): lower vm.memory_mib or --jobs")


# ---- issue 30: fleets (docs/fleet.md) ----
# A fleet is a density experiment: its figures are memory, and a host operator packs more
# vCPUs than cores. Up to this many vCPUs per core are allowed (the timing figures of an
# overcommitted fleet describe the scheduler too: docs/fleet.md says so); memory never is.
FLEET_VCPUS_PER_CORE = 2


def check_fleet_room(memory_mib: int, vcpus: int, guests: int, jobs: int, room: HostRoom) -> None:
    """Refuse, in one line with the numbers, a fleet of ``guests`` guests the host cannot hold:
    their memory against ``MemAvailable``, their vCPUs against ``FLEET_VCPUS_PER_CORE`` per
    core. A fleet is one run: ``--jobs`` > 1 is refused with it (it would mix fleets)."""
    if jobs > 1:
        raise ConfigError(f"a fleet of {guests} guests is one run of guests booted together: run it with "
                          f"--jobs 1 (got --jobs {jobs})")
    if vcpus * guests > FLEET_VCPUS_PER_CORE * room.cores:
        raise ConfigError(f"a fleet of {guests} guests of {vcpus} vCPU(s) needs {vcpus * guests} vCPUs; this host "
                          f"has {room.cores} cores (at most {FLEET_VCPUS_PER_CORE} vCPUs a core for a fleet): "
                          f"lower guests or vm.vcpus")
    if memory_mib * guests > room.memory_mib:
        raise ConfigError(f"a fleet of {guests} guests of {memory_mib} MiB needs {memory_mib * guests} MiB; this "
                          f"host has {room.memory_mib} MiB available (MemAvailable): lower guests or vm.memory_mib")
