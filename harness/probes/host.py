"""Host-side probes: the QEMU process's memory and the host's THP state.

The RFC read host ``/proc/meminfo`` ``AnonHugePages``; with several guests or
other workloads on the host that mixes everything, so we also read the QEMU
process's own ``smaps_rollup``, which stays correct with ``--jobs N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.procfs import parse_meminfo, parse_smaps_rollup, parse_thp_setting, parse_vmstat

PROC = Path("/proc")
THP_SYSFS = Path("/sys/kernel/mm/transparent_hugepage")


@dataclass(frozen=True)
class ProcessMemory:
    """From ``/proc/PID/smaps_rollup`` (kB)."""

    rss_kib: int
    anon_huge_kib: int
    anon_kib: int


def process_memory(pid: int) -> ProcessMemory:
    v = parse_smaps_rollup((PROC / str(pid) / "smaps_rollup").read_text())
    return ProcessMemory(v.get("Rss", 0), v.get("AnonHugePages", 0), v.get("Anonymous", 0))


def meminfo() -> dict[str, int]:
    return parse_meminfo((PROC / "meminfo").read_text())


def thp_counters() -> dict[str, int]:
    """The ``thp_*`` counters of ``/proc/vmstat`` (splits, faults, collapses)."""
    return {k: v for k, v in parse_vmstat((PROC / "vmstat").read_text()).items() if k.startswith("thp_")}


def thp_settings() -> dict[str, str]:
    """Host THP mode, defrag policy and khugepaged's defrag switch."""
    out = {}
    for name, rel in (("enabled", "enabled"), ("defrag", "defrag"),
                      ("khugepaged_defrag", "khugepaged/defrag")):
        try:
            out[name] = parse_thp_setting((THP_SYSFS / rel).read_text())
        except OSError:
            out[name] = "unavailable"
    return out
