"""A minimal ``newc`` cpio writer, the format the kernel unpacks as initramfs.

Writing it ourselves (instead of ``find | cpio``) lets the archive hold
``/dev/console`` without root, with fixed owners and times, so the same inputs
give the same bytes.
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Entry:
    name: str            # path inside the archive, no leading slash
    mode: int            # full st_mode (type and permission bits)
    data: bytes = b""    # file contents or symlink target
    rdev: tuple[int, int] = (0, 0)


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _write(out: _Writable, ino: int, e: Entry) -> None:
    name = e.name.encode() + b"\0"
    fields = [ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name), 0]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out.write(header + name + _pad(len(header) + len(name)))
    out.write(e.data + _pad(len(e.data)))


def write_archive(path: Path, entries: Iterable[Entry], compress: bool = True) -> None:
    """Write ``entries`` (parents before children) as a newc archive, gzip'd if asked."""
    opener = (lambda p: gzip.GzipFile(p, "wb", mtime=0)) if compress else (lambda p: open(p, "wb"))
    with opener(path) as out:
        ino = 1
        for e in entries:
            _write(out, ino, e)
            ino += 1
        _write(out, ino, Entry("TRAILER!!!", 0))


def tree_entries(root: Path, prefix: str = "") -> list[Entry]:
    """Entries for everything under ``root`` (dirs, files, symlinks), sorted, parents first."""
    entries = []
    for p in sorted(root.rglob("*")):
        rel = (prefix + "/" if prefix else "") + p.relative_to(root).as_posix()
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(rel, stat.S_IFLNK | 0o777, str(p.readlink()).encode()))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, stat.S_IFDIR | (st.st_mode & 0o7777)))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(rel, stat.S_IFREG | (st.st_mode & 0o7777), p.read_bytes()))
    return entries


def dir_entry(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm)


def chardev_entry(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, rdev=(major, minor))
