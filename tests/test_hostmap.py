"""The host's 2 MiB map on this host's real /proc, with a mapping the test makes itself.

No guest: the test maps anonymous memory, asks for huge pages (MADV_HUGEPAGE), touches
it, discards 4 KiB of one huge page (MADV_DONTNEED, what QEMU does for a 4 KiB balloon
page), discards one huge page whole, reads one untouched range (the zero page), and
checks what both readers (PAGEMAP_SCAN and pagemap + kpageflags) say against what it did
and against the kernel's own AnonHugePages for the mapping.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from harness.probes import hostmap as hm

RANGES = 8


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unavailable"
    return text.split("[")[1].split("]")[0]


@pytest.fixture
def mapping():
    """A private anonymous mapping of RANGES 2 MiB ranges, 2 MiB-aligned, MADV_HUGEPAGE."""
    if _thp_mode() not in ("always", "madvise"):
        pytest.skip(f"host THP is {_thp_mode()!r}: no huge pages to classify")
    m = mmap.mmap(-1, (RANGES + 1) * hm.HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = (-base) % hm.HUGE
    m.madvise(mmap.MADV_HUGEPAGE, off, RANGES * hm.HUGE)
    yield m, off, base + off
    m.close()


def _touch(m: mmap.mmap, off: int, ranges: range) -> None:
    for r in ranges:
        for page in range(hm.PAGES_PER_HUGE):
            m[off + r * hm.HUGE + page * hm.PAGE] = 1


def _shape(m: mmap.mmap, off: int) -> None:
    """Ranges 0-4 touched; 1 and 2 lose one 4 KiB page each (split), 3 is discarded whole
    (absent), 4 keeps every other page (split, 256 present); 5-7 never written, 6 read once."""
    _touch(m, off, range(5))
    m.madvise(mmap.MADV_DONTNEED, off + 2 * hm.HUGE + 7 * hm.PAGE, hm.PAGE)   # a 4 KiB hole: split
    m.madvise(mmap.MADV_DONTNEED, off + 1 * hm.HUGE, hm.PAGE)   # another: a present run across ranges 1-2
    m.madvise(mmap.MADV_DONTNEED, off + 3 * hm.HUGE, hm.HUGE)                 # whole: absent
    for page in range(1, hm.PAGES_PER_HUGE, 2):                                # punch-holes: 256 left
        m.madvise(mmap.MADV_DONTNEED, off + 4 * hm.HUGE + page * hm.PAGE, hm.PAGE)
    assert m[off + 6 * hm.HUGE] == 0                                           # read only: zero page


def _read(reader: str, start: int) -> tuple[hm.HostRanges, int]:
    """A reading and the kernel's AnonHugePages for the mapping, the same before and after it
    (khugepaged may collapse a range meanwhile: then read again)."""
    for _ in range(5):
        before = hm.smaps_anon_huge_kib(os.getpid(), start)
        r = (hm.scan_ioctl if reader == "ioctl" else hm.scan_pagemap)(os.getpid(), start, start + RANGES * hm.HUGE)
        if hm.smaps_anon_huge_kib(os.getpid(), start) == before:
            return r, before
    pytest.fail("the mapping's AnonHugePages changed during every one of 5 readings")


@pytest.mark.parametrize("reader", ["ioctl", "pagemap"])
def test_each_reader_classifies_huge_split_absent_as_the_kernel_counts(mapping, reader):
    """PAGEMAP_SCAN needs no root (kernel >= 6.7); pagemap + kpageflags does (frame numbers)."""
    if reader == "ioctl" and not hm.ioctl_supported():
        pytest.skip(f"PAGEMAP_SCAN needs Linux 6.7; this host runs {os.uname().release}")
    if reader == "pagemap" and os.geteuid() != 0:
        pytest.skip("pagemap shows frame numbers to root only (CAP_SYS_ADMIN): the fallback reader needs them")
    m, off, start = mapping
    _shape(m, off)
    r, kernel_kib = _read(reader, start)
    states = [hm.HOST_STATES[s] for s in r.states]
    assert r.present.tolist() == [hm.PAGES_PER_HUGE, hm.PAGES_PER_HUGE - 1, hm.PAGES_PER_HUGE - 1, 0,
                                  hm.PAGES_PER_HUGE // 2, 0, 0, 0], (reader, states)
    assert states[1:] == ["split", "split", "absent", "split", "absent", "absent", "absent"], (reader, states)
    # the kernel's own count for this mapping, exactly (read while it did not change)
    assert r.huge_count * 2048 == kernel_kib, (reader, states, kernel_kib)
    if kernel_kib == 0:
        pytest.skip(f"the host gave this mapping no huge page (THP {_thp_mode()!r}, memory fragmented?): "
                    "only the split and absent ranges were checked")
    assert states[0] == "huge", (reader, states)     # the one range touched whole and left whole


def test_both_readers_agree(mapping):
    if not hm.ioctl_supported() or os.geteuid() != 0:
        pytest.skip("needs both readers: PAGEMAP_SCAN (Linux 6.7) and root (pagemap frame numbers)")
    m, off, start = mapping
    _shape(m, off)
    end = start + RANGES * hm.HUGE
    by_pagemap = hm.scan_pagemap(os.getpid(), start, end)
    by_ioctl = hm.scan_ioctl(os.getpid(), start, end)
    np.testing.assert_array_equal(by_ioctl.states, by_pagemap.states)
    np.testing.assert_array_equal(by_ioctl.present, by_pagemap.present)


def test_ioctl_is_used_where_the_kernel_has_it():
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    assert hm.ioctl_supported() == (release >= (6, 7))


def test_ranges_must_be_aligned():
    with pytest.raises(ValueError):
        hm.scan_pagemap(os.getpid(), hm.PAGE, hm.HUGE)
