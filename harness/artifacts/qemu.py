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
from typing import Callable, Optional

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


def _compiler() -> str:
    return subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def build_tree(version: str, fetch: Optional[Callable[[str], cache.Artifact]] = None) -> cache.Artifact:
    """A configured QEMU build tree of ``version`` with the stock binary built, kept in the
    cache so each variant (a patch series) costs an incremental rebuild, not a full one.

    The tree is a work area (variants patch and revert it), so its entry is mutable: the
    cache does not verify its files. About 1 GB per source version.
    """
    inputs = {"source": [SOURCE_PACKAGE, version], "configure": list(CONFIGURE_FLAGS), "cc": _compiler(),
              "meson": debian.installed_version("meson"), "layout": 1}
    found = cache.lookup("qemu-tree", inputs)
    if found:
        return found
    src = (fetch or fetch_source)(version)

    def build(out: Path, log: Path) -> None:
        tree = out / "src"
        say(f"copying QEMU {version} source tree")
        shutil.copytree(_source_tree(src), tree, symlinks=True)
        builddir = out / "build"
        builddir.mkdir()
        run_step(f"configure QEMU ({QEMU_TARGET})", [tree / "configure", *CONFIGURE_FLAGS], log, cwd=builddir)
        jobs = str(os.cpu_count() or 2)
        run_step(f"build {QEMU_BINARY} {version} (ninja -j{jobs}, 6-8 min on 2 cores; variants after it "
                 f"rebuild only what their patches touch)", ["ninja", "-j", jobs, QEMU_BINARY], log, cwd=builddir)

    return cache.ensure("qemu-tree", inputs, build, mutable=True)


def build_qemu_variant(label: str, series: Optional[Series], version: Optional[str] = None,
                       fetch: Optional[Callable[[str], cache.Artifact]] = None) -> tuple[Path, dict]:
    """``qemu-system-x86_64`` of ``version`` with ``series`` applied (None: unpatched, the
    stock control built from the same source); returns (binary, inputs).

    Each variant is its own cache entry keyed by its patches; building one applies its
    series to the shared tree, rebuilds incrementally, and reverts the series again.
    """
    _require_build_depends()
    version = version or source_version()
    inputs = {"source": [SOURCE_PACKAGE, version], "patches": series.hashes() if series else {},
              "configure": list(CONFIGURE_FLAGS), "cc": _compiler(), "meson": debian.installed_version("meson")}
    found = cache.lookup("qemu", inputs)
    if found:
        say(f"{label} QEMU: cached ({found.path})")
        return found.path / QEMU_BINARY, inputs
    tree = build_tree(version, fetch)

    def build(out: Path, log: Path) -> None:
        src, builddir = tree.path / "src", tree.path / "build"
        with cache.locked(tree.path.with_suffix(".variant.lock")):
            if series:
                series.apply(src, log, dry_run=True)
                series.apply(src, log)
            try:
                run_step(f"build {label} {QEMU_BINARY} (incremental)", ["ninja", "-j", str(os.cpu_count() or 2),
                                                                          QEMU_BINARY], log, cwd=builddir)
                shutil.copy2(builddir / QEMU_BINARY, out / QEMU_BINARY)
            finally:
                if series:
                    try:
                        series.revert(src, log)
                    except BaseException:
                        shutil.rmtree(tree.path, ignore_errors=True)  # a half-reverted tree is rebuilt
                        raise

    art = cache.ensure("qemu", inputs, build)
    binary = art.path / QEMU_BINARY
    say(f"{label} QEMU: {'built' if art.fresh else 'cached'} ({binary})")
    return binary, inputs


def build_patched_qemu() -> tuple[Path, dict]:
    """The RFC port: ``qemu-patches/`` on the stock source; returns (binary, inputs)."""
    return build_qemu_variant("patched", Series.load(QEMU_PATCHES))


if __name__ == "__main__":  # pragma: no cover - manual use: python -m harness.artifacts.qemu
    print(build_patched_qemu()[0], file=sys.stdout)
