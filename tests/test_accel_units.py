"""The accelerator decision's memory, without booting: ``kvm_verdict`` remembers each verdict
in-process and on disk for this host boot, keyed by everything the probe boots with (QEMU,
kernel, firmware folders), and ``decide_accelerators`` probes every binary at once.

The probe itself (a real boot) is replaced by a recorder here: what is under test is which
verdict is reused when; the real probe runs in the vm tests and ``benchmarks/accel_decision.py``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from harness.vm import accel
from harness.vm.accel import KvmVerdict


@pytest.fixture
def probes(tmp_path, monkeypatch):
    """Every probe the decision asks for, answered usable when a firmware folder is given."""
    monkeypatch.setenv("BALLOON_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(accel, "_memo", {})
    monkeypatch.setattr(accel, "_warned", False)
    asked: list[tuple] = []

    def probe(qemu, kernel, firmware_dirs=(), timeout=accel.PROBE_TIMEOUT, accel="kvm"):
        asked.append((str(qemu), str(kernel), tuple(map(str, firmware_dirs))))
        return KvmVerdict(bool(firmware_dirs), f"probed with {list(map(str, firmware_dirs))}")

    monkeypatch.setattr(accel, "probe_kvm", probe)
    return asked


Q, K = Path("/opt/q/qemu-system-x86_64"), Path("/opt/k/vmlinuz")


def test_firmware_folders_are_part_of_the_in_process_key(probes):
    """A QEMU built from source boots only with its firmware folder: the verdict without it
    must not be taken for the verdict with it (the in-process memo once left them out)."""
    assert not accel.kvm_verdict(Q, K, ()).usable
    assert accel.kvm_verdict(Q, K, (Path("/usr/share/seabios"),)).usable
    assert len(probes) == 2
    assert accel.kvm_verdict(Q, K, (Path("/usr/share/seabios"),)).usable and len(probes) == 2   # remembered


def test_verdicts_are_remembered_on_disk_for_this_host_boot_only(probes, tmp_path, monkeypatch):
    fw = (Path("/usr/share/seabios"),)
    first = accel.kvm_verdict(Q, K, fw)
    monkeypatch.setattr(accel, "_memo", {})             # a new process: the file answers
    assert accel.kvm_verdict(Q, K, fw) == first and len(probes) == 1
    assert accel.kvm_verdict(Q, Path("/opt/k/other"), fw).usable and len(probes) == 2   # another kernel: probed
    saved = json.loads((tmp_path / "cache" / "kvm-probe.json").read_text())
    assert len(saved) == 2 and all(k.startswith(accel._boot_id()) for k in saved)

    monkeypatch.setattr(accel, "_memo", {})
    monkeypatch.setattr(accel, "_boot_id", lambda: "another-boot")   # the host rebooted: void
    accel.kvm_verdict(Q, K, fw)
    assert len(probes) == 3
    assert list(json.loads((tmp_path / "cache" / "kvm-probe.json").read_text())) == \
        [f"another-boot {Q} {K} {fw[0]}"]


def test_decision_probes_every_binary_at_once_and_warns_once(probes, monkeypatch, caplog):
    keys = [(Path(f"/opt/q{i}"), K, ()) for i in range(3)]
    together = threading.Barrier(len(keys), timeout=60)   # passes only if the three probes run at once
    probe = accel.probe_kvm

    def waiting_probe(*args, **kw):
        together.wait()
        return probe(*args, **kw)

    monkeypatch.setattr(accel, "probe_kvm", waiting_probe)
    assert accel.decide_accelerators(keys + keys[:1]) == {k: "tcg" for k in keys}
    assert len(probes) == 3
    assert [r.levelname for r in caplog.records if "KVM not usable" in r.getMessage()] == ["WARNING"]


def test_resolve_accel_probes_only_for_auto(probes):
    assert accel.resolve_accel("tcg", Q, K) == "tcg" and accel.resolve_accel("kvm", Q, K) == "kvm"
    assert probes == []
    assert accel.resolve_accel("auto", Q, K, (Path("/fw"),)) == "kvm" and len(probes) == 1
