"""The guest image: Debian's cloud kernel plus an initramfs we assemble ourselves.

The initramfs is busybox (init, shell, tools), dropbear (sshd) with its
libraries, the virtio modules in load order, a host key generated at build time
(the harness pins it: no trust-on-first-use), and our ``usemem``. The balloon
driver is kept out of the base archive and appended as a second cpio archive
(the kernel unpacks concatenated archives in order), so the stock and the patched
image share one base and differ only in that one module. ``bh-step`` runs every step
command in a cgroup of its own (``harness.experiment.workload``).
"""

from __future__ import annotations

import functools
import re
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.artifacts import cache, cpio, debian
from harness.artifacts.kernel import GuestKernel
from harness.artifacts.steps import run_step, say
from harness.errors import BuildError
from harness.resources import data_dir

IMAGES = data_dir("images")
ROOTFS = IMAGES / "rootfs"
USEMEM_SRC = IMAGES / "usemem.c"
USEMEM_CFLAGS = ["-static", "-O2", "-Wall", "-Wextra"]
BH_STEP_SRC = IMAGES / "bh-step.c"
# The guest's half of the 2 MiB frame map (harness.probes.guestmap), at this path in the guest.
FRAMEMAP_SRC = IMAGES / "framemap.c"
FRAMEMAP_GUEST_PATH = "usr/bin/bh-framemap"

# Loaded at boot, with their dependencies, in this order. virtio_balloon is
# listed but shipped by the overlay archive (stock or patched). virtio_mem is for the
# virtio-mem mechanism (harness.mechanisms.virtio_mem); without its device it stays idle.
# virtio-rng (the file's name) comes right after the bus, so the guest's RNG is ready
# before sshd asks for it (harness.vm.spec.MachineSpec.entropy).
GUEST_MODULES = ["virtio_pci", "virtio-rng", "virtio_net", "virtio_balloon", "virtio_mem"]
BALLOON_MODULE = "virtio_balloon"


@dataclass(frozen=True)
class GuestImage:
    """What ``Machine`` boots: kernel, initrd, and the host key to pin."""

    kernel: GuestKernel
    initrd: Path
    host_key: str            # OpenSSH public key line of the guest's sshd
    balloon_module: str      # label: "stock" or "patched"
    balloon_module_sha256: str

    @property
    def vmlinuz(self) -> Path:
        return self.kernel.vmlinuz


def _tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): cache.file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _package_version(pkg: str) -> str:
    return debian.installed_version(pkg) or "unknown"


def build_usemem() -> Path:
    """Compile ``images/usemem.c`` statically; cached by source hash and compiler."""
    return _build_static(USEMEM_SRC, "usemem")


def build_bh_step() -> Path:
    """Compile ``images/bh-step.c`` (the step commands' cgroup runner) statically, cached alike."""
    return _build_static(BH_STEP_SRC, "bh-step")


def build_framemap() -> Path:
    """Compile ``images/framemap.c`` (the guest's frame-map reader) statically, cached alike."""
    return _build_static(FRAMEMAP_SRC, "framemap")


def _build_static(src: Path, name: str) -> Path:
    cc = debian.tool_path("cc")
    cc_version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    inputs = {"src": cache.file_sha256(src), "cc": cc_version, "cflags": USEMEM_CFLAGS}

    def build(out: Path, log: Path) -> None:
        run_step(f"compile {name}", [cc, *USEMEM_CFLAGS, "-o", out / name, src], log, quiet=True)

    return cache.ensure(name, inputs, build).path / name


def _shared_libs(binary: Path) -> list[Path]:
    """The shared objects ``binary`` loads (ldd), including the dynamic loader."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def _base_entries(kernel: GuestKernel, usemem: Path, stage: Path, bh_step: Path,
                  framemap: Path) -> list[cpio.Entry]:
    """Stage the base filesystem in ``stage`` and return its archive entries."""
    busybox = debian.tool_path("busybox")
    dropbear = debian.tool_path("dropbear")
    shutil.copytree(ROOTFS, stage, symlinks=True, dirs_exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "lib/modules", "proc", "sys",
              "tmp", "run", "root", "etc/dropbear", "var/log"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, stage / "bin/busybox")
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = stage / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (stage / "init").symlink_to("/bin/busybox")  # busybox init reads /etc/inittab
    shutil.copy2(dropbear, stage / "usr/sbin/dropbear")
    for lib in _shared_libs(dropbear):
        dest = stage / lib.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), dest)
    shutil.copy2(usemem, stage / "usr/bin/usemem")
    shutil.copy2(bh_step, stage / "usr/bin/bh-step")
    shutil.copy2(framemap, stage / FRAMEMAP_GUEST_PATH)
    order = kernel.load_order(GUEST_MODULES)
    names = []
    for ko in order:
        names.append(ko.name)
        if not ko.name.startswith(BALLOON_MODULE + "."):
            shutil.copy2(ko, stage / "lib/modules" / ko.name)
    (stage / "etc/bh-modules").write_text("\n".join(names) + "\n")
    # /dev/console must exist before devtmpfs is mounted, or init has no stdout.
    return [cpio.dir_entry("dev"), cpio.chardev_entry("dev/console", 5, 1),
            *cpio.tree_entries(stage)]


@functools.cache
def build_base(kernel: GuestKernel) -> cache.Artifact:
    """The shared base initramfs and its SSH host key (looked up once per process)."""
    debian.require_tools(["busybox", "dropbear", "dropbearkey", "cc"])
    usemem = build_usemem()
    bh_step = build_bh_step()
    framemap = build_framemap()
    inputs = {
        "kernel": kernel.image_key(),
        "busybox-static": _package_version("busybox-static"),
        "dropbear-bin": _package_version("dropbear-bin"),
        "usemem": cache.file_sha256(usemem),
        "bh-step": cache.file_sha256(bh_step),
        "framemap": cache.file_sha256(framemap),
        "rootfs": _tree_hash(ROOTFS),
        "modules": GUEST_MODULES,
        "layout": 3,
    }

    def build(out: Path, log: Path) -> None:
        stage = out / "stage"
        hostkey = stage / "etc/dropbear/dropbear_ed25519_host_key"
        hostkey.parent.mkdir(parents=True)
        run_step("generate guest host key", ["dropbearkey", "-t", "ed25519", "-f", hostkey],
                 log, quiet=True)
        pub = subprocess.run(["dropbearkey", "-y", "-f", str(hostkey)], capture_output=True, text=True)
        line = next((l for l in pub.stdout.splitlines() if l.startswith("ssh-ed25519 ")), None)
        if not line:
            raise BuildError(f"dropbearkey -y printed no public key:\n{pub.stdout}{pub.stderr}")
        (out / "host_key.pub").write_text(" ".join(line.split()[:2]) + "\n")
        cpio.write_archive(out / "base.cpio.gz", _base_entries(kernel, usemem, stage, bh_step, framemap))
        shutil.rmtree(stage)

    art = cache.ensure("initramfs-base", inputs, build)
    say(f"guest initramfs base: {'built' if art.fresh else 'cached'} ({art.path})")
    return art


def _file_entries(files: Sequence[tuple[str, Path]]) -> list[cpio.Entry]:
    """Archive entries placing each host file at its guest path (parents created, mode kept)."""
    entries: list[cpio.Entry] = []
    seen: set[str] = set()
    for guest_path, host_path in files:
        rel = guest_path.lstrip("/")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                entries.append(cpio.dir_entry(d))
        mode = stat.S_IMODE(host_path.stat().st_mode)
        entries.append(cpio.Entry(rel, stat.S_IFREG | mode, host_path.read_bytes()))
    return entries


def build_image(kernel: GuestKernel, balloon_ko: Optional[Path], label: str,
                files: Sequence[tuple[str, Path]] = ()) -> GuestImage:
    """Base initramfs + an overlay archive holding ``balloon_ko`` as virtio_balloon.ko, and
    the user's ``files`` (guest path, host path) on top, cached by their content. A kernel
    that ships no modules (built from a tree: the driver is built in) gets no module
    (``balloon_ko`` None); its image's module hash is the kernel's, which holds the driver."""
    base = build_base(kernel)
    if kernel.ships_modules and balloon_ko is None:
        raise BuildError(f"{kernel.package} loads its balloon driver as a module: an image needs one")
    ko_sha = cache.file_sha256(balloon_ko if kernel.ships_modules and balloon_ko else kernel.vmlinuz)
    inputs: dict = {"base": base.key, "module": ko_sha}
    if files:
        inputs["files"] = [[g, cache.file_sha256(h), stat.S_IMODE(h.stat().st_mode)] for g, h in files]

    def build(out: Path, log: Path) -> None:
        # Compressed too: the kernel finds a compressed archive at any offset,
        # an uncompressed one only at a 4-byte boundary. Later archives overwrite
        # earlier files of the same path, so the user's files win.
        parts = [base.path / "base.cpio.gz"]
        if kernel.ships_modules and balloon_ko is not None:
            overlay = out / "overlay.cpio.gz"
            cpio.write_archive(overlay, [
                cpio.dir_entry("lib"), cpio.dir_entry("lib/modules"),
                cpio.Entry(f"lib/modules/{BALLOON_MODULE}.ko", stat.S_IFREG | 0o644, balloon_ko.read_bytes()),
            ])
            parts.append(overlay)
        if files:
            user = out / "files.cpio.gz"
            cpio.write_archive(user, _file_entries(files))
            parts.append(user)
        with open(out / "initrd.img", "wb") as dst:
            for part in parts:
                dst.write(part.read_bytes())
        for part in parts[1:]:
            part.unlink()

    art = cache.ensure("initrd", inputs, build)
    host_key = (base.path / "host_key.pub").read_text().strip()
    return GuestImage(kernel, art.path / "initrd.img", host_key, label, ko_sha)
