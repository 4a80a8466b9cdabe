"""QEMU binaries: Debian's packaged one (the stock control) and our patched build.

The patched QEMU is built from the *same* Debian source version as the installed
``qemu-system-x86`` package, so stock and patched differ only by our series. Only
``qemu-system-x86_64`` is built (x86_64-softmmu), and only the binary is kept in
the cache: it finds its firmware through ``-L`` to Debian's firmware folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.arch import QEMU_BINARY, QEMU_PACKAGE, QEMU_TARGET
from harness.artifacts import cache, debian
from harness.artifacts.patches import QEMU_PATCHES, Series
from harness.artifacts.steps import capture, run_step, say
from harness.errors import MissingDependency

STOCK_QEMU = Path("/usr/bin") / QEMU_BINARY
STOCK_PACKAGE = QEMU_PACKAGE
SOURCE_PACKAGE = "qemu"
CONFIGURE_FLAGS = (
    f"--target-list={QEMU_TARGET}", "--disable-docs", "--disable-werror",
    "--enable-slirp", "--enable-fdt=system",
    "--disable-gtk", "--disable-sdl", "--disable-vnc",
    "--disable-tools", "--disable-guest-agent", "--disable-install-blobs",
    "--disable-capstone",
)
# Debian packages the build needs (tools/bootstrap-system.sh installs them).
BUILD_DEPENDS = ("meson", "ninja-build", "pkg-config", "libglib2.0-dev", "libpixman-1-dev",
                 "libslirp-dev", "zlib1g-dev", "libfdt-dev", "flex", "bison", "dpkg-dev", "patch")


def stock_qemu() -> Path:
    """Debian's ``qemu-system-x86`` binary."""
    found = shutil.which(QEMU_BINARY)
    return Path(found) if found else STOCK_QEMU


def qemu_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def has_property(binary: Path, device: str, prop: str) -> bool:
    """Whether ``-device DEVICE,help`` lists ``prop`` (e.g. thp-order)."""
    out = subprocess.run([str(binary), "-device", f"{device},help"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL).stdout
    return any(line.strip().startswith(f"{prop}=") for line in out.splitlines())


def source_version() -> str:
    """The Debian source version of the installed stock QEMU (same base for both arms)."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", STOCK_PACKAGE],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise MissingDependency(f"{STOCK_PACKAGE} is not installed: sudo apt-get install -y {STOCK_PACKAGE}")
    version = proc.stdout.strip()
    available = capture(["apt-cache", "showsrc", SOURCE_PACKAGE], "apt-cache showsrc qemu")
    if f"Version: {version}" not in available:
        if "Package: qemu" not in available:
            raise MissingDependency("apt has no source for qemu: add a deb-src entry and run "
                                    "`sudo apt-get update` (make bootstrap does both)")
        newest = [l.split()[1] for l in available.splitlines() if l.startswith("Version:")][0]
        say(f"WARNING: stock QEMU is {version} but apt offers source {newest} only: building "
            f"{newest}; stock and patched QEMU differ by more than the patch (upgrade {STOCK_PACKAGE})")
        return newest
    return version


def _require_build_depends() -> None:
    missing = [p for p in BUILD_DEPENDS if not debian.installed_version(p)]
    if missing:
        raise MissingDependency(f"QEMU build needs: sudo apt-get install -y {' '.join(missing)} "
                                f"(or run `make bootstrap`)")


def fetch_source(version: str) -> cache.Artifact:
    """``apt-get source qemu=VERSION`` (Debian's own patches applied by dpkg-source)."""
    def build(out: Path, log: Path) -> None:
        run_step(f"apt-get source qemu={version}",
                 ["apt-get", "source", "--only-source", f"{SOURCE_PACKAGE}={version}"], log, cwd=out)

    return cache.ensure("qemu-source", {"package": SOURCE_PACKAGE, "version": version}, build)


def _source_tree(src: cache.Artifact) -> Path:
    trees = [p for p in src.path.iterdir() if p.is_dir() and p.name.startswith("qemu-")]
    if len(trees) != 1:
        raise MissingDependency(f"unexpected layout of {src.path}: {trees}")
    return trees[0]


def build_patched_qemu() -> tuple[Path, dict]:
    """Build ``qemu-system-x86_64`` with ``qemu-patches/`` applied; returns (binary, inputs)."""
    _require_build_depends()
    version = source_version()
    series = Series.load(QEMU_PATCHES)
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    inputs = {"source": [SOURCE_PACKAGE, version], "patches": series.hashes(),
              "configure": list(CONFIGURE_FLAGS), "cc": cc, "meson": debian.installed_version("meson")}
    found = cache.lookup("qemu", inputs)
    if found:
        say(f"patched QEMU: cached ({found.path})")
        return found.path / QEMU_BINARY, inputs
    src = fetch_source(version)

    def build(out: Path, log: Path) -> None:
        work = out / "work"
        tree = work / "src"
        say(f"copying QEMU {version} source tree")
        shutil.copytree(_source_tree(src), tree, symlinks=True)
        series.apply(tree, log, dry_run=True)
        series.apply(tree, log)
        builddir = work / "build"
        builddir.mkdir()
        run_step(f"configure QEMU ({QEMU_TARGET})", [tree / "configure", *CONFIGURE_FLAGS], log, cwd=builddir)
        jobs = str(os.cpu_count() or 2)
        run_step(f"build {QEMU_BINARY} (ninja -j{jobs}, about 5 min on 2 cores)",
                 ["ninja", "-j", jobs, QEMU_BINARY], log, cwd=builddir)
        shutil.copy2(builddir / QEMU_BINARY, out / QEMU_BINARY)
        shutil.rmtree(work)  # ~1 GB of objects; the binary is all a run needs

    art = cache.ensure("qemu", inputs, build)
    binary = art.path / QEMU_BINARY
    say(f"patched QEMU: {'built' if art.fresh else 'cached'} ({binary})")
    return binary, inputs


if __name__ == "__main__":  # pragma: no cover - manual use: python -m harness.artifacts.qemu
    print(build_patched_qemu()[0], file=sys.stdout)
