"""Build everything a run needs into the cache and describe it in a manifest.

``build_all()`` is what ``balloon-harness build`` runs: each step is cached by
its inputs, so a warm build only checks keys.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.build import cache
from harness.build.initramfs import GuestImage, build_stock_image
from harness.build.qemu import stock_qemu
from harness.build.kernel import GuestKernel, build_guest_kernel
from harness.build.steps import say


@dataclass
class Artifacts:
    """What the runner needs: the guest kernel and one image per balloon module."""

    kernel: GuestKernel
    images: dict[str, GuestImage] = field(default_factory=dict)   # "stock", "patched"
    qemus: dict[str, Path] = field(default_factory=dict)          # "stock", "patched"
    manifest: Path | None = None


def _describe_image(img: GuestImage) -> dict:
    return {"initrd": str(img.initrd), "balloon_module": img.balloon_module,
            "balloon_module_sha256": img.balloon_module_sha256, "host_key": img.host_key}


def write_manifest(arts: Artifacts, seconds: float) -> Path:
    """JSON listing every artifact with its inputs (versions, hashes, flags)."""
    manifest = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 2),
        "guest_kernel": {"package": arts.kernel.package, "version": arts.kernel.version,
                         "release": arts.kernel.release, "vmlinuz": str(arts.kernel.vmlinuz)},
        "images": {k: _describe_image(v) for k, v in arts.images.items()},
        "qemu": {k: str(v) for k, v in arts.qemus.items()},
        "cache_entries": _cache_inputs(),
    }
    path = cache.cache_root() / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def _cache_inputs() -> dict[str, dict]:
    out: dict[str, dict] = {}
    root = cache.cache_root()
    for inputs_file in sorted(root.glob(f"*/*/{cache.INPUTS_FILE}")):
        entry = inputs_file.parent
        out[f"{entry.parent.name}/{entry.name}"] = json.loads(inputs_file.read_text())
    return out


def build_all() -> Artifacts:
    start = time.monotonic()
    kernel = build_guest_kernel()
    arts = Artifacts(kernel=kernel)
    arts.images["stock"] = build_stock_image(kernel)
    arts.qemus["stock"] = stock_qemu()
    seconds = time.monotonic() - start
    arts.manifest = write_manifest(arts, seconds)
    say(f"all artifacts ready in {seconds:.1f}s; manifest: {arts.manifest}")
    return arts
