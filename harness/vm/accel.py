"""Choosing the accelerator: KVM only if a real guest actually boots under it.

On some hosts ``/dev/kvm`` exists but guests hang or abort (nested PVM). Checking
the device node is not enough: we boot the guest kernel with no root filesystem,
``panic=-1`` and ``-no-reboot``, and count it a success only if the kernel runs
to its panic and QEMU exits on its own within a few seconds. A hang is killed and
means TCG. The verdict is remembered per host boot, QEMU binary and kernel.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.arch import QEMU_MACHINE
from harness.artifacts.cache import cache_root
from harness.vm.lifeline import pdeathsig_wrapper
from harness.vm.spec import firmware_args

log = logging.getLogger(__name__)

# A healthy KVM boots the guest kernel to its panic in about a second; under TCG the
# same boot takes 5.4-5.9 s on a loaded 2-core host (benchmarks/accel_decision.py).
# 8 s rejects no KVM that is at least as fast as software emulation, and keeps the
# whole decision (all binaries probed at once) under 10 s on a host where KVM hangs.
PROBE_TIMEOUT = 8.0
_memo: dict[tuple[str, str, tuple[str, ...]], KvmVerdict] = {}
_warned = False
_lock = threading.Lock()


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
    return cache_root() / "kvm-probe.json"


def probe_kvm(qemu: Path, kernel: Path, firmware_dirs: Sequence[Path] = (),
              timeout: float = PROBE_TIMEOUT, accel: str = "kvm") -> KvmVerdict:
    """Boot ``kernel`` under KVM until it panics (no root fs); usable if QEMU exits by itself.

    ``firmware_dirs`` go to ``-L`` as for a real run: a QEMU built from source has no
    BIOS of its own and would fail for that reason, not for KVM's. ``accel="tcg"`` runs
    the same boot in software (tests and the benchmark use it to size the limit).
    """
    if accel == "kvm":
        if not os.path.exists("/dev/kvm"):
            return KvmVerdict(False, "/dev/kvm does not exist (no KVM module or not exposed to this host)")
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return KvmVerdict(False, "/dev/kvm is not readable and writable by this user (add it to group kvm)")
    with tempfile.TemporaryDirectory(prefix="bh-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        cmd = [str(qemu), "-accel", accel, "-machine", QEMU_MACHINE, "-m", "256", "-nodefaults",
               "-no-user-config", "-display", "none", "-no-reboot", "-kernel", str(kernel),
               "-append", "console=ttyS0 panic=-1 loglevel=4", "-serial", f"file:{console}",
               *firmware_args(firmware_dirs)]
        start = time.monotonic()
        proc = subprocess.Popen([*pdeathsig_wrapper(), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return KvmVerdict(False, f"a {accel.upper()} guest did not finish a {timeout:.0f}s test boot (it hangs)")
        text = console.read_text(errors="replace") if console.exists() else ""
        if "Kernel panic" in text or "Linux version" in text:
            return KvmVerdict(True, f"test boot under {accel.upper()} ran the kernel in "
                                    f"{time.monotonic() - start:.1f}s")
        lines = [l for l in err.decode(errors="replace").splitlines() if l.strip()] or ["no output"]
        return KvmVerdict(False, f"QEMU could not run a {accel.upper()} guest (exit {proc.returncode}: {lines[-1]})")


def kvm_verdict(qemu: Path, kernel: Path, firmware_dirs: Sequence[Path] = ()) -> KvmVerdict:
    """The probe's verdict, memoised in-process and on disk for this host boot, both keyed by
    everything the probe boots with (a QEMU built from source runs only with its firmware)."""
    key = (str(qemu), str(kernel), tuple(map(str, firmware_dirs)))
    with _lock:
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
        with _lock:
            _save_verdict(path, ident, verdict)
    with _lock:
        _memo[key] = verdict
    return verdict


ProbeKey = tuple  # (qemu, kernel, firmware_dirs)


def decide_accelerators(keys: Iterable[ProbeKey]) -> dict[ProbeKey, str]:
    """``kvm`` or ``tcg`` for each (qemu, kernel, firmware dirs), all probed at once.

    Cached verdicts cost nothing; the uncached ones boot in parallel threads, so the
    whole decision costs one probe's time (at most :data:`PROBE_TIMEOUT`), not one per
    binary. Warns once when falling back to TCG.
    """
    keys = list(dict.fromkeys(keys))
    with ThreadPoolExecutor(max_workers=max(1, len(keys))) as pool:
        verdicts = dict(zip(keys, pool.map(lambda k: kvm_verdict(Path(k[0]), Path(k[1]), tuple(k[2])), keys)))
    out = {}
    for key, verdict in verdicts.items():
        out[key] = "kvm" if verdict.usable else "tcg"
        if not verdict.usable:
            _warn_tcg(verdict)
    return out


def _warn_tcg(verdict: KvmVerdict) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    log.warning("KVM not usable: %s; using TCG (software emulation, slower)", verdict.reason)


def _save_verdict(path: Path, ident: str, verdict: KvmVerdict) -> None:
    """Merge one verdict into the file (re-read under the lock: parallel probes each add theirs)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict) or any(not k.startswith(_boot_id()) for k in saved):
        saved = {}
    saved[ident] = {"usable": verdict.usable, "reason": verdict.reason}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(saved, indent=1))
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache costs a probe next time, nothing else
        log.warning("could not remember the KVM verdict in %s: %s", path, e)


def resolve_accel(requested: str, qemu: Path, kernel: Path, firmware_dirs: Sequence[Path] = ()) -> str:
    """``kvm`` or ``tcg``. ``auto`` probes and warns once when falling back to TCG."""
    if requested != "auto":
        return requested
    verdict = kvm_verdict(qemu, kernel, firmware_dirs)
    if verdict.usable:
        return "kvm"
    _warn_tcg(verdict)
    return "tcg"
