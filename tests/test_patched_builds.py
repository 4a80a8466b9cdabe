"""The RFC port: patches apply to the pinned sources, the patched QEMU has ``thp-order``,
the patched driver negotiates the feature bit with it, and the balloon moves in the right
units on both sides."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import balloon_features

from harness.artifacts.module import DRIVER
from harness.artifacts.patches import GUEST_PATCHES, QEMU_PATCHES, Series
from harness.artifacts.qemu import has_property
from harness.guest import Guest
from harness.vm import BalloonDevice, MachineSpec

GUEST_MIB = 1024


def feature_bit(series_dir) -> int:
    """VIRTIO_BALLOON_F_THP_ORDER as #defined by one side's patch."""
    text = "".join(p.read_text() for p in Series.load(series_dir).patches)
    found = set(re.findall(r"^\+\s*#define\s+VIRTIO_BALLOON_F_THP_ORDER\s+(\d+)", text, re.M))
    assert len(found) == 1, f"{series_dir}: expected one definition of the bit, found {found}"
    return int(found.pop())


def test_both_sides_define_the_same_device_bit():
    guest, qemu = feature_bit(GUEST_PATCHES), feature_bit(QEMU_PATCHES)
    assert guest == qemu
    assert guest < 24, "device-specific feature bits are 0-23"


def test_the_bit_is_unused_upstream(artifacts):
    """No VIRTIO_BALLOON_F_* of the pinned, unpatched sources has the RFC's bit: read from the
    pinned QEMU's copy of Linux's uapi header (include/standard-headers), which lists every
    balloon feature either side knows."""
    header = artifacts.sources["qemu"] / "include" / "standard-headers" / "linux" / "virtio_balloon.h"
    used = {int(bit): name for name, bit in
            re.findall(r"^#define\s+(VIRTIO_BALLOON_F_\w+)\s+(\d+)", header.read_text(), re.M)}
    assert "VIRTIO_BALLOON_F_REPORTING" in used.values(), used   # the header is the one we think it is
    assert "VIRTIO_BALLOON_F_THP_ORDER" not in used.values(), "the source tree is patched"
    bit = feature_bit(GUEST_PATCHES)
    assert bit not in used, f"bit {bit} is {used.get(bit)} upstream"


def _check_apply(tree, series: Series) -> None:
    for patch in series.patches:
        subprocess.run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-i", str(patch)],
                       cwd=tree, check=True, capture_output=True)
        subprocess.run(["git", "apply", "--check", str(patch)], cwd=tree, check=True, capture_output=True)


def test_qemu_patches_apply_to_pinned_source(artifacts):
    _check_apply(artifacts.sources["qemu"], Series.load(QEMU_PATCHES))


def test_guest_patches_apply_to_pinned_source(artifacts, tmp_path):
    series = Series.load(GUEST_PATCHES)
    tree = tmp_path / "tree"
    shutil.copytree(artifacts.sources["linux"], tree, ignore=shutil.ignore_patterns("inputs.json", ".complete"))
    _check_apply(tree, series)
    assert (tree / DRIVER).exists()


def test_patch_messages_explain_the_port():
    for folder in (GUEST_PATCHES, QEMU_PATCHES):
        for patch in Series.load(folder).patches:
            text = patch.read_text()
            header = text.split("\n---\n", 1)[0]
            assert header.startswith("From "), f"{patch.name} is not a git format-patch file"
            assert "Hui Zhu" in header and "bit" in header.lower() and "23" in header
            assert len(header.splitlines()) > 20, f"{patch.name}: the message should explain the port"


def test_patched_qemu_has_thp_order_and_stock_does_not(artifacts):
    assert has_property(artifacts.qemus["patched"], "virtio-balloon-pci", "thp-order")
    assert not has_property(artifacts.qemus["stock"], "virtio-balloon-pci", "thp-order")


def _patched_spec(artifacts, thp: str, **kw) -> MachineSpec:
    return MachineSpec.for_image(artifacts.images["patched"], qemu=artifacts.qemus["patched"],
                                 memory_mib=GUEST_MIB,
                                 balloon=BalloonDevice(properties=(("thp-order", thp),
                                                                   ("free-page-reporting", "on"))), **kw)


@pytest.mark.vm
@pytest.mark.parametrize("thp", ["on", "off"])
def test_feature_bit_negotiated_only_with_thp_order_on(artifacts, thp):
    bit = feature_bit(GUEST_PATCHES)
    with Guest(_patched_spec(artifacts, thp)) as m:
        features = balloon_features(m)
        assert features[bit] == ("1" if thp == "on" else "0"), features
        assert features[5] == "1", "free page reporting must stay negotiated beside it"
        assert "virtio_balloon" in m.ssh.run("cat /proc/modules").stdout


@pytest.mark.vm
def test_thp_order_balloon_moves_in_bytes_on_both_sides(artifacts):
    with Guest(_patched_spec(artifacts, "on")) as m:
        total_before = m.ssh.meminfo()["MemTotal"]
        result = m.balloon.move(600, settle=10, timeout=300)
        assert result.reached, result
        assert result.actual_mib == pytest.approx(600, abs=2)
        # The guest took the pages out of its own accounting: 2 MiB pages x 512.
        total_inflated = m.ssh.meminfo()["MemTotal"]
        removed_mib = (total_before - total_inflated) / 1024
        assert removed_mib == pytest.approx(GUEST_MIB - result.actual_mib, abs=4), (total_before, total_inflated)
        back = m.balloon.move(GUEST_MIB, settle=10, timeout=300)
        assert back.reached and back.actual_mib == GUEST_MIB
        assert abs(m.ssh.meminfo()["MemTotal"] - total_before) <= 4 * 1024


@pytest.mark.vm
def test_kvm_probe_of_patched_qemu_judges_kvm_not_firmware(artifacts):
    """The patched QEMU has no BIOS of its own: the probe must pass -L like a real run,
    or every KVM host would be told 'not usable' for a firmware reason. The same probe
    boot under TCG must run the kernel to its panic, which proves the firmware was found
    whatever this host's KVM does."""
    from harness.arch import DEBIAN_FIRMWARE_DIRS
    from harness.vm.accel import probe_kvm
    verdict = probe_kvm(artifacts.qemus["patched"], artifacts.kernel.vmlinuz, DEBIAN_FIRMWARE_DIRS,
                        timeout=60, accel="tcg")
    assert verdict.usable and "ran the kernel" in verdict.reason, verdict
    without = probe_kvm(artifacts.qemus["patched"], artifacts.kernel.vmlinuz, (), timeout=60, accel="tcg")
    assert not without.usable, "without -L the source-built QEMU finds no BIOS: the check above means something"
