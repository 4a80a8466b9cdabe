"""Build everything a run needs into the cache and describe it in a manifest.

Building only: the packages come from the stack's archive (``stacks.StackPackages``: its
pins and private apt, ``apt.py``), handed to each step as download and source functions.

``build_all()`` is what ``balloon-harness build`` runs: for each guest stack
(``stacks.py``: bookworm = Linux 6.1 + QEMU 7.2, trixie = Linux 6.12 + QEMU 10.0)
the guest kernel, the stock and patched balloon modules with their images, and the
QEMU variants (stock, the RFC port, the review's designs). Each step is cached by
its inputs, so a warm build only checks keys. A run passes ``needs``
(:mod:`harness.artifacts.needs`): only the variants its arms name are built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from harness.artifacts import cache
from harness.artifacts.apt import PrivateApt
from harness.artifacts.initramfs import BALLOON_MODULE, GuestImage, build_image
from harness.artifacts.kernel import GuestKernel, build_guest_kernel
from harness.artifacts.kernel_tree import build_kernel_tree
from harness.artifacts.module import build_module_variant, fetch_driver_source, kbuild_root
from harness.artifacts.needs import Needs, for_stack
from harness.artifacts.patches import Series, design_series
from harness.artifacts.qemu import (
    build_qemu_tree,
    build_qemu_variant,
    fetch_source,
    qemu_version,
    source_tree,
)
from harness.artifacts.stacks import (
    DEFAULT_STACK,
    STACKS,
    ArchiveOptions,
    Pins,
    Stack,
    StackPackages,
    get_stack,
    lock_path,
)
from harness.artifacts.steps import say
from harness.artifacts.trees import KernelTree, QemuTree


@dataclass
class Artifacts:
    """What the runner needs for one stack: the guest kernel, one image per balloon module,
    the QEMUs. ``by_stack`` holds every stack built in this call (this one included)."""

    kernel: GuestKernel
    stack: str = DEFAULT_STACK
    pins: Optional[Pins] = None
    images: dict[str, GuestImage] = field(default_factory=dict)   # "stock", "patched", designs
    qemus: dict[str, Path] = field(default_factory=dict)          # "stock", "patched", designs
    modules: dict[str, Path] = field(default_factory=dict)        # the balloon .ko of each image
    inputs: dict[str, Any] = field(default_factory=dict)          # what each artifact was made from
    sources: dict[str, Path] = field(default_factory=dict)        # "qemu" tree, "linux" driver files
    # Built from users' source trees (arms with kernel/qemu = { source = ... }):
    tree_kernels: dict[KernelTree, GuestImage] = field(default_factory=dict)   # the image of each kernel
    tree_qemus: dict[QemuTree, Path] = field(default_factory=dict)
    trees: dict[str, dict[str, Any]] = field(default_factory=dict)   # "kernel <tree>" -> identity, compiler...
    manifest: Optional[Path] = None
    by_stack: dict[str, Artifacts] = field(default_factory=dict)

    def for_stack(self, name: str) -> Artifacts:
        if name not in self.by_stack:
            raise KeyError(f"stack {name!r} was not built in this call (built: {', '.join(self.by_stack)})")
        return self.by_stack[name]


def _describe(arts: Artifacts) -> dict[str, Any]:
    return {
        "stack": arts.stack,
        "pins": arts.pins.__dict__ if arts.pins else None,
        "guest_kernel": {"package": arts.kernel.package, "version": arts.kernel.version,
                         "release": arts.kernel.release, "vmlinuz": str(arts.kernel.vmlinuz)},
        "images": {k: {"initrd": str(v.initrd), "balloon_module": v.balloon_module,
                       "balloon_module_sha256": v.balloon_module_sha256, "host_key": v.host_key}
                   for k, v in arts.images.items()},
        "qemu": {k: str(v) for k, v in arts.qemus.items()},
        "qemu_versions": {k: qemu_version(v) for k, v in arts.qemus.items()},
        "qemu_sha256": {k: cache.file_sha256(v) for k, v in arts.qemus.items()},
        "inputs": arts.inputs,
        "own_trees": arts.trees,
    }


def _merge(old: Optional[dict[str, Any]], new: dict[str, Any]) -> dict[str, Any]:
    """A stack's description after a build of some of its variants (a scenario's): the
    variants built earlier from the same pins stay listed beside the new ones."""
    if not old or old.get("pins") != new.get("pins"):
        return new
    merged = dict(new)
    for key in ("images", "qemu", "qemu_versions", "qemu_sha256", "inputs", "own_trees"):
        merged[key] = {**old.get(key, {}), **new.get(key, {})}
    return merged


def write_manifest(arts: Artifacts, seconds: float) -> Path:
    """JSON listing every artifact with its inputs (versions, hashes, flags): the default
    stack's at the top (as before stacks existed), every stack built so far under ``stacks``."""
    path = cache.cache_root() / "manifest.json"
    try:  # stacks built by earlier calls stay listed
        stacks = json.loads(path.read_text()).get("stacks", {})
    except (OSError, ValueError):
        stacks = {}
    for name, a in arts.by_stack.items():
        stacks[name] = _merge(stacks.get(name), _describe(a))
    top = stacks.get(DEFAULT_STACK) or _describe(arts)
    manifest = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 2),
        "lock_file": str(lock_path()),
        **top,
        "stacks": stacks,
    }
    cache.write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path


def build_all(stacks: Optional[Iterable[str]] = None, update: bool = False,
              needs: Optional[Mapping[str, Needs]] = None, overlap: bool = True,
              archive: ArchiveOptions = ArchiveOptions()) -> Artifacts:
    """Everything a run needs for ``stacks`` (default: the RFC-era stack; with ``needs``,
    its stacks), from the cache or built; one process at a time per cache. With ``needs``
    only the variants named there (a scenario's arms, :func:`harness.artifacts.needs.needs_of`),
    else all of them. ``archive`` says where the packages come from (default: the host's
    sources). Returns the first stack's artifacts, with every stack's in ``by_stack``."""
    names = list(dict.fromkeys(stacks or (list(needs) if needs else None) or [DEFAULT_STACK]))
    for name in names:
        get_stack(name)  # an unknown name is refused before anything builds
    with cache.build_lock():
        start = time.monotonic()
        built = {name: build_stack(name, update, for_stack(needs, name), overlap, archive) for name in names}
        first = built[names[0]]
        for arts in built.values():
            arts.by_stack = built
        seconds = time.monotonic() - start
        first.manifest = write_manifest(first, seconds)
        for arts in built.values():
            arts.manifest = first.manifest
        say(f"all artifacts of {', '.join(names)} ready in {seconds:.1f}s; manifest: {first.manifest}")
        return first


def build_stack(name: str, update: bool = False, needs: Needs = Needs(), overlap: bool = True,
                archive: ArchiveOptions = ArchiveOptions()) -> Artifacts:
    """One stack's artifacts: every variant, or those ``needs`` names (the kernel always).

    With ``overlap`` the QEMUs build in a thread beside the guest side: QEMU's compile
    keeps the CPUs busy for minutes while the guest side mostly waits on downloads (the
    kernel package, linux-source, the Kbuild chroot's packages), so on an empty cache
    the guest side costs little more than nothing (benchmarks/build_times.py --cold)."""
    stack = get_stack(name)
    packages = StackPackages.open(stack, update, archive)   # fetching: stacks.py and apt.py
    pins, download, source = packages.pins, packages.download, packages.source

    qemu_series = {"patched": Series.load(stack.qemu_patch_dir), **design_series(stack.qemu_patch_dir)}
    qemu_series = {k: s for k, s in qemu_series.items() if needs.wants_qemu(k)}
    with_stock = needs.wants_qemu("stock")

    def qemus() -> QemuBuild:
        built = _build_qemus(name, pins.qemu_source_version, qemu_series, with_stock, source, stack.meson)
        for own in sorted(needs.qemu_trees, key=lambda q: q.describe()):
            built.trees[own], info = build_qemu_tree(own, stack.meson)
            built.inputs[f"qemu {own.describe()}"] = info
        return built

    if overlap and (qemu_series or with_stock or needs.qemu_trees):
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"qemu-{name}")
        pending = pool.submit(qemus)
        try:
            arts = _build_guest(name, stack, pins, packages.apt, needs, download)
        except BaseException:  # the guest side's error first, without waiting for the compile
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        built = pending.result()
        pool.shutdown()
    else:
        arts = _build_guest(name, stack, pins, packages.apt, needs, download)
        built = qemus()
    arts.qemus.update(built.binaries)
    arts.tree_qemus.update(built.trees)
    arts.trees.update({k: v for k, v in built.inputs.items() if k.startswith("qemu ")})
    arts.inputs.update(built.inputs)
    if built.source is not None:
        arts.sources["qemu"] = built.source
    return arts


def _build_guest(name: str, stack: Stack, pins: Pins, apt: PrivateApt, needs: Needs,
                 download: Callable[[str, str, Path], Path]) -> Artifacts:
    """The guest kernel, the balloon modules ``needs`` names and an image for each."""
    kernel = build_guest_kernel(pins.kernel_package, pins.kernel_version, download)
    arts = Artifacts(kernel=kernel, stack=name, pins=pins)
    # Modules: the stock one from the kernel package, the RFC port and the designs built.
    arts.modules["stock"] = kernel.module_path(BALLOON_MODULE)
    # The designs a stack has a port of: <patch dir>/designs/<name>/series (bookworm has
    # them all; the newer stacks have what has been ported to their sources).
    all_guest_series = {"patched": Series.load(stack.guest_patch_dir), **design_series(stack.guest_patch_dir)}
    # The driver files are those every series touches (one key whichever variants are built).
    touched = sorted({f for s in all_guest_series.values() for f in s.touched_files()})
    guest_series = {k: s for k, s in all_guest_series.items() if needs.wants_module(k)}
    if guest_series:
        driver = fetch_driver_source(stack.linux_source, pins.linux_source_version, touched, download)
        arts.sources["linux"] = driver.path
        root = kbuild_root(apt, pins.headers_package, pins.headers_version)
    for label, series in guest_series.items():
        arts.modules[label], arts.inputs[f"{label}_module"] = build_module_variant(
            kernel, label, series, driver, root, pins.headers_package)
    for label, module in arts.modules.items():
        if needs.wants_module(label):
            arts.images[label] = build_image(kernel, module, label)
    for tree in sorted(needs.kernel_trees, key=lambda k: k.describe()):
        own = build_kernel_tree(tree)   # the balloon driver is built in: an image without modules
        arts.tree_kernels[tree] = build_image(own, None, "built-in")
        arts.trees[f"kernel {tree.describe()}"] = own.info
    return arts


@dataclass
class QemuBuild:
    """The QEMU binaries of one stack, what they were built from, and the source tree."""

    binaries: dict[str, Path] = field(default_factory=dict)
    trees: dict[QemuTree, Path] = field(default_factory=dict)     # users' QEMU trees
    inputs: dict[str, Any] = field(default_factory=dict)
    source: Optional[Path] = None


def _build_qemus(name: str, version: str, series: dict[str, Series], with_stock: bool,
                 source: Callable[[str, str, Path], Path], meson: Optional[str]) -> QemuBuild:
    """The stock control and the patched variants, all from one kept build tree of the
    pinned source.

    The stock control is always the unpatched build of the same tree, never the host's
    packaged binary: the harness builds only the devices and features it uses (qemu.py),
    so a packaged full build would differ from the patched one by more than the patch.
    It costs nothing: the tree's own first build is that binary."""
    built = QemuBuild()
    if not (series or with_stock):
        return built

    def fetch(v: str) -> cache.Artifact:
        return fetch_source(v, source)

    built.source = source_tree(fetch(version))
    if with_stock:
        built.binaries["stock"], built.inputs["stock_qemu"] = build_qemu_variant(
            f"stock ({name})", None, version, fetch, meson)
    for label, s in series.items():
        built.binaries[label], built.inputs[f"{label}_qemu"] = build_qemu_variant(
            f"{label} ({name})", s, version, fetch, meson)
    return built


__all__ = ["ArchiveOptions", "Artifacts", "Needs", "STACKS", "build_all", "build_stack"]
