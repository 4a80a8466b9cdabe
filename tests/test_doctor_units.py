"""``doctor``'s checks, each against what it reads: the host's THP mode and memory, the cache
(empty, or a manifest naming files that are gone), the disk, and the exit code. No build, no
boot: an empty cache is where a new user starts."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from harness.cli import doctor
from harness.probes import host

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("BALLOON_HARNESS_CACHE", str(root))
    return root


def test_thp_check_follows_the_hosts_mode(tmp_path, monkeypatch):
    mode = re.search(r"\[(\w+)\]", THP.read_text()).group(1)
    c = doctor.check_thp()
    assert (c.status == "ok") == (mode != "never") and f"enabled={mode}" in c.detail
    # The modes this host is not in, from sysfs files of the same format.
    fake = tmp_path / "thp"
    (fake / "khugepaged").mkdir(parents=True)
    for name in ("defrag", "khugepaged/defrag"):
        (fake / name).write_text("0\n" if "khugepaged" in name else "always defer [madvise] never\n")
    monkeypatch.setattr(host, "THP_SYSFS", fake)
    for text, status in (("always madvise [never]\n", "FAIL"), ("always [madvise] never\n", "ok"),
                         ("[always] madvise never\n", "ok")):
        (fake / "enabled").write_text(text)
        c = doctor.check_thp()
        assert c.status == status, (text, c)
    (fake / "enabled").write_text("always madvise [never]\n")
    assert "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled" in doctor.check_thp().detail
    monkeypatch.setattr(host, "THP_SYSFS", tmp_path / "no-thp")
    assert doctor.check_thp().status == "FAIL" and "enabled=unavailable" in doctor.check_thp().detail


def test_memory_check_against_memavailable():
    avail_mib = host.meminfo()["MemAvailable"] // 1024
    assert doctor.check_memory(128).status == "ok"
    short = doctor.check_memory(avail_mib)   # no room for the headroom beside it
    assert short.status == "FAIL" and f"needs {avail_mib} MiB" in short.detail


def test_empty_cache_warns_and_does_not_probe(empty_cache):
    art = doctor.check_artifacts()
    assert art.status == "warn" and "nothing built yet" in art.detail and str(empty_cache) in art.detail
    kvm = doctor.check_kvm()
    if os.path.exists("/dev/kvm"):
        assert kvm.status == "warn" and "not probed yet" in kvm.detail
    else:
        assert kvm.status == "ok" and "TCG will be used" in kvm.detail
    assert not (empty_cache / "kvm-probe.json").exists()


def test_a_manifest_naming_missing_files_asks_for_a_rebuild(empty_cache, tmp_path):
    present = tmp_path / "initrd"
    present.write_bytes(b"x")
    empty_cache.mkdir()
    (empty_cache / "manifest.json").write_text(json.dumps({
        "qemu": {"stock": "/usr/bin/true", "patched": str(tmp_path / "gone-qemu")},
        "images": {"stock": {"initrd": str(present)}, "patched": {"initrd": str(tmp_path / "gone-initrd")}},
        "guest_kernel": {"package": "linux-image-cloud-amd64", "version": "6.1"}}))
    c = doctor.check_artifacts()
    assert c.status == "warn" and "missing artifacts (patched, patched)" in c.detail
    (tmp_path / "gone-qemu").write_bytes(b"x")
    (tmp_path / "gone-initrd").write_bytes(b"x")
    c = doctor.check_artifacts()
    assert c.status == "ok" and "QEMU builds: stock, patched" in c.detail


def test_disk_check_reports_the_free_space_where_the_cache_goes(empty_cache):
    c = doctor.check_disk()
    free = shutil.disk_usage(empty_cache.parent).free / (1 << 30)
    assert f"at {empty_cache.parent}" in c.detail
    assert abs(float(c.detail.split()[0]) - free) <= 1
    assert c.status == ("ok" if free >= doctor.MIN_FREE_DISK_GIB else "FAIL")


def test_exit_code_is_one_when_a_check_fails(empty_cache, tmp_path, capsys):
    avail_mib = host.meminfo()["MemAvailable"] // 1024
    big = tmp_path / "big.toml"
    big.write_text(f'name = "big"\n[vm]\nmemory_mib = {avail_mib}\n[[steps]]\nkind = "measure"\n'
                   '[[arms]]\nname = "a"\nqemu = "stock"\nmodule = "stock"\n')
    assert doctor.run_doctor(big) == 1
    out = capsys.readouterr().out
    assert re.search(r"^FAIL  memory ", out, re.M) and re.search(r"\d problem\(s\) to fix before a run$", out.strip())
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    assert doctor.run_doctor(bad) == 1
    assert capsys.readouterr().out.startswith("FAIL  scenario")
