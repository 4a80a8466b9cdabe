"""Unit tests that need no guest: parsers, cache keys, cpio, spec validation."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.artifacts import cache, cpio
from harness.errors import ConfigError
from harness.procfs import (
    free_blocks_at_least,
    kernel_cpu_seconds,
    parse_buddyinfo,
    parse_meminfo,
    parse_thp_setting,
    parse_vmstat,
)
from harness.vm.balloon import Balloon
from harness.vm.spec import BalloonDevice, MachineSpec


def test_meminfo_and_smaps_parse_host_files():
    mem = parse_meminfo(Path("/proc/meminfo").read_text())
    assert mem["MemTotal"] > 0 and "AnonHugePages" in mem
    roll = parse_meminfo(Path("/proc/self/smaps_rollup").read_text())
    assert roll["Rss"] > 0


def test_vmstat_and_thp_setting():
    vm = parse_vmstat(Path("/proc/vmstat").read_text())
    assert "nr_free_pages" in vm
    assert parse_thp_setting("always [madvise] never") == "madvise"


def test_kernel_cpu_seconds_reads_the_host_proc_stat_and_grows_with_kernel_work():
    before = kernel_cpu_seconds(Path("/proc/stat").read_text())
    assert before is not None and before > 0
    # kernel work: many small reads of a procfs file are mostly system time
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        Path("/proc/self/status").read_bytes()
    after = kernel_cpu_seconds(Path("/proc/stat").read_text())
    assert after is not None and after > before
    assert kernel_cpu_seconds("cpu0 1 2 3 4 5 6 7 8\n") is None   # per-CPU lines are not the total


def test_buddyinfo_counts_large_blocks():
    zones = parse_buddyinfo(Path("/proc/buddyinfo").read_text())
    assert zones and all(len(z.free) == 11 for z in zones)
    text = "Node 0, zone   Normal      1      0      0      0      0      0      0      0      0      2      1\n"
    z = parse_buddyinfo(text)
    assert free_blocks_at_least(z, 9) == 2 + 2  # two order-9 blocks and one order-10 = 2 more


def test_cache_builds_once_and_rebuilds_on_changed_input(tmp_path):
    calls = []

    def build(out: Path, log: Path) -> None:
        calls.append(out)
        (out / "f").write_text("x")

    a = cache.ensure("thing", {"v": 1}, build, root=tmp_path)
    b = cache.ensure("thing", {"v": 1}, build, root=tmp_path)
    c = cache.ensure("thing", {"v": 2}, build, root=tmp_path)
    assert a.fresh and not b.fresh and c.fresh and a.path == b.path != c.path
    assert len(calls) == 2


def test_cache_failed_build_leaves_no_entry(tmp_path):
    def build(out: Path, log: Path) -> None:
        raise RuntimeError("fails")

    with pytest.raises(RuntimeError):
        cache.ensure("thing", {"v": 1}, build, root=tmp_path)
    assert cache.lookup("thing", {"v": 1}, root=tmp_path) is None
    assert not list((tmp_path / "thing").glob(".*tmp*"))


@pytest.mark.skipif(not shutil.which("cpio"), reason="cpio tool not installed")
def test_cpio_archive_is_read_by_gnu_cpio(tmp_path):
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/hello").write_text("hi\n")
    (tmp_path / "tree/link").symlink_to("/etc/hello")
    archive = tmp_path / "a.cpio"
    cpio.write_archive(archive, [cpio.dir_entry("dev"), cpio.chardev_entry("dev/console", 5, 1),
                                 *cpio.tree_entries(tmp_path / "tree")], compress=False)
    listing = subprocess.run(["cpio", "-itv"], stdin=open(archive, "rb"), capture_output=True,
                             text=True, check=True).stdout
    assert "dev/console" in listing and "etc/hello" in listing and "link -> /etc/hello" in listing


def _spec(tmp_path, **kw) -> MachineSpec:
    for f in ("k", "i"):
        (tmp_path / f).write_text("")
    return MachineSpec(kernel=tmp_path / "k", initrd=tmp_path / "i", host_key="ssh-ed25519 AAAA", **kw)


def test_spec_refuses_impossible_values(tmp_path):
    with pytest.raises(ConfigError, match="accel"):
        _spec(tmp_path, accel="xen").validate()
    with pytest.raises(ConfigError, match="memory"):
        _spec(tmp_path, memory_mib=16).validate()
    with pytest.raises(ConfigError, match="not found"):
        MachineSpec(kernel=tmp_path / "none", initrd=tmp_path / "none", host_key="a b").validate()


def test_command_line_is_loopback_only_and_names_every_device(tmp_path):
    from harness.vm.machine import Machine
    spec = _spec(tmp_path, balloon=BalloonDevice(properties=(("thp-order", "on"),)))
    m = Machine(spec, run_dir=tmp_path / "run")
    m.run_dir = tmp_path / "run"
    cmd = " ".join(m.command_line("tcg", 2222, 7))
    assert "restrict=on" in cmd and "hostfwd=tcp:127.0.0.1:2222-:22" in cmd
    assert "bh.authkey" not in cmd, "SSH keys are the Guest's business, not the Machine's"
    assert "-nodefaults" in cmd and "romfile=" in cmd and "panic=-1" in cmd and "-no-reboot" in cmd
    assert "virtio-balloon-pci,id=balloon0,thp-order=on" in cmd


def test_balloon_targets_validated_without_a_guest():
    b = Balloon(qmp=None, guest_mib=1024)  # type: ignore[arg-type]
    b.validate_target(624)
    for bad in (0, -5, 1025, 1.5, True):
        with pytest.raises(ConfigError):
            b.validate_target(bad)


def test_failed_build_step_shows_log_tail_and_rerun_command(tmp_path):
    from harness.artifacts.steps import run_step
    from harness.errors import BuildError
    log = tmp_path / "step.log"
    with pytest.raises(BuildError) as info:
        run_step("failing step", ["sh", "-c", "echo some-diagnostic; exit 3"], log, cwd=tmp_path, quiet=True)
    msg = str(info.value)
    assert "exit 3" in msg and "some-diagnostic" in msg and str(log) in msg
    assert "re-run by hand: cd" in msg and "sh -c" in msg


def test_missing_tool_is_one_line_naming_the_package():
    from harness.artifacts.debian import require_tools
    from harness.errors import MissingDependency
    with pytest.raises(MissingDependency) as info:
        require_tools(["depmod", "no-such-tool-xyz"])
    msg = str(info.value)
    assert "\n" not in msg and "apt-get install" in msg and "no-such-tool-xyz" in msg
