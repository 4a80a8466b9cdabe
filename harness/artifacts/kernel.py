"""The guest kernel: Debian's current cloud kernel, taken from its ``.deb``.

We boot the stock Debian cloud kernel (small, virtio drivers as modules) rather
than building one: the RFC only touches the balloon driver, which we build out of
tree. ``linux-image-cloud-amd64`` is resolved to its versioned package so the
cache key and manifest name the exact kernel.
"""

from __future__ import annotations

import lzma
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.arch import KERNEL_META_PACKAGE
from harness.artifacts import cache, debian
from harness.artifacts.steps import run_step, say

META_PACKAGE = KERNEL_META_PACKAGE


@dataclass(frozen=True)
class GuestKernel:
    package: str          # linux-image-6.1.0-NN-cloud-amd64
    version: str          # Debian version, e.g. 6.1.192-2
    release: str          # uname -r, e.g. 6.1.0-NN-cloud-amd64
    root: Path            # the artifact folder

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    def module_path(self, name: str) -> Path:
        """Path of module ``name`` (``virtio_balloon``) inside the unpacked kernel."""
        for rel in _modules_dep(self.modules_dir):
            if Path(rel).name.split(".ko")[0] == name:
                return self.modules_dir / rel
        raise KeyError(f"module {name} not found in {self.package}")

    def load_order(self, names: list[str]) -> list[Path]:
        """Modules ``names`` and their dependencies, each after what it needs."""
        deps = _modules_dep(self.modules_dir)
        by_name = {Path(rel).name.split(".ko")[0]: rel for rel in deps}
        order: list[str] = []

        def visit(rel: str) -> None:
            if rel in order:
                return
            for dep in deps[rel]:
                visit(dep)
            order.append(rel)

        for name in names:
            if name not in by_name:
                raise KeyError(f"module {name} not found in {self.package}")
            visit(by_name[name])
        return [self.modules_dir / rel for rel in order]


def _modules_dep(modules_dir: Path) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" in line:
            mod, rest = line.split(":", 1)
            deps[mod.strip()] = rest.split()
    return deps


def resolve() -> tuple[str, str]:
    """(versioned package, Debian version) of the current cloud kernel."""
    package = debian.resolve_metapackage(META_PACKAGE, "linux-image-")
    return package, debian.candidate_version(package)


def release_of(package: str) -> str:
    return package.removeprefix("linux-image-")


def build_guest_kernel(package: str | None = None, version: str | None = None) -> GuestKernel:
    """Download and unpack the kernel ``.deb`` into the cache (once per version)."""
    debian.require_tools(["apt-get", "apt-cache", "dpkg-deb", "depmod"])
    if package is None or version is None:
        package, version = resolve()
    release = release_of(package)
    inputs = {"package": package, "version": version, "layout": 2}

    def build(out: Path, log: Path) -> None:
        deb = debian.download(package, version, out / "deb", log)
        debian.extract(deb, out, log)
        shutil.rmtree(out / "deb")
        _decompress_modules(out / "lib" / "modules" / release)
        run_step("depmod", [debian.tool_path("depmod"), "-b", out, release], log, quiet=True)

    art = cache.ensure("kernel", inputs, build)
    say(f"guest kernel {package} {version}: {'built' if art.fresh else 'cached'} ({art.path})")
    return GuestKernel(package, version, release, art.path)


def _decompress_modules(modules_dir: Path) -> None:
    """busybox insmod loads plain ``.ko`` files; newer Debian kernels ship ``.ko.xz``."""
    for xz in modules_dir.rglob("*.ko.xz"):
        xz.with_suffix("").write_bytes(lzma.decompress(xz.read_bytes()))
        xz.unlink()
