"""The patched guest balloon driver, built out of tree against the guest kernel's headers.

Rebuilding a whole kernel for one driver would cost an hour; the RFC changes only
``drivers/virtio/virtio_balloon.c``, so we take that file from Debian's
``linux-source-6.1`` at the guest kernel's exact version, apply
``guest-kernel-patches/``, and build ``virtio_balloon.ko`` with Kbuild against
``linux-headers-<release>``. The stock module for the control arm comes straight
from the kernel ``.deb``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.artifacts import cache, debian
from harness.artifacts.kernel import GuestKernel
from harness.artifacts.patches import GUEST_PATCHES, Series
from harness.artifacts.steps import run_step, say
from harness.errors import BuildError, MissingDependency

SOURCE_PACKAGE = "linux-source-6.1"
DRIVER = "drivers/virtio/virtio_balloon.c"
KBUILD = GUEST_PATCHES / "Kbuild"   # obj-m := virtio_balloon.o


def source_version(kernel: GuestKernel) -> str:
    """``linux-source-6.1`` at the guest kernel's version; loudly another one if apt lacks it."""
    out = subprocess.run(["apt-cache", "madison", SOURCE_PACKAGE], capture_output=True, text=True).stdout
    versions = [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]
    if not versions:
        raise MissingDependency(f"apt knows no {SOURCE_PACKAGE}: run `sudo apt-get update` (Debian 12 main)")
    if kernel.version in versions:
        return kernel.version
    say(f"WARNING: {SOURCE_PACKAGE} {kernel.version} (the guest kernel's version) is not available; "
        f"building the driver from {versions[0]} instead. The patched module's base then differs "
        f"from the stock module's.")
    return versions[0]


def fetch_driver_source(version: str, files: list[str]) -> cache.Artifact:
    """The listed files of the kernel tree, from the ``linux-source`` package's tarball."""
    def build(out: Path, log: Path) -> None:
        deb = debian.download(SOURCE_PACKAGE, version, out / "deb", log)
        debian.extract(deb, out / "deb" / "x", log)
        tarballs = list((out / "deb" / "x" / "usr" / "src").glob("linux-source-*.tar.*"))
        if len(tarballs) != 1:
            raise BuildError(f"{deb.name}: expected one source tarball in /usr/src, found {tarballs}")
        top = tarballs[0].name.split(".tar")[0]
        run_step(f"extract {', '.join(files)} from {tarballs[0].name}",
                 ["tar", "-xf", tarballs[0], "-C", out, "--strip-components=1",
                  *[f"{top}/{f}" for f in files]], log)
        shutil.rmtree(out / "deb")

    return cache.ensure("linux-source", {"package": SOURCE_PACKAGE, "version": version, "files": files}, build)


def headers_dir(kernel: GuestKernel) -> Path:
    """``/usr/src/linux-headers-<release>``, installed through apt when missing and we may."""
    package = f"linux-headers-{kernel.release}"
    path = Path("/usr/src") / package
    installed = debian.installed_version(package)
    if installed != kernel.version:
        if os.geteuid() != 0:
            raise MissingDependency(f"kernel headers for the guest kernel are missing: "
                                    f"sudo apt-get install -y {package}={kernel.version}")
        say(f"installing {package} {kernel.version} (needed to build the balloon module)")
        run_step(f"apt-get install {package}",
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"{package}={kernel.version}"],
                 cache.cache_root() / "logs" / "apt-headers.log")
    if not (path / "Makefile").exists():
        raise MissingDependency(f"{path}/Makefile not found after installing {package}")
    return path


def build_patched_module(kernel: GuestKernel) -> tuple[Path, dict]:
    """The RFC port's ``virtio_balloon.ko``; returns (module path, cache inputs)."""
    return build_module_variant(kernel, "patched", Series.load(GUEST_PATCHES))


def build_module_variant(kernel: GuestKernel, label: str, series: Series) -> tuple[Path, dict]:
    """``virtio_balloon.ko`` with ``series`` applied to the stock driver; (module path, inputs)."""
    touched = series.touched_files()
    if touched != [DRIVER]:
        raise BuildError(f"guest patches must change only {DRIVER} (the module is built out of tree), "
                         f"they touch: {', '.join(touched)}")
    version = source_version(kernel)
    headers = headers_dir(kernel)
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    inputs = {"kernel": [kernel.package, kernel.version], "source": [SOURCE_PACKAGE, version],
              "headers": debian.installed_version(f"linux-headers-{kernel.release}"),
              "patches": series.hashes(), "kbuild": cache.file_sha256(KBUILD), "cc": cc}
    found = cache.lookup("module", inputs)
    if found:
        say(f"{label} virtio_balloon.ko: cached ({found.path})")
        return found.path / "virtio_balloon.ko", inputs
    src = fetch_driver_source(version, touched)

    def build(out: Path, log: Path) -> None:
        tree = out / "tree"
        (tree / Path(DRIVER).parent).mkdir(parents=True)
        shutil.copy2(src.path / DRIVER, tree / DRIVER)
        series.apply(tree, log)
        kdir = out / "kbuild"
        kdir.mkdir()
        shutil.copy2(tree / DRIVER, kdir / "virtio_balloon.c")
        shutil.copy2(KBUILD, kdir / "Kbuild")
        run_step("build virtio_balloon.ko out of tree",
                 ["make", "-C", headers, f"M={kdir}", "modules"], log)
        vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(kdir / "virtio_balloon.ko")],
                                  capture_output=True, text=True).stdout.split()
        if not vermagic or vermagic[0] != kernel.release:
            raise BuildError(f"built module's vermagic {vermagic} does not match {kernel.release}")
        shutil.copy2(kdir / "virtio_balloon.ko", out / "virtio_balloon.ko")
        shutil.copy2(tree / DRIVER, out / "virtio_balloon.c")  # the patched source, for reference
        shutil.rmtree(tree)
        shutil.rmtree(kdir)

    art = cache.ensure("module", inputs, build)
    say(f"{label} virtio_balloon.ko: {'built' if art.fresh else 'cached'} ({art.path})")
    return art.path / "virtio_balloon.ko", inputs
