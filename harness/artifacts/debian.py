"""Debian package look-ups: resolve versions, download and unpack ``.deb`` files.

Everything the guest image needs comes from Debian's own registry through the
ordinary apt client, so a build is reproducible from the package versions alone
(and those versions are what the cache keys and the manifest record).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from harness.artifacts.steps import capture, run_step
from harness.errors import BuildError, MissingDependency

# Host tools the build needs, and the Debian package that provides each.
TOOL_PACKAGES = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "depmod": "kmod",
    "cc": "gcc",
    "busybox": "busybox-static",
    "dropbear": "dropbear-bin",
    "dropbearkey": "dropbear-bin",
    "gzip": "gzip",
    "qemu-system-x86_64": "qemu-system-x86",
    "mmdebstrap": "mmdebstrap",
    "chroot": "coreutils",
    "setpriv": "util-linux",
}


def require_tools(tools: Iterable[str]) -> None:
    """Raise one clear :class:`MissingDependency` naming every missing tool's package."""
    missing = {t: TOOL_PACKAGES.get(t, t) for t in tools if not which(t)}
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise MissingDependency(
            f"missing tools: {', '.join(sorted(missing))}; install them with: "
            f"sudo apt-get install -y {pkgs}  (or run `make bootstrap`)")


def which(tool: str) -> str | None:
    """``shutil.which`` that also looks in the sbin folders a non-root PATH lacks."""
    found = shutil.which(tool)
    if not found and tool in ("dropbear", "depmod"):
        for d in ("/usr/sbin", "/sbin"):
            if Path(d, tool).exists():
                return str(Path(d, tool))
    return found


def tool_path(tool: str) -> Path:
    require_tools([tool])
    return Path(which(tool) or tool)


def candidate_version(package: str) -> str:
    """apt's candidate version of ``package`` (what ``apt-get install`` would take)."""
    out = capture(["apt-cache", "policy", package], f"apt-cache policy {package}")
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise MissingDependency(
            f"apt knows no package {package}: run `sudo apt-get update` (Debian 12 main is needed)")
    return m.group(1)


def installed_version(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.startswith("install ok installed"):
        return None
    return proc.stdout.split()[-1]


def resolve_metapackage(meta: str, prefix: str) -> str:
    """The versioned package a metapackage depends on (``linux-image-cloud-amd64`` ->
    ``linux-image-6.1.0-NN-cloud-amd64``), taken from the candidate's dependencies."""
    out = capture(["apt-cache", "depends", meta], f"apt-cache depends {meta}")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:"):
            dep = line.split(":", 1)[1].strip()
            if dep.startswith(prefix):
                return dep
    raise MissingDependency(f"could not resolve {meta} to a {prefix}* package: run `sudo apt-get update`")


def download(package: str, version: str, dest: Path, log: Path) -> Path:
    """``apt-get download package=version`` into ``dest``; returns the ``.deb`` path."""
    dest.mkdir(parents=True, exist_ok=True)
    run_step(f"download {package} {version}", ["apt-get", "download", f"{package}={version}"],
             log, cwd=dest)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download {package}={version} produced no .deb in {dest}")
    return debs[-1]


def extract(deb: Path, dest: Path, log: Path) -> None:
    run_step(f"unpack {deb.name}", ["dpkg-deb", "-x", deb, dest], log, quiet=True)
