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


def test_both_readers_classify_huge_split_absent_and_agree(mapping):
    m, off, start = mapping
    if os.geteuid() != 0:
        pytest.skip("pagemap shows frame numbers to root only (CAP_SYS_ADMIN): the fallback reader needs them")
    _touch(m, off, range(5))
    if hm.scan_pagemap(os.getpid(), start, start + RANGES * hm.HUGE).huge_count == 0:
        pytest.skip("the host gave this mapping no huge page (memory fragmented?): nothing to classify")
    m.madvise(mmap.MADV_DONTNEED, off + 2 * hm.HUGE + 7 * hm.PAGE, hm.PAGE)   # a 4 KiB hole: split
    m.madvise(mmap.MADV_DONTNEED, off + 1 * hm.HUGE, hm.PAGE)   # another: a present run across ranges 1-2
    m.madvise(mmap.MADV_DONTNEED, off + 3 * hm.HUGE, hm.HUGE)                 # whole: absent
    for page in range(1, hm.PAGES_PER_HUGE, 2):                                # punch-holes: 256 left
        m.madvise(mmap.MADV_DONTNEED, off + 4 * hm.HUGE + page * hm.PAGE, hm.PAGE)
    assert m[off + 6 * hm.HUGE] == 0                                           # read only: zero page
    end = start + RANGES * hm.HUGE

    by_pagemap = hm.scan_pagemap(os.getpid(), start, end)
    readers = {"pagemap": by_pagemap}
    if hm.ioctl_supported():
        readers["ioctl"] = hm.scan_ioctl(os.getpid(), start, end)
    for name, r in readers.items():
        states = [hm.HOST_STATES[s] for s in r.states]
        assert states[2] == "split" and r.present[2] == hm.PAGES_PER_HUGE - 1, name
        assert states[1] == "split" and r.present[1] == hm.PAGES_PER_HUGE - 1, name
        assert states[4] == "split" and r.present[4] == hm.PAGES_PER_HUGE // 2, name
        assert states[3] == "absent" and states[5] == "absent" and states[6] == "absent", (name, states)
        assert states[7] == "absent", (name, states)
        # range 0 stays huge unless the host could not give it one at the fault
        for i in (0,):
            assert states[i] in ("huge", "split") and r.present[i] == hm.PAGES_PER_HUGE, (name, i, states)
        # the kernel's own count for this mapping, within one huge page (khugepaged may act between reads)
        assert abs(r.huge_count * 2048 - hm.smaps_anon_huge_kib(os.getpid(), start)) <= 2048, name
    if "ioctl" in readers:
        np.testing.assert_array_equal(readers["ioctl"].states, by_pagemap.states)
        np.testing.assert_array_equal(readers["ioctl"].present, by_pagemap.present)


def test_ioctl_is_used_where_the_kernel_has_it():
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    assert hm.ioctl_supported() == (release >= (6, 7))


def test_ranges_must_be_aligned():
    with pytest.raises(ValueError):
        hm.scan_pagemap(os.getpid(), hm.PAGE, hm.HUGE)
