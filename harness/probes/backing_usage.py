"""What the host spends on a guest's RAM, read the way its backing is accounted.

``AnonHugePages`` and ``Rss`` describe private anonymous memory only. On other backings
the same questions have other answers:

============  ==========================================  ===========================================
backing       host memory held by guest RAM ("held")      host huge pages held ("huge")
============  ==========================================  ===========================================
anonymous     ``Rss`` of the RAM mapping (smaps)          ``AnonHugePages`` of the mapping
memfd, tmpfs  the file's allocated blocks  (``fstat``     ``ShmemPmdMapped`` (+ ``FilePmdMapped``) of
              ``st_blocks`` via ``/proc/PID/fd``)         the mapping; host-wide ``ShmemHugePages``
hugetlb       the file's allocated blocks (same), =       ``Private_Hugetlb`` + ``Shared_Hugetlb`` of
              ``Private/Shared_Hugetlb`` of the mapping   the mapping; the pool's Total - Free
============  ==========================================  ===========================================

A shared mapping's ``Rss`` counts only pages this process has mapped, and a hole QEMU
punches in a memfd frees the file's pages whoever maps them: the file's own size is what
the host really holds. "Returned" is ``held`` before a move minus after it, on the host:
a discard that frees nothing shows as 0, whatever the guest's balloon says.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from harness.procfs import parse_meminfo

HUGETLB_KINDS = ("memfd-hugetlb", "hugetlbfs")


@dataclass(frozen=True)
class MappingFields:
    """The smaps fields (kB) of one VMA, its start, size and backing file (or '')."""

    start: int
    size_kib: int
    path: str
    inode: int
    fields: dict[str, int]
    device: tuple[int, int] = (0, 0)     # (major, minor) of the file's filesystem


def mapping_at(pid: int, address: int) -> MappingFields:
    """The VMA of ``/proc/PID/smaps`` that holds ``address``."""
    current: Optional[MappingFields] = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                if current is not None:
                    break
                lo, hi = (int(x, 16) for x in head.split("-"))
                if lo <= address < hi:
                    parts = line.split(None, 5)
                    major, minor = (int(x, 16) for x in parts[3].split(":"))
                    current = MappingFields(lo, (hi - lo) // 1024, parts[5].strip() if len(parts) > 5 else "",
                                            int(parts[4]), {}, (major, minor))
            elif current is not None:
                words = line.split()
                if len(words) >= 2 and words[0].endswith(":") and words[1].isdigit():
                    current.fields[words[0][:-1]] = int(words[1])
    if current is None:
        raise LookupError(f"no mapping holds {address:#x} in /proc/{pid}/smaps")
    return current


def file_allocated_kib(pid: int, inode: int, device: Optional[tuple[int, int]] = None) -> Optional[int]:
    """Allocated size (``st_blocks``) of the file behind inode ``inode`` (on ``device``,
    major and minor: inode numbers repeat across filesystems, and QEMU holds fds of several)
    among QEMU's open fds (QEMU keeps a memfd's and a hugetlbfs file's fd open; the file is
    unlinked)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            st = os.stat(fd)
        except OSError:
            continue
        if st.st_ino == inode and (device is None or (os.major(st.st_dev), os.minor(st.st_dev)) == device):
            return st.st_blocks * 512 // 1024
    return None


@dataclass(frozen=True)
class BackingUsage:
    """One reading (kB) of a guest's RAM mapping, per its backing; ``held_kib`` and
    ``huge_kib`` are the figures that compare across backings."""

    kind: str
    held_kib: int
    huge_kib: int
    rss_kib: int
    anon_huge_kib: int
    shmem_pmd_kib: int
    file_pmd_kib: int
    hugetlb_kib: int
    file_allocated_kib: Optional[int]
    host_shmem_huge_kib: int
    host_shmem_kib: int
    host_anon_huge_kib: int
    pool_used_pages: Optional[int]    # HugePages_Total - HugePages_Free of the backing's page size
    pool_free_pages: Optional[int]

    def as_dict(self) -> dict:
        return asdict(self)


def read_usage(pid: int, address: int, kind: str, page_kib: int = 4) -> BackingUsage:
    """Read the RAM mapping holding ``address`` (a host address of guest RAM: ``RamSpan.hva``
    from :mod:`harness.probes.ramlayout`) of QEMU ``pid``, with backing ``kind``."""
    m = mapping_at(pid, address)
    f = m.fields
    host = parse_meminfo(Path("/proc/meminfo").read_text())
    hugetlb = f.get("Private_Hugetlb", 0) + f.get("Shared_Hugetlb", 0)
    allocated = file_allocated_kib(pid, m.inode, m.device) if m.inode else None
    pool_used = pool_free = None
    if kind in HUGETLB_KINDS:
        d = Path(f"/sys/kernel/mm/hugepages/hugepages-{page_kib}kB")
        total, pool_free = int((d / "nr_hugepages").read_text()), int((d / "free_hugepages").read_text())
        pool_used = total - pool_free
    if kind == "anonymous":
        held, huge = f.get("Rss", 0), f.get("AnonHugePages", 0)
    elif kind in HUGETLB_KINDS:
        held, huge = (allocated if allocated is not None else hugetlb), hugetlb
    else:   # memfd, tmpfs (shmem): the file's pages, mapped here or not
        held = allocated if allocated is not None else f.get("Rss", 0)
        huge = f.get("ShmemPmdMapped", 0) + f.get("FilePmdMapped", 0)
    return BackingUsage(kind, held, huge, f.get("Rss", 0), f.get("AnonHugePages", 0), f.get("ShmemPmdMapped", 0),
                        f.get("FilePmdMapped", 0), hugetlb, allocated, host.get("ShmemHugePages", 0),
                        host.get("Shmem", 0), host.get("AnonHugePages", 0), pool_used, pool_free)


def returned_kib(before: BackingUsage, after: BackingUsage) -> int:
    """Memory the host got back between two readings (negative: the guest took more)."""
    return before.held_kib - after.held_kib


from harness.results.metrics import FREED_NOTHING_SHARE  # noqa: E402  (one threshold, the table's)


def freed_nothing(returned: int, given_up_kib: int) -> bool:
    """Whether a move's discards gave the host (almost) nothing back although the guest gave
    up ``given_up_kib`` (a hugetlb backing under the 4 KiB balloon): the table flags it
    instead of hiding it in a ratio."""
    return given_up_kib > 0 and returned < FREED_NOTHING_SHARE * given_up_kib
