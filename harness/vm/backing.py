"""``Backing``: what the host puts behind the guest's RAM, and QEMU's options for it.

The harness long booted every guest on QEMU's default: private anonymous memory
(``memory-backend-ram``, ``share=off``), where a balloon's discard is ``MADV_DONTNEED``.
Hosts today also back guests with

- ``memfd``: a shared memfd (``memory-backend-memfd``, ``share=on``); shmem, huge where
  the host's ``shmem_enabled`` allows. QEMU discards with ``fallocate(PUNCH_HOLE)``.
- ``tmpfs``: a file on a tmpfs mounted ``huge=advise`` (``memory-backend-file,align=2M``,
  ``share=on``): shmem THP that QEMU 7.2's memfd cannot give. That QEMU maps a memfd only
  4 KiB-aligned (``memory-backend-memfd`` has no ``align``), so a shmem huge page never fits
  a PMD of the mapping: measured, a memfd guest holds no huge page whatever ``shmem_enabled``
  says, a tmpfs file with ``align=2M`` all of them (docs/backings.md).
- ``memfd-hugetlb``: a memfd from the host's hugetlb pool (``hugetlb=on,hugetlbsize=``).
- ``hugetlbfs``: a file on a hugetlbfs mount (``memory-backend-file,mem-path=``).
  On both hugetlb kinds QEMU frees a host page only once every 4 KiB piece of it is in
  the balloon, and tracks only one partial host page per inflate request
  (``balloon_inflate_page`` in ``hw/virtio/virtio-balloon.c``): a request holds at most
  256 pages (1 MiB), less than one 2 MiB page.
- ``guest_memfd``: KVM's guest memory file (QEMU 11: ``memory-backend-memfd,
  x-guest-memfd=on,share=on``). It is a KVM object: refused under TCG, and by QEMU 7.2.

Options are the ones QEMU 7.2 (the oldest stack) has; later QEMUs keep them. The machine
takes the backend with ``-machine memory-backend=`` (QEMU 5.0+), its id ``pc.ram`` (q35's
own RAM id), so the RAM region keeps the name the frame map and the results know.

The default, anonymous without ``share``/``prealloc``, adds nothing to the command line:
a guest booted before backings existed boots with the same argv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.errors import ConfigError
from harness.results.scenario_schema import BACKING_KINDS, HUGETLB_BACKING_KINDS

KINDS = BACKING_KINDS                  # declared once, in the scenario schema
MOUNTED_KINDS = ("tmpfs", "hugetlbfs")       # a file in a folder the host room mounts
HUGETLB_KINDS = HUGETLB_BACKING_KINDS
PAGE_SIZES_KIB = {"2M": 2048, "1G": 1048576}
RAM_ID = "pc.ram"        # q35's default_ram_id: the RAM region's name either way

GUEST_MEMFD_REFUSAL = ("backing guest_memfd: needs KVM (guest_memfd is a KVM file, "
                       "KVM_CREATE_GUEST_MEMFD; QEMU 11's memory-backend-memfd,x-guest-memfd=on): "
                       "this guest runs under TCG")


@dataclass(frozen=True)
class Backing:
    """One backing of guest RAM. ``share``: None takes the kind's usual value (off for
    anonymous memory, on for memfd and hugetlbfs: shared is how they are used, and what
    makes QEMU punch holes). ``mem_path``: the mount of a ``hugetlbfs`` or ``tmpfs``
    backing (``harness.host.hugepages.for_backing`` mounts one)."""

    kind: str = "anonymous"
    page_size: Optional[str] = None
    share: Optional[bool] = None
    prealloc: bool = False
    mem_path: Optional[Path] = None

    # ---- reading -----------------------------------------------------------
    @classmethod
    def parse(cls, value: Any, where: str = "backing") -> Backing:
        """From a scenario value: ``"memfd"``, ``"hugetlbfs-2M"``, ``"memfd-hugetlb-1G"`` or a
        table ``{kind = "hugetlbfs", page_size = "2M", share = true, prealloc = false}``."""
        if isinstance(value, Backing):
            return value
        if isinstance(value, str):
            kind, page = value, None
            for size in PAGE_SIZES_KIB:
                if value.endswith("-" + size):
                    kind, page = value[: -len(size) - 1], size
            b = cls(kind=kind, page_size=page)
        elif isinstance(value, dict):
            unknown = set(value) - {"kind", "page_size", "share", "prealloc", "mem_path"}
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                                  "(kind, page_size, share, prealloc, mem_path)")
            if "kind" not in value:
                raise ConfigError(f"{where}: needs kind ({', '.join(KINDS)})")
            for key in ("share", "prealloc"):
                if key in value and not isinstance(value[key], bool):
                    raise ConfigError(f"{where}.{key}: true or false, got {value[key]!r}")
            b = cls(kind=str(value["kind"]), page_size=value.get("page_size"), share=value.get("share"),
                    prealloc=bool(value.get("prealloc", False)),
                    mem_path=Path(value["mem_path"]) if value.get("mem_path") else None)
        else:
            raise ConfigError(f"{where}: a kind ({', '.join(KINDS)}) or a table, got {value!r}")
        b.check(where)
        return b

    def check(self, where: str = "backing") -> None:
        """Refuse what QEMU cannot do with this backing, before anything starts."""
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.hugetlb:
            if self.page_size not in PAGE_SIZES_KIB:
                raise ConfigError(f"{where}: {self.kind} needs page_size "
                                  f"{' or '.join(PAGE_SIZES_KIB)}, got {self.page_size!r}")
        elif self.page_size is not None:
            raise ConfigError(f"{where}: page_size is for {' and '.join(HUGETLB_KINDS)}, not {self.kind}")
        if self.mem_path is not None and self.kind not in MOUNTED_KINDS:
            raise ConfigError(f"{where}: mem_path is for {' and '.join(MOUNTED_KINDS)}, not {self.kind}")
        if self.kind == "guest_memfd" and self.share is False:
            raise ConfigError(f"{where}: guest_memfd backs the guest shared (share=on) only")

    def check_guest(self, memory_mib: int, accel: Optional[str], where: str = "backing") -> None:
        """Refuse a guest this backing cannot hold: a size that is not whole host pages, or
        guest_memfd without KVM (``accel`` ``tcg``; ``auto``/None are decided at start)."""
        self.check(where)
        if self.kind == "guest_memfd" and accel == "tcg":
            raise ConfigError(GUEST_MEMFD_REFUSAL)
        if self.hugetlb and (memory_mib * 1024) % self.page_kib:
            raise ConfigError(f"{where}: {memory_mib} MiB of guest RAM is not a whole number of "
                              f"{self.page_size} pages")

    # ---- what it is ----------------------------------------------------------
    @property
    def hugetlb(self) -> bool:
        return self.kind in HUGETLB_KINDS

    @property
    def page_kib(self) -> int:
        """The host page size behind the guest's RAM (4 for THP-able kinds: THP is the
        kernel's choice, not the mapping's page size)."""
        return PAGE_SIZES_KIB[self.page_size] if self.hugetlb and self.page_size else 4

    @property
    def shared(self) -> bool:
        return self.share if self.share is not None else self.kind != "anonymous"

    @property
    def is_default(self) -> bool:
        """Today's guest: QEMU's own anonymous RAM, nothing on the command line."""
        return self.kind == "anonymous" and not self.shared and not self.prealloc

    @property
    def label(self) -> str:
        """Short name for tables: ``anonymous``, ``memfd``, ``hugetlbfs-2M``..."""
        return f"{self.kind}-{self.page_size}" if self.hugetlb else self.kind

    def as_dict(self) -> dict[str, Any]:
        """For metadata.json."""
        return {"kind": self.kind, "label": self.label, "page_size": self.page_size, "share": self.shared,
                "prealloc": self.prealloc, "mem_path": str(self.mem_path) if self.mem_path else None}

    # ---- QEMU ----------------------------------------------------------------
    def qemu_object(self, obj_id: str, size_mib: int) -> str:
        """The ``-object`` argument of a memory backend of ``size_mib`` with this backing."""
        onoff = lambda b: "on" if b else "off"  # noqa: E731
        tail = f",share={onoff(self.shared)}" + (",prealloc=on" if self.prealloc else "")
        if self.kind == "anonymous":
            return (f"memory-backend-ram,id={obj_id},size={size_mib}M"
                    + (",share=on" if self.shared else "") + (",prealloc=on" if self.prealloc else ""))
        if self.kind == "memfd":
            return f"memory-backend-memfd,id={obj_id},size={size_mib}M{tail}"
        if self.kind == "memfd-hugetlb":
            return f"memory-backend-memfd,id={obj_id},size={size_mib}M,hugetlb=on,hugetlbsize={self.page_size}{tail}"
        if self.kind in MOUNTED_KINDS:
            if self.mem_path is None:
                raise ConfigError(f"backing {self.kind}: no {self.kind} mount given (mem_path); "
                                  "harness.host.hugepages.for_backing() mounts one")
            align = ",align=2M" if self.kind == "tmpfs" else ""
            return f"memory-backend-file,id={obj_id},size={size_mib}M,mem-path={self.mem_path}{tail}{align}"
        if self.kind == "guest_memfd":
            return f"memory-backend-memfd,id={obj_id},size={size_mib}M,x-guest-memfd=on,share=on"
        raise ConfigError(f"backing: kind {self.kind!r}: choose one of {', '.join(KINDS)}")

    def machine_args(self, machine: str, memory_mib: int) -> tuple[str, list[str]]:
        """``(-machine value, extra args)`` for the guest's boot RAM: unchanged and none for
        the default, else ``memory-backend=pc.ram`` and the backend object."""
        if self.is_default:
            return machine, []
        return f"{machine},memory-backend={RAM_ID}", ["-object", self.qemu_object(RAM_ID, memory_mib)]


ANONYMOUS = Backing()
