"""``balloon-harness doctor``: can a run go on this host, and if not, why.

Each check prints one line: ``ok``, ``warn`` (a run can go, but read this) or
``FAIL`` (fix this first). The exit code is 0 only when nothing failed.

The scenario loader (pandas, through harness.results) and the KVM probe are imported inside
the checks that use them: `balloon-harness --help` loads this module too.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.arch import DEBIAN_FIRMWARE_DIRS
from harness.artifacts import cache
from harness.artifacts.debian import TOOL_PACKAGES, which
from harness.errors import HarnessError
from harness.probes.host import meminfo, thp_settings

MIN_FREE_DISK_GIB = 8          # QEMU source + build tree + kernel packages
MEMORY_MARGIN_MIB = 1024       # host headroom beside the guest(s)


@dataclass
class Check:
    status: str   # ok | warn | FAIL
    what: str
    detail: str


def check_tools() -> Check:
    missing = sorted({pkg for tool, pkg in TOOL_PACKAGES.items() if not which(tool)})
    if missing:
        return Check("FAIL", "tools", f"missing packages: {' '.join(missing)} "
                                      f"(sudo apt-get install -y {' '.join(missing)}, or make bootstrap)")
    return Check("ok", "tools", "QEMU, busybox, dropbear, compiler, apt tools present")


def _manifest() -> dict:
    path = cache.cache_root() / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def check_kvm() -> Check:
    from harness.vm.accel import kvm_verdict
    vmlinuz = _manifest().get("guest_kernel", {}).get("vmlinuz")
    if not os.path.exists("/dev/kvm"):
        return Check("ok", "accelerator", "KVM not usable: /dev/kvm does not exist; TCG will be used")
    if not vmlinuz or not Path(vmlinuz).exists():
        return Check("warn", "accelerator", "KVM not probed yet (no guest kernel in the cache: "
                                            "run `balloon-harness build`); TCG is the fallback")
    # deferred: artifacts.qemu reaches the scenario schema (pydantic), which --help does not need
    from harness.artifacts.qemu import stock_qemu
    verdict = kvm_verdict(stock_qemu(), Path(vmlinuz), DEBIAN_FIRMWARE_DIRS)
    if verdict.usable:
        return Check("ok", "accelerator", f"KVM usable: {verdict.reason}")
    return Check("ok", "accelerator", f"KVM not usable: {verdict.reason}; TCG will be used (slower, "
                                      f"same memory behaviour)")


def check_thp() -> Check:
    thp = thp_settings()
    detail = f"enabled={thp['enabled']} defrag={thp['defrag']} khugepaged/defrag={thp['khugepaged_defrag']}"
    if thp["enabled"] in ("never", "unavailable"):
        return Check("FAIL", "host THP", f"{detail}: QEMU's RAM gets no huge pages; "
                                         f"echo madvise > /sys/kernel/mm/transparent_hugepage/enabled")
    return Check("ok", "host THP", f"{detail} (QEMU madvises its RAM, so 'madvise' suffices)")


def check_memory(need_mib: int) -> Check:
    avail = meminfo().get("MemAvailable", 0) // 1024
    want = need_mib + MEMORY_MARGIN_MIB
    if avail < want:
        return Check("FAIL", "memory", f"{avail} MiB available, the scenario needs {need_mib} MiB "
                                       f"for guests plus {MEMORY_MARGIN_MIB} MiB headroom")
    return Check("ok", "memory", f"{avail} MiB available; the scenario needs {need_mib} MiB per guest")


def check_artifacts() -> Check:
    m = _manifest()
    if not m:
        return Check("warn", "cache", f"nothing built yet in {cache.cache_root()} "
                                      f"(`balloon-harness build` or any run builds it)")
    missing = [k for k, p in m.get("qemu", {}).items() if not Path(p).exists()]
    missing += [k for k, v in m.get("images", {}).items() if not Path(v["initrd"]).exists()]
    if missing:
        return Check("warn", "cache", f"manifest lists missing artifacts ({', '.join(missing)}): rebuild")
    kernel = m.get("guest_kernel", {})
    return Check("ok", "cache", f"{cache.cache_root()}: guest kernel {kernel.get('package')} "
                                f"{kernel.get('version')}, QEMU builds: {', '.join(m.get('qemu', {}))}, "
                                f"images: {', '.join(m.get('images', {}))}")


def host_release() -> str:
    """``PRETTY_NAME`` of /etc/os-release (e.g. Debian GNU/Linux 12 (bookworm))."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def check_host() -> Check:
    release = host_release()
    tested = any(f"GNU/Linux {v} " in release for v in ("12", "13"))
    if not shutil.which("apt-get"):
        return Check("FAIL", "host", f"{release}: no apt-get; the harness bootstraps Debian-based hosts only")
    return Check("ok" if tested else "warn", "host",
                 release + ("" if tested else " (tested hosts: Debian 12 and 13; same package names assumed)"))


def check_stacks() -> list[Check]:
    """Each guest stack: pinned in the lock file or not, built in the cache or not."""
    from harness.artifacts.stacks import STACKS, lock_path, read_lock
    try:
        lock = read_lock()
    except HarnessError as e:
        return [Check("FAIL", "stacks", str(e))]
    built = _manifest().get("stacks", {})
    from harness.cli.runs import archive_from_environment
    archives = archive_from_environment()
    checks = []
    for name, stack in STACKS.items():
        pins = lock.get(name)
        pinned = (f"kernel {pins.kernel_version}, QEMU {pins.qemu_source_version} (pinned in {lock_path()})"
                  if pins else "not pinned yet (the first build pins it)")
        state = "built" if name in built else f"not built (`balloon-harness build --stack {name}`)"
        snapshot = archives.snapshot_for(stack)
        archive = (f"; snapshot archive {snapshot} (expired Release accepted)" if snapshot
                   else "; an expired Release is accepted" if stack.allow_expired_release else "")
        checks.append(Check("ok", f"stack {name}", f"{stack.description}: {pinned}; {state}{archive}"))
    return checks


def check_disk() -> Check:
    root = cache.cache_root()
    probe = root if root.exists() else next(p for p in root.parents if p.exists())
    free_gib = shutil.disk_usage(probe).free / (1 << 30)
    status = "ok" if free_gib >= MIN_FREE_DISK_GIB else "FAIL"
    return Check(status, "disk", f"{free_gib:.0f} GiB free at {probe} (builds need about {MIN_FREE_DISK_GIB})")


def run_doctor(scenario_path: Path) -> int:
    from harness.experiment.scenario import load_scenario
    try:
        need = load_scenario(scenario_path).vm.memory_mib
    except HarnessError as e:
        print(f"FAIL  scenario     {e}")
        return 1
    checks = [check_host(), check_tools(), check_kvm(), check_thp(), check_memory(need), check_artifacts(),
              *check_stacks(), check_disk()]
    for c in checks:
        print(f"{c.status:<5} {c.what:<15} {c.detail}")
    failed = [c for c in checks if c.status == "FAIL"]
    print("a run can go" if not failed else f"{len(failed)} problem(s) to fix before a run")
    return 1 if failed else 0


def _cmd_doctor(args) -> int:
    from harness.resources import scenario_path
    return run_doctor(Path(args.scenario) if args.scenario else scenario_path("rfc-v1.toml"))


def register(sub) -> None:
    d = sub.add_parser("doctor", help="check this host: KVM, THP, memory, cache, disk")
    d.add_argument("--scenario", help="check memory against this scenario (default: rfc-v1)")
    d.set_defaults(func=_cmd_doctor)
