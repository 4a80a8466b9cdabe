"""No QEMU outlives the harness: every QEMU we start runs under ``setpriv --pdeathsig KILL``.

Cleanup code does not run when the harness is SIGKILLed or the machine's OOM killer
picks it; the kernel's parent-death signal still does. So it is required, not a
nicety: without ``setpriv`` the harness refuses to start QEMU and says why.
"""

from __future__ import annotations

import shutil

from harness.errors import MissingDependency


def pdeathsig_wrapper() -> list[str]:
    """``setpriv --pdeathsig KILL --``, the prefix of every QEMU command line we run."""
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise MissingDependency("setpriv not found: it guarantees that no QEMU outlives the harness; "
                                "install util-linux (sudo apt-get install -y util-linux)")
    return [setpriv, "--pdeathsig", "KILL", "--"]
