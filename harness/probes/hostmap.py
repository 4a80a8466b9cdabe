"""The host's backing of a mapping, 2 MiB range by 2 MiB range: huge, split, or absent.

``AnonHugePages`` says how much of QEMU's guest RAM the host maps with huge pages, not
which ranges: this module says which. Each 2 MiB-aligned range of a mapping is

- ``huge``: mapped by one PMD (a transparent huge page);
- ``split``: some of its 4 KiB pages present, mapped by PTEs (a huge page split by a
  4 KiB discard, or never collapsed);
- ``absent``: nothing present (never touched, or discarded whole).

Pages that map the shared zero page (a guest that read memory it never wrote) are not
memory the host spends and count as absent, as ``Rss`` and ``AnonHugePages`` see them.

Two readers, tested against each other (``tests/test_hostmap.py``):

- :func:`scan_ioctl`: the ``PAGEMAP_SCAN`` ioctl on ``/proc/PID/pagemap`` (Linux 6.7+),
  which returns runs of pages with the same categories and flags PMD-mapped THPs itself
  (``PAGE_IS_HUGE``): a few regions per GiB when the host is mostly huge.
- :func:`scan_pagemap`: the 64-bit ``/proc/PID/pagemap`` entries and ``/proc/kpageflags``
  of the frames they point to (any kernel; root for the frame numbers). pagemap has no
  "mapped by a PMD" bit: a range counts as huge when its 512 pages are present, map 512
  contiguous frames starting at a 2 MiB-aligned THP head. That also matches a THP mapped
  by 512 PTEs (rare: a PMD split without any discard), which the ioctl would call split.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from harness.procfs import is_uint
from harness.results.frames import HOST_ABSENT, HOST_HUGE, HOST_SPLIT, HOST_STATES

__all__ = ["HOST_ABSENT", "HOST_HUGE", "HOST_SPLIT", "HOST_STATES", "HostRanges", "scan", "scan_ioctl",
           "scan_pagemap", "ioctl_supported", "vma_anon_huge_kib", "smaps_anon_huge_kib"]

log = logging.getLogger(__name__)

PAGE = 4096
HUGE = 2 << 20
PAGES_PER_HUGE = HUGE // PAGE


# include/uapi/linux/fs.h (6.7+)
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5
PAGE_IS_HUGE = 1 << 6


class PmScanArg(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


class PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


# _IOWR('f', 16, struct pm_scan_arg)
PAGEMAP_SCAN = (3 << 30) | (ctypes.sizeof(PmScanArg) << 16) | (ord("f") << 8) | 16
SCAN_VEC_LEN = 4096

# /proc/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst)
PM_PRESENT = 1 << 63
PM_PFN_MASK = (1 << 55) - 1
# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
KPF_COMPOUND_HEAD = 15
KPF_THP = 22
KPF_ZERO_PAGE = 24


@dataclass(frozen=True)
class HostRanges:
    """One read of ``[start, start + n * 2 MiB)`` of a process: per range, the 4 KiB pages
    present (zero-page mappings excluded) and whether one huge page maps it."""

    start: int
    present: np.ndarray     # int16, 0..512
    huge: np.ndarray        # bool

    @property
    def states(self) -> np.ndarray:
        """uint8 per range: HOST_HUGE, HOST_SPLIT or HOST_ABSENT."""
        out = np.where(self.present > 0, HOST_SPLIT, HOST_ABSENT).astype(np.uint8)
        out[self.huge] = HOST_HUGE
        return out

    @property
    def huge_count(self) -> int:
        return int(self.huge.sum())


def _check_range(start: int, end: int) -> int:
    if start % HUGE or end % HUGE or end <= start:
        raise ValueError(f"range {start:#x}-{end:#x} is not 2 MiB-aligned and non-empty")
    return (end - start) // HUGE


_ioctl_works: dict[str, bool] = {}


def ioctl_supported() -> bool:
    """Whether this kernel has PAGEMAP_SCAN (tried once on this process's own pagemap)."""
    if "probe" not in _ioctl_works:
        try:
            fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        except OSError:
            return False
        try:
            arg = PmScanArg(size=ctypes.sizeof(PmScanArg), start=0, end=PAGE, return_mask=PAGE_IS_PRESENT)
            fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
            _ioctl_works["probe"] = True
        except OSError as e:
            # ENOTTY / EINVAL: no such ioctl. Anything else (EFAULT on an unmapped page 0 is not
            # an error: the walk skips holes) means the ioctl exists.
            _ioctl_works["probe"] = e.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP)
        finally:
            os.close(fd)
    return _ioctl_works["probe"]


def scan_ioctl(pid: int | str, start: int, end: int) -> HostRanges:
    """Classify with ``PAGEMAP_SCAN``: regions of equal (present, swapped, zero, huge)."""
    n = _check_range(start, end)
    npages = n * PAGES_PER_HUGE
    vec = (PageRegion * SCAN_VEC_LEN)()
    firsts: list[np.ndarray] = []     # present (non-zero-page) runs, in pages from start
    lasts: list[np.ndarray] = []
    huge = np.zeros(n, dtype=bool)
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        walk = start
        while walk < end:
            arg = PmScanArg(size=ctypes.sizeof(PmScanArg), start=walk, end=end,
                            vec=ctypes.addressof(vec), vec_len=SCAN_VEC_LEN,
                            category_anyof_mask=PAGE_IS_PRESENT,
                            return_mask=PAGE_IS_PRESENT | PAGE_IS_PFNZERO | PAGE_IS_HUGE)
            count = fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
            if count:
                regions = np.frombuffer(memoryview(vec).cast("B"), dtype=np.uint64, count=3 * count).reshape(count, 3)
                cats = regions[:, 2]
                real = (cats & PAGE_IS_PFNZERO) == 0
                firsts.append(((regions[real, 0] - start) // PAGE).astype(np.int64))
                lasts.append(((regions[real, 1] - start) // PAGE).astype(np.int64))
                is_huge = real & ((cats & PAGE_IS_HUGE) != 0)
                for s, e in regions[is_huge, :2]:
                    # a huge region covers whole 2 MiB ranges (several when adjacent THPs merge)
                    huge[(int(s) - start) // HUGE:(int(e) - start) // HUGE] = True
            if arg.walk_end <= walk:
                raise OSError(f"PAGEMAP_SCAN made no progress at {walk:#x}")
            walk = int(arg.walk_end)
    finally:
        os.close(fd)
    return HostRanges(start, _pages_per_range(firsts, lasts, npages, n), huge)


def _pages_per_range(firsts: list[np.ndarray], lasts: list[np.ndarray], npages: int, n: int) -> np.ndarray:
    """Pages per 2 MiB range covered by the sorted, disjoint runs [first, last): the number
    of covered pages below each range boundary, differenced (no per-page array: a 16 GiB
    guest is 4 M pages, and a mostly huge one a few hundred runs)."""
    if not firsts:
        return np.zeros(n, dtype=np.int16)
    s, e = np.concatenate(firsts), np.concatenate(lasts)
    cum = np.concatenate([[0], np.cumsum(e - s)])
    x = np.arange(n + 1, dtype=np.int64) * PAGES_PER_HUGE
    i = np.searchsorted(s, x, side="right")       # runs starting at or below each boundary
    beyond = np.where(i > 0, np.clip(e[np.maximum(i - 1, 0)] - x, 0, None), 0)
    covered = cum[i] - beyond
    return np.diff(covered).astype(np.int16)


def _kpageflags(fd: int, pfns: np.ndarray) -> np.ndarray:
    """``/proc/kpageflags`` of each frame, one read per run of consecutive frames."""
    out = np.zeros(len(pfns), dtype=np.uint64)
    if not len(pfns):
        return out
    order = np.argsort(pfns, kind="stable")
    sorted_pfns = pfns[order]
    breaks = np.flatnonzero(np.diff(sorted_pfns) != 1) + 1
    flags_sorted = np.empty(len(pfns), dtype=np.uint64)
    for run in np.split(np.arange(len(pfns)), breaks):
        first = int(sorted_pfns[run[0]])
        span = int(sorted_pfns[run[-1]]) - first + 1
        data = os.pread(fd, span * 8, first * 8)
        flags_sorted[run] = np.frombuffer(data, dtype=np.uint64)[(sorted_pfns[run] - first).astype(np.int64)]
    out[order] = flags_sorted
    return out


def scan_pagemap(pid: int | str, start: int, end: int) -> HostRanges:
    """Classify from ``/proc/PID/pagemap`` entries and ``/proc/kpageflags`` (any kernel)."""
    n = _check_range(start, end)
    entries = np.empty((n, PAGES_PER_HUGE), dtype=np.uint64)
    buf = entries.data.cast("B")
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:   # straight into the array, no copies
        f.seek(start // PAGE * 8)
        done = 0
        while done < len(buf):   # large reads may come back short
            got = f.readinto(buf[done:])
            if not got:
                raise OSError(f"/proc/{pid}/pagemap ended {len(buf) - done} bytes short of {end:#x}")
            done += got
    present = (entries & np.uint64(PM_PRESENT)) != 0
    pfns = (entries & np.uint64(PM_PFN_MASK)).view(np.int64)
    if present.any() and not pfns[present].any():
        raise PermissionError("/proc/PID/pagemap hides frame numbers (needs CAP_SYS_ADMIN)")
    kfd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        # The zero page is one frame mapped many times; a private anonymous frame appears
        # once. So only frames seen more than once need their flags read for it.
        seen = pfns[present]
        uniq, counts = np.unique(seen, return_counts=True)
        shared = uniq[counts > 1]
        zero_pfns = shared[(_kpageflags(kfd, shared) >> np.uint64(KPF_ZERO_PAGE)) & np.uint64(1) == 1]
        real = present & ~np.isin(pfns, zero_pfns) if len(zero_pfns) else present
        # Huge candidates: all 512 present, consecutive frames, starting 2 MiB-aligned.
        heads = pfns[:, 0]
        cand = real.all(axis=1) & (heads % PAGES_PER_HUGE == 0)
        rows = np.flatnonzero(cand)
        cand[rows] = (np.diff(pfns[rows], axis=1) == 1).all(axis=1)
        huge = np.zeros(n, dtype=bool)
        if cand.any():
            flags = _kpageflags(kfd, heads[cand])

            def bit(k: int) -> np.ndarray:
                return ((flags >> np.uint64(k)) & np.uint64(1)) == 1

            where = np.flatnonzero(cand)
            huge[where[bit(KPF_THP) & bit(KPF_COMPOUND_HEAD) & ~bit(KPF_ZERO_PAGE)]] = True
            # the huge zero page: 512 frames each mapped once here, zero all the same
            real[where[bit(KPF_ZERO_PAGE)]] = False
    finally:
        os.close(kfd)
    return HostRanges(start, real.sum(axis=1).astype(np.int16), huge)


def scan(pid: int | str, start: int, end: int, method: str = "auto") -> HostRanges:
    """``method``: ``ioctl``, ``pagemap``, or ``auto`` (the ioctl where the kernel has it)."""
    if method == "auto":
        method = "ioctl" if ioctl_supported() else "pagemap"
    if method == "ioctl":
        return scan_ioctl(pid, start, end)
    if method == "pagemap":
        return scan_pagemap(pid, start, end)
    raise ValueError(f"method {method!r}: ioctl, pagemap or auto")


def vma_anon_huge_kib(pid: int | str, addresses: list[int]) -> dict[int, int]:
    """``AnonHugePages`` (kB) of each VMA of ``/proc/PID/smaps`` holding one of ``addresses``,
    by the VMA's start (a VMA holding two of them counts once)."""
    with open(f"/proc/{pid}/smaps") as f:
        out, found = anon_huge_by_vma(f, addresses)
    missing = [hex(a) for a in addresses if a not in found]
    if missing:
        raise LookupError(f"no mapping holds {', '.join(missing)} in /proc/{pid}/smaps")
    return out


_VMA = re.compile(r"([0-9a-f]+)-([0-9a-f]+)", re.ASCII)


def anon_huge_by_vma(lines: Iterable[str], addresses: list[int]) -> tuple[dict[int, int], set[int]]:
    """The parse of :func:`vma_anon_huge_kib`: ({VMA start: AnonHugePages kB}, the addresses
    found in some VMA), from the lines of an smaps file."""
    out: dict[int, int] = {}
    found: set[int] = set()
    current: int | None = None
    for line in lines:
        head = line.split(" ", 1)[0]
        vma = _VMA.fullmatch(head)
        if vma:
            lo, hi = int(vma.group(1), 16), int(vma.group(2), 16)
            inside = [a for a in addresses if lo <= a < hi]
            found.update(inside)
            current = lo if inside else None
        elif current is not None and line.startswith("AnonHugePages:"):
            words = line.split()
            if len(words) >= 2 and is_uint(words[1]):
                out[current] = int(words[1])
    return out, found


def smaps_anon_huge_kib(pid: int | str, address: int) -> int:
    """``AnonHugePages`` of the VMA holding ``address`` in ``/proc/PID/smaps`` (kB)."""
    return sum(vma_anon_huge_kib(pid, [address]).values())
