"""Every x86-64 (and Debian amd64) assumption of the harness, in one place.

Porting the harness to another architecture starts here: the THP order, QEMU's
binary, target and machine type, the guest kernel's package flavour and the
folders Debian keeps QEMU's firmware in.
"""

from __future__ import annotations

from pathlib import Path

PAGE_KIB = 4
THP_ORDER = 9                                  # PMD-sized huge page: 512 base pages
HUGE_PAGE_KIB = PAGE_KIB << THP_ORDER          # 2048 kB

QEMU_BINARY = "qemu-system-x86_64"
QEMU_TARGET = "x86_64-softmmu"
QEMU_MACHINE = "q35"
QEMU_PACKAGE = "qemu-system-x86"               # Debian's package of QEMU_BINARY

KERNEL_FLAVOUR = "cloud-amd64"
KERNEL_META_PACKAGE = f"linux-image-{KERNEL_FLAVOUR}"
KERNEL_CONSOLE = "ttyS0"

# Debian's firmware folders: QEMU built from Debian's source carries no blobs.
DEBIAN_FIRMWARE_DIRS = (Path("/usr/share/qemu"), Path("/usr/share/seabios"), Path("/usr/lib/ipxe/qemu"))
