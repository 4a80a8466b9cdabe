"""QEMU binaries: the stock control and the patched variants, built from one source tree.

Each stack's QEMU source (a Debian source version) is configured once with only the
devices and features the harness uses and built unpatched (the stock control); every
patched variant is an incremental rebuild of that tree, so stock and patched differ
only by the series. Only ``qemu-system-x86_64`` is built (x86_64-softmmu), and only the
binary is kept in the cache: it finds its firmware through ``-L`` to Debian's firmware
folders. ``stock_qemu()`` (the host's packaged binary) remains the default of a bare
:class:`harness.vm.spec.MachineSpec` and the doctor's KVM probe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional

from harness.arch import QEMU_BINARY, QEMU_PACKAGE, QEMU_TARGET
from harness.artifacts import cache, debian
from harness.artifacts.patches import Series
from harness.artifacts.steps import run_step, say
from harness.artifacts.trees import QemuTree, export, identify, require_tree
from harness.errors import BuildError, ConfigError, MissingDependency

STOCK_QEMU = Path("/usr/bin") / QEMU_BINARY
STOCK_PACKAGE = QEMU_PACKAGE
SOURCE_PACKAGE = "qemu"
# Only what the harness uses is compiled (issue 22: 1277 instead of 1532 ninja steps for
# devices alone; the features cut further). Devices, as Kconfig symbols written into a
# device config of the copied tree (configs/devices/<target>/<DEVICE_CONFIG>.mak):
# Q35 is the guests' machine, I440FX the `-machine pc` of the qtest checkers
# (qemu-patches/verify_thp_order.py, designs/*); PC selects the ISA serial port of
# `-serial`, the RTC, the PIT and the ACPI the guests boot with. The virtio devices are
# those the arms use (net for SSH, the balloon, virtio-mem for its mechanism) and
# virtio-rng, which seeds the guest's RNG at boot (harness.vm.spec.MachineSpec.entropy).
DEVICES = ("Q35", "I440FX", "SERIAL_ISA", "VIRTIO_PCI", "VIRTIO_NET", "VIRTIO_BALLOON", "VIRTIO_MEM",
           "VIRTIO_RNG")
# Devices a QEMU release needs beside those, to link at all. 10.2's ACPI table builder (Q35
# selects ACPI_CXL) calls cxl_fmws_get_all_sorted, which only hw/cxl has (its stubs lack it):
# the link fails unless CXL is built, with the PCI expander bridge (PXB) it depends on and
# the CXL memory device whose helpers hw/cxl calls, and the PCIe root port its cxl-rp extends.
DEVICES_SINCE = (((10, 2), ("PXB", "CXL", "CXL_MEM_DEVICE", "PCIE_PORT")),)
DEVICE_CONFIG = "balloon-harness"
# Features: none by default, then what a run needs: KVM (the accelerator probe, and KVM
# hosts), TCG (on by default in every QEMU: enabled, not auto), slirp for `-netdev user`
# (the guests' SSH), the system libfdt, and malloc_trim, which Debian's own build has and
# which lets QEMU hand its freed heap back: it shows in the QEMU process's RSS, a measured
# figure, so stock and patched builds keep it like the packaged binary.
FEATURES = ("--enable-kvm", "--enable-tcg", "--enable-slirp", "--enable-fdt=system", "--enable-malloc-trim")
CONFIGURE_FLAGS = (
    f"--target-list={QEMU_TARGET}", "--disable-werror", "--disable-install-blobs",
    "--without-default-devices", f"--with-devices-{QEMU_TARGET.split('-')[0]}={DEVICE_CONFIG}",
    "--without-default-features", *FEATURES,
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


def _require_build_depends() -> None:
    missing = [p for p in BUILD_DEPENDS if not debian.installed_version(p)]
    if missing:
        raise MissingDependency(f"QEMU build needs: sudo apt-get install -y {' '.join(missing)} "
                                f"(or run `make bootstrap`)")


def fetch_source(version: str, source: Optional[Callable[[str, str, Path], Path]] = None) -> cache.Artifact:
    """QEMU's Debian source package at ``version`` (Debian's own patches applied by
    dpkg-source), through ``source(package, version, dest)`` (the stack's private apt)."""
    def build(out: Path, log: Path) -> None:
        if source is None:
            run_step(f"apt-get source qemu={version}",
                     ["apt-get", "source", "--only-source", f"{SOURCE_PACKAGE}={version}"], log, cwd=out)
        else:
            source(SOURCE_PACKAGE, version, out)

    return cache.ensure("qemu-source", {"package": SOURCE_PACKAGE, "version": version}, build)


def meson_python(version: str) -> Path:
    """A Python with meson ``version`` from PyPI, for QEMU releases that need a newer meson
    than the host's (QEMU 10.0 needs >= 1.5; Debian 12 has 1.0). Cached per version."""
    python = Path("/usr/bin/python3")  # the system Python: QEMU's configure builds its venv from it

    def build(out: Path, log: Path) -> None:
        run_step(f"python venv with meson {version} (for QEMU's configure)",
                 [python, "-m", "venv", out / "venv"], log)
        run_step(f"pip install meson=={version}", [out / "venv" / "bin" / "pip", "install", "-q",
                                                   f"meson=={version}"], log)

    art = cache.ensure("meson-venv", {"meson": version, "python": str(python), "layout": 1}, build)
    return art.path / "venv" / "bin" / "python3"


def source_tree(src: cache.Artifact) -> Path:
    trees = [p for p in src.path.iterdir() if p.is_dir() and p.name.startswith("qemu-")]
    if len(trees) != 1:
        raise MissingDependency(f"unexpected layout of {src.path}: {trees}")
    return trees[0]


def upstream_version(version: str) -> tuple[int, int]:
    """(major, minor) of a Debian QEMU source version: ``1:10.2.2+ds-1`` -> (10, 2)."""
    parts = version.split(":")[-1].split("+")[0].split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def devices_for(version: str) -> tuple[str, ...]:
    """:data:`DEVICES`, plus what this QEMU release needs to link (:data:`DEVICES_SINCE`)."""
    extra = [d for since, devices in DEVICES_SINCE if upstream_version(version) >= since for d in devices]
    return (*DEVICES, *extra)


def write_device_config(tree: Path, version: str = "") -> Path:
    """The device config ``--with-devices-<arch>`` names: :func:`devices_for` ``version``,
    nothing else (``--without-default-devices`` makes QEMU's Kconfig start from none)."""
    path = tree / "configs" / "devices" / QEMU_TARGET / f"{DEVICE_CONFIG}.mak"
    path.write_text("# balloon-harness: the devices its guests and checkers use (harness/artifacts/qemu.py)\n"
                    + "".join(f"CONFIG_{d}=y\n" for d in devices_for(version)))
    return path


def _compiler() -> str:
    return subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def build_tree(version: str, fetch: Optional[Callable[[str], cache.Artifact]] = None,
               meson: Optional[str] = None) -> cache.Artifact:
    """A configured QEMU build tree of ``version`` with the stock binary built, kept in the
    cache so each variant (a patch series) costs an incremental rebuild, not a full one.

    The tree is a work area (variants patch and revert it), so its entry is mutable: the
    cache does not verify its files. About 1 GB per source version.
    """
    inputs = {"source": [SOURCE_PACKAGE, version], "configure": list(CONFIGURE_FLAGS),
              "devices": list(devices_for(version)), "cc": _compiler(),
              "meson": meson or debian.installed_version("meson"), "layout": 1}
    found = cache.lookup("qemu-tree", inputs)
    if found:
        return found
    src = (fetch or fetch_source)(version)

    def build(out: Path, log: Path) -> None:
        tree = out / "src"
        say(f"copying QEMU {version} source tree")
        shutil.copytree(source_tree(src), tree, symlinks=True)
        _configure_and_compile(tree, out / "build", version, meson, log,
                               "about 300 CPU seconds for 7.2; variants after it rebuild only what their "
                               "patches touch")

    return cache.ensure("qemu-tree", inputs, build, mutable=True)


def _configure_and_compile(tree: Path, builddir: Path, version: str, meson: Optional[str], log: Path,
                           note: str) -> Path:
    """Configure ``tree`` (a copy: the device config is written into it) in ``builddir``
    with :data:`CONFIGURE_FLAGS` and build ``qemu-system-x86_64``; returns the binary.
    One recipe for Debian's sources and a user's tree alike."""
    write_device_config(tree, version)
    builddir.mkdir(parents=True, exist_ok=True)
    python = [f"--python={meson_python(meson)}"] if meson else []
    run_step(f"configure QEMU ({QEMU_TARGET})", [tree / "configure", *python, *CONFIGURE_FLAGS], log,
             cwd=builddir)
    jobs = str(os.cpu_count() or 2)
    run_step(f"build {QEMU_BINARY} {version} (ninja -j{jobs}: {note})", ["ninja", "-j", jobs, QEMU_BINARY], log,
             cwd=builddir)
    return builddir / QEMU_BINARY


def tree_version(tree: Path) -> str:
    """A QEMU tree's own version (its ``VERSION`` file, e.g. ``7.2.22``)."""
    try:
        return (tree / "VERSION").read_text().strip()
    except OSError:
        raise ConfigError(f"QEMU source {tree}: not a QEMU tree (it has no VERSION file)") from None


def build_qemu_tree(own: QemuTree, meson: Optional[str] = None) -> tuple[Path, dict]:
    """``qemu-system-x86_64`` of a user's QEMU tree, configured like the stacks' builds
    (:data:`CONFIGURE_FLAGS`, :func:`devices_for` its ``VERSION``); returns (binary, inputs).

    The tree is exported into the cache first (configure writes the device config into
    its source, and a git tree would update its submodules): the user's tree is only
    read. Cached by the tree's content (:func:`harness.artifacts.trees.identify`), the
    flags, the compiler and meson; only the binary is kept."""
    _require_build_depends()
    src = require_tree(own.source, "QEMU source", "configure", "QEMU")
    version = tree_version(src)
    identity = identify(src, own.ref)
    inputs = {"tree": identity.key, "version": version, "configure": list(CONFIGURE_FLAGS),
              "devices": list(devices_for(version)), "cc": _compiler(),
              "meson": meson or debian.installed_version("meson"), "layout": 1}
    info = {"tree": own.describe(), "identity": identity.as_dict(), "version": version, "compiler": inputs["cc"]}

    def build(out: Path, log: Path) -> None:
        say(f"copying the QEMU tree {identity.describe()} into the cache")
        tree = export(identity, out / "src")
        binary = _configure_and_compile(tree, out / "build", version, meson, log,
                                        "a full build: about 300 CPU seconds for 7.2")
        if own.ref is None and identify(src).key != identity.key:
            raise BuildError(f"{src} changed while it was being copied: built again at the next run")
        shutil.copy2(binary, out / QEMU_BINARY)
        shutil.rmtree(out / "build")
        shutil.rmtree(tree)

    art = cache.ensure("qemu-own", inputs, build)
    binary = art.path / QEMU_BINARY
    say(f"QEMU of {identity.describe()}: {'built' if art.fresh else 'cached'} ({binary})")
    return binary, {**info, "cache_key": art.key}


def build_qemu_variant(label: str, series: Optional[Series], version: str,
                       fetch: Optional[Callable[[str], cache.Artifact]] = None,
                       meson: Optional[str] = None) -> tuple[Path, dict]:
    """``qemu-system-x86_64`` of ``version`` with ``series`` applied (None: unpatched, the
    stock control built from the same source); returns (binary, inputs).

    Each variant is its own cache entry keyed by its patches; building one applies its
    series to the shared tree, rebuilds incrementally, and reverts the series again.
    """
    _require_build_depends()
    inputs = {"source": [SOURCE_PACKAGE, version], "patches": series.hashes() if series else {},
              "configure": list(CONFIGURE_FLAGS), "devices": list(devices_for(version)), "cc": _compiler(),
              "meson": meson or debian.installed_version("meson")}
    found = cache.lookup("qemu", inputs)
    if found:
        say(f"{label} QEMU: cached ({found.path})")
        return found.path / QEMU_BINARY, inputs
    tree = build_tree(version, fetch, meson)

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
