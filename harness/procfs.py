"""Parsers for the /proc files both sides expose (host and guest read alike).

Pure functions over text, so the host probes and the guest helpers share one
implementation and tests can feed them captured text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What the kernel prints: ASCII digits. Python's \d, isdigit() and int() take other
# scripts' digits (and isdigit() superscripts that int() refuses): a line of anything else
# is not a reading.
_UINT = re.compile(r"[0-9]+")
_INT = re.compile(r"-?[0-9]+")


def is_uint(word: str) -> bool:
    """``word`` is a non-negative decimal number in ASCII digits, as the kernel prints one."""
    return _UINT.fullmatch(word) is not None


def is_int(word: str) -> bool:
    """:func:`is_uint`, or one with a leading minus."""
    return _INT.fullmatch(word) is not None


def parse_kv_kib(text: str) -> dict[str, int]:
    """``/proc/meminfo`` and ``smaps_rollup`` style: ``Key:   123 kB`` -> {Key: 123} (kB or bare)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^([\w()]+):\s+([0-9]+)(?:\s+kB)?\s*$", line)
        if m:
            values[m.group(1)] = int(m.group(2))
    return values


parse_meminfo = parse_kv_kib
parse_smaps_rollup = parse_kv_kib


USER_HZ = 100   # /proc/stat's tick, fixed by the kernel's ABI whatever CONFIG_HZ is


def kernel_cpu_seconds(text: str) -> float | None:
    """``/proc/stat``'s aggregate ``cpu`` line: system + irq + softirq, in seconds (None
    without one). Kernel work, such as a balloon driver's work item, is counted there."""
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["cpu"] and len(parts) >= 8 and all(is_uint(p) for p in parts[1:8]):
            _user, _nice, system, _idle, _iowait, irq, softirq = (int(p) for p in parts[1:8])
            return (system + irq + softirq) / USER_HZ
    return None


def parse_vmstat(text: str) -> dict[str, int]:
    """``/proc/vmstat``: ``name value`` per line."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and is_int(parts[1]):
            values[parts[0]] = int(parts[1])
    return values


@dataclass(frozen=True)
class BuddyZone:
    node: int
    zone: str
    free: tuple[int, ...]  # free blocks per order, index = order


def parse_buddyinfo(text: str) -> list[BuddyZone]:
    """``/proc/buddyinfo``: ``Node 0, zone   Normal   a b c ...``."""
    zones = []
    for line in text.splitlines():
        m = re.match(r"^Node\s+([0-9]+),\s+zone\s+(\S+)\s+(.*)$", line.strip())
        if m and all(is_uint(x) for x in m.group(3).split()):   # else not a buddyinfo line
            zones.append(BuddyZone(int(m.group(1)), m.group(2), tuple(int(x) for x in m.group(3).split())))
    return zones


def free_blocks_at_least(zones: list[BuddyZone], order: int) -> int:
    """Free blocks of ``order`` pages counted in units of that order (larger blocks split)."""
    total = 0
    for z in zones:
        for o, count in enumerate(z.free):
            if o >= order:
                total += count << (o - order)
    return total


def parse_thp_setting(text: str) -> str:
    """``always [madvise] never`` -> ``madvise`` (the bracketed choice)."""
    m = re.search(r"\[(\S+)\]", text)
    return m.group(1) if m else text.strip()
