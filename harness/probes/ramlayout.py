"""Where QEMU keeps the guest's RAM: guest-physical ranges and the host addresses behind them.

The guest's RAM is one or more QEMU RAM blocks (the machine's ``pc.ram``, a virtio-mem
device's memory backend), each one anonymous host mapping, mapped into the guest's
physical address space in pieces: q35 puts the first part of ``pc.ram`` below the PCI
hole and the rest above 4 GiB (``pc.ram @0x80000000`` at ``0x100000000`` for a guest of
more than 2.75 GiB), and a virtio-mem device's region sits above that. QEMU 7.2's
``info ramblock`` gives no host address, so the layout is read from two HMP commands
every QEMU since 2.10 has: ``info mtree -f`` (the flat view of the ``memory`` address
space: which guest-physical range is which RAM region at which offset) and ``gpa2hva``
(the host address of one guest-physical address).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.probes.hostmap import HUGE

log = logging.getLogger(__name__)

# "  0000000100000000-000000017fffffff (prio 0, ram): pc.ram @0000000080000000"
_FLAT = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+)\s+\(prio\s+-?[0-9]+,\s*ram\):\s+(\S+)(?:\s+@([0-9a-f]+))?",
                   re.IGNORECASE | re.ASCII)
_HVA = re.compile(r"is\s+(0x[0-9a-f]+)", re.IGNORECASE)
MIN_SEGMENT = HUGE      # ROM-sized pieces (the BIOS, option ROMs) are not guest RAM


@dataclass(frozen=True)
class RamSegment:
    """One guest-physical range of RAM and its host address (both inclusive start, size)."""

    region: str
    gpa: int
    size: int
    offset: int      # within the RAM region
    hva: int = 0


@dataclass(frozen=True)
class RamSpan:
    """One host mapping of guest RAM, 2 MiB-aligned, and the guest-physical pieces in it."""

    region: str
    hva: int
    size: int
    segments: tuple[RamSegment, ...]

    def gpa_of(self, hva: int) -> int:
        """The guest-physical address of host address ``hva`` in this span (the piece that
        holds it, or the nearest piece below for a 2 MiB range that starts in a ROM hole)."""
        seg = max((s for s in self.segments if s.hva <= hva), key=lambda s: s.hva, default=self.segments[0])
        return seg.gpa + (hva - seg.hva)


def parse_flatview(text: str) -> list[RamSegment]:
    """The RAM pieces of the flat view of address space ``memory`` in ``info mtree -f``."""
    views = re.split(r"^FlatView #\d+", text, flags=re.MULTILINE)
    view = next((v for v in views if re.search(r'AS "memory"', v)), text)
    out = []
    for line in view.splitlines():
        m = _FLAT.match(line)
        if m:
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            if hi < lo:   # not a range: not a line of QEMU's
                continue
            out.append(RamSegment(m.group(3), lo, hi - lo + 1, int(m.group(4) or "0", 16)))
    return out


def spans_from(segments: list[RamSegment]) -> list[RamSpan]:
    """Group pieces by region; each region's host mapping from its lowest to its highest
    offset, trimmed to whole 2 MiB ranges."""
    by_region: dict[str, list[RamSegment]] = {}
    for s in segments:
        by_region.setdefault(s.region, []).append(s)
    spans = []
    for region, segs in by_region.items():
        if sum(s.size for s in segs) < MIN_SEGMENT:
            continue
        base = min(s.hva - s.offset for s in segs)
        lo = min(s.hva for s in segs)
        hi = max(s.hva + s.size for s in segs)
        lo -= (lo - base) % HUGE
        hi -= (hi - base) % HUGE
        if base % HUGE:
            log.warning("RAM region %s is not 2 MiB-aligned on the host (%#x)", region, base)
            lo += HUGE - lo % HUGE
            hi -= hi % HUGE
        if hi > lo:
            spans.append(RamSpan(region, lo, hi - lo, tuple(sorted(segs, key=lambda s: s.hva))))
    return sorted(spans, key=lambda s: min(seg.gpa for seg in s.segments))


def read_layout(hmp: Callable[[str], str]) -> list[RamSpan]:
    """The guest-RAM mappings of a running QEMU, through ``hmp(command) -> text``."""
    pieces = []
    for s in parse_flatview(hmp("info mtree -f")):
        m = _HVA.search(hmp(f"gpa2hva {s.gpa:#x}"))
        if not m:
            log.warning("gpa2hva %#x: no host address (%s): left out of the frame map", s.gpa, s.region)
            continue
        pieces.append(RamSegment(s.region, s.gpa, s.size, s.offset, int(m.group(1), 16)))
    return spans_from(pieces)


def qmp_hmp(qmp: Any) -> Callable[[str], str]:
    """An HMP caller over a QMP connection (``human-monitor-command``)."""
    return lambda line: str(qmp.execute("human-monitor-command", {"command-line": line}))
