"""The guest balloon driver, built out of tree against the guest kernel's headers.

Rebuilding a whole kernel for one driver would cost an hour; the RFC changes only
``drivers/virtio/virtio_balloon.c``, so we take that file from the stack's
``linux-source`` package at the guest kernel's exact version, apply a patch series
(the RFC port or a design), and build ``virtio_balloon.ko`` with Kbuild against
``linux-headers-<release>``. The stock module comes straight from the kernel ``.deb``.

Kbuild runs inside a minimal chroot of the stack's own Debian release (``mmdebstrap``,
cached): Debian's kbuild helpers are linked against their release's glibc (trixie's
``modpost`` needs glibc 2.38, bookworm has 2.36), and the kernel's flags need its own
compiler (6.12 uses ``-fmin-function-alignment``, which bookworm's gcc-12 refuses). So
a 6.12 module builds on a Debian 12 host and a 6.1 module on a Debian 13 host alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Callable

from harness.artifacts import cache, debian
from harness.artifacts.apt import PrivateApt, suites
from harness.artifacts.kernel import GuestKernel
from harness.artifacts.patches import GUEST_PATCHES, Series
from harness.artifacts.steps import run_step, say
from harness.errors import BuildError, MissingDependency

DRIVER = "drivers/virtio/virtio_balloon.c"
KBUILD = GUEST_PATCHES / "Kbuild"   # obj-m := virtio_balloon.o
CHROOT_PACKAGES = ("make", "kmod", "dwarves")


def fetch_driver_source(package: str, version: str, files: list[str],
                        download: Callable[[str, str, Path], Path]) -> cache.Artifact:
    """The listed files of the kernel tree, from the ``linux-source`` package's tarball."""
    def build(out: Path, log: Path) -> None:
        deb = download(package, version, out / "deb")
        debian.extract(deb, out / "deb" / "x", log)
        tarballs = list((out / "deb" / "x" / "usr" / "src").glob("linux-source-*.tar.*"))
        if len(tarballs) != 1:
            raise BuildError(f"{deb.name}: expected one source tarball in /usr/src, found {tarballs}")
        top = tarballs[0].name.split(".tar")[0]
        run_step(f"extract {', '.join(files)} from {tarballs[0].name}",
                 ["tar", "-xf", tarballs[0], "-C", out, "--strip-components=1",
                  *[f"{top}/{f}" for f in files]], log)
        shutil.rmtree(out / "deb")

    return cache.ensure("linux-source", {"package": package, "version": version, "files": files}, build)


def kbuild_root(apt: PrivateApt, headers: str, headers_version: str) -> cache.Artifact:
    """A minimal chroot of the stack's release with the guest kernel's headers, its compiler,
    make and kmod (about 1.5 min and 500 MB once per headers version)."""
    if os.geteuid() != 0:
        raise MissingDependency("building the guest module needs a chroot of the stack's release: "
                                "run `balloon-harness build` as root (or with sudo) once")
    mmdebstrap = debian.tool_path("mmdebstrap")
    inputs = {"release": apt.release, "headers": [headers, headers_version], "packages": list(CHROOT_PACKAGES),
              "layout": 1}

    def build(out: Path, log: Path) -> None:
        sources = out.parent / f".{out.name}.sources.list"
        sources.write_text("".join(f"deb {m} {s} main\n" for m, s in suites(apt.release, apt.mirrors)))
        # the stack's own rule on an expired Release (mmdebstrap's apt does not read the host's)
        valid = "false" if apt.allow_expired_release else "true"
        try:
            run_step(f"mmdebstrap a {apt.release} chroot for Kbuild ({headers}, about 1.5 min)",
                     [mmdebstrap, "--variant=minbase", "--mode=root", "--quiet",
                      f"--keyring={apt.keyring}", f'--aptopt=Acquire::Check-Valid-Until "{valid}"',
                      f"--include={headers}={headers_version},{','.join(CHROOT_PACKAGES)}",
                      apt.release, out / "root", sources], log)
        finally:
            sources.unlink(missing_ok=True)

    return cache.ensure("kbuild-root", inputs, build)


def _in_chroot(root: Path, cmd: list[str]) -> list[str | Path]:
    """``cmd`` in the chroot, with a /proc of its own: 7.2's objtool reads its stack limit
    from /proc and fails without it. The mount lives in a private mount namespace that ends
    with the command, so nothing stays mounted in the cache whatever happens."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ["chroot", root, *cmd]
    script = 'mount -t proc proc "$1/proc" && shift && exec chroot "$@"'
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, root, *cmd]


def build_module_variant(kernel: GuestKernel, label: str, series: Series, source: cache.Artifact,
                         root: cache.Artifact, headers: str) -> tuple[Path, dict]:
    """``virtio_balloon.ko`` with ``series`` applied to the stock driver ``source``, built in
    the Kbuild chroot ``root``; returns (module path, cache inputs)."""
    touched = series.touched_files()
    if touched != [DRIVER]:
        raise BuildError(f"guest patches must change only {DRIVER} (the module is built out of tree), "
                         f"they touch: {', '.join(touched)}")
    # The compiler is the chroot's (part of kbuild_root's key), not the host's.
    inputs = {"kernel": [kernel.package, kernel.version], "source": source.key, "kbuild_root": root.key,
              "patches": series.hashes(), "kbuild": cache.file_sha256(KBUILD), "layout": 2}

    def build(out: Path, log: Path) -> None:
        tree = out / "tree"
        (tree / Path(DRIVER).parent).mkdir(parents=True)
        shutil.copy2(source.path / DRIVER, tree / DRIVER)
        series.apply(tree, log)
        name = f"build-{uuid.uuid4().hex[:8]}"
        kdir = root.path / "root" / name
        kdir.mkdir()
        try:
            shutil.copy2(tree / DRIVER, kdir / "virtio_balloon.c")
            shutil.copy2(KBUILD, kdir / "Kbuild")
            run_step(f"build {label} virtio_balloon.ko ({kernel.release}, in the {root.inputs['release']} chroot)",
                     _in_chroot(root.path / "root", ["make", "-C", f"/usr/src/{headers}", f"M=/{name}", "modules"]),
                     log)
            vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(kdir / "virtio_balloon.ko")],
                                      capture_output=True, text=True).stdout.split()
            if not vermagic or vermagic[0] != kernel.release:
                raise BuildError(f"built module's vermagic {vermagic} does not match {kernel.release}")
            shutil.copy2(kdir / "virtio_balloon.ko", out / "virtio_balloon.ko")
            shutil.copy2(tree / DRIVER, out / "virtio_balloon.c")  # the patched source, for reference
        finally:
            shutil.rmtree(kdir, ignore_errors=True)
            shutil.rmtree(tree, ignore_errors=True)

    art = cache.ensure("module", inputs, build)
    say(f"{label} virtio_balloon.ko ({kernel.release}): {'built' if art.fresh else 'cached'} ({art.path})")
    return art.path / "virtio_balloon.ko", inputs
