"""Build everything a run needs into the cache and describe it in a manifest.

``build_all()`` is what ``balloon-harness build`` runs: each step is cached by
its inputs, so a warm build only checks keys. Stock QEMU and the stock module
come from Debian's packages (the unpatched control); the patched ones are built.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.artifacts import cache
from harness.artifacts.initramfs import BALLOON_MODULE, GuestImage, build_image, build_stock_image
from harness.artifacts.kernel import GuestKernel, build_guest_kernel
from harness.artifacts.module import build_module_variant, build_patched_module
from harness.artifacts.patches import GUEST_PATCHES, QEMU_PATCHES, design_series
from harness.artifacts.qemu import build_patched_qemu, build_qemu_variant, qemu_version, stock_qemu
from harness.artifacts.steps import say


@dataclass
class Artifacts:
    """What the runner needs: the guest kernel, one image per balloon module, the QEMUs."""

    kernel: GuestKernel
    images: dict[str, GuestImage] = field(default_factory=dict)   # "stock", "patched"
    qemus: dict[str, Path] = field(default_factory=dict)          # "stock", "patched"
    modules: dict[str, Path] = field(default_factory=dict)        # the balloon .ko of each image
    inputs: dict[str, Any] = field(default_factory=dict)          # what each artifact was made from
    manifest: Path | None = None


def write_manifest(arts: Artifacts, seconds: float) -> Path:
    """JSON listing every artifact with its inputs (versions, hashes, flags)."""
    manifest = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 2),
        "guest_kernel": {"package": arts.kernel.package, "version": arts.kernel.version,
                         "release": arts.kernel.release, "vmlinuz": str(arts.kernel.vmlinuz)},
        "images": {k: {"initrd": str(v.initrd), "balloon_module": v.balloon_module,
                       "balloon_module_sha256": v.balloon_module_sha256, "host_key": v.host_key}
                   for k, v in arts.images.items()},
        "qemu": {k: str(v) for k, v in arts.qemus.items()},
        "qemu_versions": {k: qemu_version(v) for k, v in arts.qemus.items()},
        "qemu_sha256": {k: cache.file_sha256(v) for k, v in arts.qemus.items()},
        "inputs": arts.inputs,
    }
    path = cache.cache_root() / "manifest.json"
    cache.write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def build_all() -> Artifacts:
    """Everything a run needs, from the cache or built; one process at a time per cache."""
    with cache.build_lock():
        return _build_all()


def _build_all() -> Artifacts:
    start = time.monotonic()
    kernel = build_guest_kernel()
    arts = Artifacts(kernel=kernel)
    arts.images["stock"] = build_stock_image(kernel)
    arts.modules["stock"] = kernel.module_path(BALLOON_MODULE)
    module, arts.inputs["patched_module"] = build_patched_module(kernel)
    arts.modules["patched"] = module
    arts.images["patched"] = build_image(kernel, module, "patched")
    arts.qemus["stock"] = stock_qemu()
    arts.qemus["patched"], arts.inputs["patched_qemu"] = build_patched_qemu()
    # The review's designs (issue 11): each folder under designs/ is one variant, named
    # by its folder, built on the stock sources and selected by an arm's qemu/module name.
    for name, series in design_series(QEMU_PATCHES).items():
        arts.qemus[name], arts.inputs[f"{name}_qemu"] = build_qemu_variant(name, series)
    for name, series in design_series(GUEST_PATCHES).items():
        arts.modules[name], arts.inputs[f"{name}_module"] = build_module_variant(kernel, name, series)
        arts.images[name] = build_image(kernel, arts.modules[name], name)
    seconds = time.monotonic() - start
    arts.manifest = write_manifest(arts, seconds)
    say(f"all artifacts ready in {seconds:.1f}s; manifest: {arts.manifest}")
    return arts
