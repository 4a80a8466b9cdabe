"""Host-side Debian helpers: which host tools exist (and which package brings each),
installed package versions, unpacking a ``.deb``.

The guest stacks' packages are looked up and downloaded by each stack's private apt
(``apt.py``, ``stacks.py``); this module only asks the host about its own tools.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from harness.artifacts.steps import run_step
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



def installed_version(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.startswith("install ok installed"):
        return None
    return proc.stdout.split()[-1]




def extract(deb: Path, dest: Path, log: Path) -> None:
    run_step(f"unpack {deb.name}", ["dpkg-deb", "-x", deb, dest], log, quiet=True)


def control_field(deb: Path, field: str) -> str:
    """One field of a ``.deb``'s control file (``dpkg-deb -f``; empty when absent)."""
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"dpkg-deb -f {deb.name} {field}: {proc.stderr.strip()}")
    return proc.stdout.strip()
