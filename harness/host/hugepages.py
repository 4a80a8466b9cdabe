"""Host huge pages for hugetlb-backed guests: reserve them before boot, give them back after.

A hugetlb guest (``memfd-hugetlb``, ``hugetlbfs``) takes its RAM from the host's pool of
huge pages of one size (``/sys/kernel/mm/hugepages/hugepages-<kB>kB``). The pool is
usually empty; :func:`reserve` adds the pages a guest needs on top of whatever the pool
holds (an administrator's pages are never used up nor given away), reads back what the
kernel got, and refuses in one line, before boot, when it got fewer (1 GiB pages need 1 GiB
of contiguous free memory: often only at boot). :func:`for_backing` does that for one
guest and, for ``hugetlbfs``, mounts a private hugetlbfs of the page size (for a ``tmpfs``
backing, a private tmpfs); leaving it gives everything back. Each change is journaled
first, so pages a SIGKILLed harness held go back at the next start (:func:`harness.host.journal.recover_leftovers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from harness.errors import ConfigError
from harness.host.journal import Journal, host_lock
from harness.procfs import parse_meminfo
from harness.vm.backing import PAGE_SIZES_KIB, Backing

log = logging.getLogger(__name__)

POOLS = Path("/sys/kernel/mm/hugepages")
MOUNT_ROOT = Path("/run/balloon-harness")


def page_kib_of(size: str | int) -> int:
    """``"2M"``/``"1G"`` or kB -> kB."""
    if isinstance(size, str):
        if size not in PAGE_SIZES_KIB:
            raise ConfigError(f"huge page size {size!r}: {' or '.join(PAGE_SIZES_KIB)}")
        return PAGE_SIZES_KIB[size]
    return int(size)


def pool_dir(page_kib: int) -> Path:
    return POOLS / f"hugepages-{page_kib}kB"


@dataclass(frozen=True)
class PoolState:
    """One pool's counters (pages)."""

    page_kib: int
    total: int
    free: int
    reserved: int
    surplus: int

    @property
    def used(self) -> int:
        """Pages in use: HugePages_Total - HugePages_Free for this size."""
        return self.total - self.free


def pool_state(page_kib: int) -> PoolState:
    d = pool_dir(page_kib)
    if not d.is_dir():
        raise ConfigError(f"host huge pages of {page_kib} kB: this host has no such pool ({d})")
    read = lambda f: int((d / f).read_text())  # noqa: E731
    return PoolState(page_kib, read("nr_hugepages"), read("free_hugepages"), read("resv_hugepages"),
                     read("surplus_hugepages"))


class Reservation:
    """Pages added to a pool by :func:`reserve`; ``release()`` (or leaving the ``with``)
    takes them out again."""

    def __init__(self, journal: Journal, entry: dict):
        self.journal = journal
        self.entry = entry
        self.pages = int(entry["added"])
        self.page_kib = int(entry["page_kib"])
        self._released = False

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with host_lock(self.journal.directory):
            nr = Path(self.entry["path"])
            try:
                current = int(nr.read_text())
                nr.write_text(str(max(0, current - self.pages)))
                self.journal.forget(self.entry)
                log.info("gave back %d huge pages of %d kB (nr_hugepages %d -> %s)", self.pages, self.page_kib,
                         current, nr.read_text().strip())
            except OSError as e:   # stays in the journal: the next start tries again
                log.error("could not give back %d huge pages of %d kB: %s", self.pages, self.page_kib, e)


def available_pages(page_kib: int) -> int:
    """Pages of ``page_kib`` the host's ``MemAvailable`` could hold (an upper bound: the
    kernel also needs them contiguous)."""
    return parse_meminfo(Path("/proc/meminfo").read_text()).get("MemAvailable", 0) // page_kib


def reserve(pages: int, size: str | int, journal: Optional[Journal] = None) -> Reservation:
    """Add ``pages`` huge pages of ``size`` to the host's pool, or refuse (ConfigError, one
    line with what the kernel gave) having taken nothing."""
    page_kib = page_kib_of(size)
    if pages < 1:
        raise ConfigError(f"host huge pages: asked for {pages} pages of {page_kib} kB")
    nr = pool_dir(page_kib) / "nr_hugepages"
    pool_state(page_kib)    # refuses a size the host has no pool of
    if not os.access(nr, os.W_OK):
        raise ConfigError(f"host huge pages of {page_kib} kB: cannot write {nr} (root needed)")
    available = available_pages(page_kib)
    if pages > available:
        raise ConfigError(f"host huge pages: asked for {pages} more pages of {page_kib} kB "
                          f"({pages * page_kib // 1024} MiB), the host has {available * page_kib // 1024} MiB "
                          "available (MemAvailable): refused before touching the pool")
    journal = journal or Journal()
    with host_lock(journal.directory):
        before = int(nr.read_text())
        entry = {"type": "hugepages", "page_kib": page_kib, "path": str(nr), "added": pages, "before": before}
        journal.record(entry)
        try:
            nr.write_text(str(before + pages))
        except OSError as e:
            log.info("nr_hugepages write: %s", e)
        got = int(nr.read_text()) - before
        if got < pages:
            hint = ": 1 GiB pages are safest reserved at boot, hugepagesz=1G hugepages=N" if page_kib >= 1 << 20 else ""
            nr.write_text(str(before))
            journal.forget(entry)
            raise ConfigError(f"host huge pages: asked for {pages} more pages of {page_kib} kB "
                              f"({pages * page_kib // 1024} MiB), the kernel gave {max(got, 0)} "
                              f"(nr_hugepages stayed {before}; not enough contiguous free memory{hint})")
    log.info("reserved %d huge pages of %d kB (nr_hugepages %d -> %d)", pages, page_kib, before, before + got)
    return Reservation(journal, entry)


def hugetlbfs_mounts() -> dict[int, Path]:
    """Mounted hugetlbfs by page size (kB), from /proc/mounts."""
    out: dict[int, Path] = {}
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "hugetlbfs":
            opts = dict(o.split("=", 1) for o in parts[3].split(",") if "=" in o)
            size = opts.get("pagesize", "")
            kib = _size_kib(size) if size else PAGE_SIZES_KIB["2M"]
            out.setdefault(kib, Path(parts[1].replace("\\040", " ")))
    return out


def _size_kib(text: str) -> int:
    units = {"K": 1, "M": 1024, "G": 1 << 20}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text) // 1024


@contextlib.contextmanager
def mounted(fstype: str, options: str, name: str, journal: Optional[Journal] = None) -> Iterator[Path]:
    """A filesystem of this process's own (``/run/balloon-harness/<name>-<pid>``), mounted
    for a guest's backing file (QEMU creates and unlinks it there), unmounted on leaving."""
    journal = journal or Journal()
    with host_lock(journal.directory):
        path, n = MOUNT_ROOT / f"{name}-{os.getpid()}", 1
        while os.path.ismount(path):    # another run of this harness at once (--jobs > 1)
            path, n = MOUNT_ROOT / f"{name}-{os.getpid()}-{n}", n + 1
        entry = {"type": "mount", "path": str(path)}
        path.mkdir(parents=True, exist_ok=True)
        journal.record(entry)
        proc = subprocess.run(["mount", "-t", fstype, "-o", options, "none", str(path)],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            journal.forget(entry)
            with contextlib.suppress(OSError):
                path.rmdir()
            raise ConfigError(f"could not mount a {fstype} ({options}) at {path}: "
                              f"{proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        with host_lock(journal.directory):
            proc = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
            if proc.returncode:
                log.error("could not unmount %s: %s", path, proc.stderr.strip())
            else:
                with contextlib.suppress(OSError):
                    path.rmdir()
                journal.forget(entry)


def mounted_hugetlbfs(page_kib: int, journal: Optional[Journal] = None):
    """A hugetlbfs of ``page_kib`` pages of this process's own."""
    return mounted("hugetlbfs", f"pagesize={page_kib}K", f"hugetlbfs-{page_kib}kB", journal)


def mounted_tmpfs(size_mib: int, journal: Optional[Journal] = None):
    """A tmpfs of ``size_mib`` whose files get huge pages where madvised (QEMU madvises
    MADV_HUGEPAGE on guest RAM): ``huge=advise``, as ``shmem_enabled=advise`` for memfds."""
    return mounted("tmpfs", f"huge=advise,size={size_mib}M,mode=0700", "tmpfs", journal)


def pages_for(backing: Backing, memory_mib: int) -> int:
    """Huge pages a guest of ``memory_mib`` (boot RAM plus any virtio-mem region) needs."""
    return memory_mib * 1024 // backing.page_kib


@contextlib.contextmanager
def for_backing(backing: Backing, memory_mib: int, journal: Optional[Journal] = None) -> Iterator[Backing]:
    """Make the host ready for one guest of ``memory_mib`` on ``backing``: nothing for
    anonymous and memfd; a tmpfs mount for ``tmpfs``; for hugetlb kinds the pool's pages
    (and for ``hugetlbfs``, a mount, unless ``backing.mem_path`` names one). Yields the
    backing to boot with (``mem_path`` filled in); gives everything back on leaving,
    however it leaves."""
    journal = journal or Journal()
    if backing.kind == "tmpfs" and backing.mem_path is None:
        with mounted_tmpfs(memory_mib + 64, journal) as path:
            yield replace(backing, mem_path=path)
        return
    if not backing.hugetlb:
        yield backing
        return
    with reserve(pages_for(backing, memory_mib), backing.page_kib, journal):
        if backing.kind == "hugetlbfs" and backing.mem_path is None:
            with mounted_hugetlbfs(backing.page_kib, journal) as path:
                yield replace(backing, mem_path=path)
        else:
            yield backing
