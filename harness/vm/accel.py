"""Choosing the accelerator: KVM only if a real guest actually boots under it.

On some hosts ``/dev/kvm`` exists but guests hang or abort (nested PVM). Checking
the device node is not enough: we boot the guest kernel with no root filesystem,
``panic=-1`` and ``-no-reboot``, and count it a success only if the kernel runs
to its panic and QEMU exits on its own within a few seconds. A hang is killed and
means TCG. The verdict is remembered per host boot, QEMU binary and kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.vm.spec import firmware_args

PROBE_TIMEOUT = 20.0
_memo: dict[tuple[str, str], "KvmVerdict"] = {}
_warned = False


@dataclass(frozen=True)
class KvmVerdict:
    usable: bool
    reason: str


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _verdict_file() -> Path:
    from harness.artifacts.cache import cache_root
    return cache_root() / "kvm-probe.json"


def probe_kvm(qemu: Path, kernel: Path, firmware_dirs: Sequence[Path] = (),
              timeout: float = PROBE_TIMEOUT) -> KvmVerdict:
    """Boot ``kernel`` under KVM until it panics (no root fs); usable if QEMU exits by itself.

    ``firmware_dirs`` go to ``-L`` as for a real run: a QEMU built from source has no
    BIOS of its own and would fail for that reason, not for KVM's.
    """
    if not os.path.exists("/dev/kvm"):
        return KvmVerdict(False, "/dev/kvm does not exist (no KVM module or not exposed to this host)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return KvmVerdict(False, "/dev/kvm is not readable and writable by this user (add it to group kvm)")
    with tempfile.TemporaryDirectory(prefix="bh-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        cmd = [str(qemu), "-accel", "kvm", "-machine", "q35", "-m", "256", "-nodefaults",
               "-no-user-config", "-display", "none", "-no-reboot", "-kernel", str(kernel),
               "-append", "console=ttyS0 panic=-1 loglevel=4", "-serial", f"file:{console}",
               *firmware_args(firmware_dirs)]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return KvmVerdict(False, f"a KVM guest did not finish a {timeout:.0f}s test boot (it hangs)")
        text = console.read_text(errors="replace") if console.exists() else ""
        if "Kernel panic" in text or "Linux version" in text:
            return KvmVerdict(True, f"test boot under KVM ran the kernel in {time.monotonic() - start:.1f}s")
        lines = [l for l in err.decode(errors="replace").splitlines() if l.strip()] or ["no output"]
        return KvmVerdict(False, f"QEMU could not run a KVM guest (exit {proc.returncode}: {lines[-1]})")


def kvm_verdict(qemu: Path, kernel: Path, firmware_dirs: Sequence[Path] = ()) -> KvmVerdict:
    """The probe's verdict, memoised in-process and on disk for this host boot."""
    key = (str(qemu), str(kernel))
    if key in _memo:
        return _memo[key]
    ident = f"{_boot_id()} {qemu} {kernel} {' '.join(map(str, firmware_dirs))}"
    path = _verdict_file()
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict) or any(not k.startswith(_boot_id()) for k in saved):
        saved = {}  # verdicts of an earlier host boot are void
    if ident in saved:
        verdict = KvmVerdict(saved[ident]["usable"], saved[ident]["reason"])
    else:
        verdict = probe_kvm(qemu, kernel, firmware_dirs)
        saved[ident] = {"usable": verdict.usable, "reason": verdict.reason}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(saved, indent=1))
        except OSError:
            pass
    _memo[key] = verdict
    return verdict


def resolve_accel(requested: str, qemu: Path, kernel: Path, firmware_dirs: Sequence[Path] = ()) -> str:
    """``kvm`` or ``tcg``. ``auto`` probes and warns once when falling back to TCG."""
    global _warned
    if requested != "auto":
        return requested
    verdict = kvm_verdict(qemu, kernel, firmware_dirs)
    if verdict.usable:
        return "kvm"
    if not _warned:
        print(f"warning: KVM not usable: {verdict.reason}; using TCG (software emulation, slower)",
              file=sys.stderr, flush=True)
        _warned = True
    return "tcg"
