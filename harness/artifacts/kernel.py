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
from typing import Callable

from harness.artifacts import cache, debian
from harness.artifacts.steps import run_step, say


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
    def ships_modules(self) -> bool:
        """Whether its image carries modules to load (Debian's: virtio is modular; a kernel
        built from a tree has everything built in, :mod:`harness.artifacts.kernel_tree`)."""
        return True

    def image_key(self) -> list[str]:
        """What of this kernel the guest image depends on (its modules): part of its key."""
        return [self.package, self.version]

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    def module_path(self, name: str) -> Path:
        """Path of module ``name`` (``virtio_balloon``) inside the unpacked kernel."""
        for rel in _modules_dep(self.modules_dir):
            if Path(rel).name.split(".ko")[0] == name:
                return self.modules_dir / rel
        raise KeyError(f"module {name} not found in {self.package}")

    def builtin_modules(self) -> set[str]:
        """Names of the modules built into the kernel (``modules.builtin``)."""
        path = self.modules_dir / "modules.builtin"
        if not path.exists():
            return set()
        return {Path(line.strip()).name.split(".ko")[0] for line in path.read_text().splitlines() if line.strip()}

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

        builtin = self.builtin_modules()
        for name in names:
            if name in builtin:
                continue  # built into this kernel (Debian 13 builds virtio_pci in)
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


def release_of(package: str) -> str:
    return package.removeprefix("linux-image-")


def split_parts(depends: str, release: str, version: str) -> list[str]:
    """The packages a split kernel image depends on at exactly its version
    (``linux-binary-<release> (= <version>)`` ...); empty for a classic image package."""
    parts = []
    for clause in depends.replace("\n", " ").split(","):
        first = clause.split("|")[0].strip()
        name, _, rest = first.partition(" ")
        if name.endswith(f"-{release}") and name.startswith("linux-") and f"= {version}" in rest:
            parts.append(name)
    return parts


def build_guest_kernel(package: str, version: str, download: Callable[[str, str, Path], Path]) -> GuestKernel:
    """Download and unpack the kernel ``.deb`` into the cache (once per version).

    ``download(package, version, dest)`` fetches the ``.deb`` (the stack's private apt).
    Debian 13 is usrmerged: its modules live under ``usr/lib/modules``; they are moved to
    ``lib/modules`` so every stack's kernel has one layout. Debian unstable's kernel 7.2
    split the image package: ``linux-image-<release>`` is empty and depends on
    ``linux-binary-<release>`` (the ``vmlinuz``, under ``usr/lib/modules/<release>/``),
    ``linux-modules-<release>`` and ``linux-base-<release>`` (``config``, ``modules.builtin``)
    at the same version; those are fetched too and the kernel and config put in ``boot/``.
    """
    debian.require_tools(["dpkg-deb", "depmod"])
    release = release_of(package)
    inputs = {"package": package, "version": version, "layout": 2}

    def build(out: Path, log: Path) -> None:
        deb = download(package, version, out / "deb")
        debian.extract(deb, out, log)
        for part in split_parts(debian.control_field(deb, "Depends"), release, version):
            debian.extract(download(part, version, out / "deb"), out, log)
        shutil.rmtree(out / "deb")
        merged = out / "usr" / "lib" / "modules"
        if merged.is_dir() and not (out / "lib" / "modules").exists():
            (out / "lib").mkdir(exist_ok=True)
            merged.rename(out / "lib" / "modules")
        moddir = out / "lib" / "modules" / release
        for name in ("vmlinuz", "config", "System.map"):   # the split packages' places
            if (moddir / name).is_file() and not (out / "boot" / f"{name}-{release}").exists():
                (out / "boot").mkdir(exist_ok=True)
                (moddir / name).rename(out / "boot" / f"{name}-{release}")
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
