"""QEMU binaries: Debian's packaged one (the stock control) and, later, our patched build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

STOCK_QEMU = Path("/usr/bin/qemu-system-x86_64")


def stock_qemu() -> Path:
    """Debian's ``qemu-system-x86`` binary."""
    found = shutil.which("qemu-system-x86_64")
    return Path(found) if found else STOCK_QEMU


def qemu_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"
