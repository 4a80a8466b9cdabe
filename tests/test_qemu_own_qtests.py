"""QEMU's own qtests for the devices the harness uses pass on the harness's minimal builds
(only the devices and features it needs: harness/artifacts/qemu.py, issue 22 lever 1).

qos-test (the virtio-balloon-pci and virtio-net-pci nodes of the pc machine) and
device-introspect-test are built in the stack's kept QEMU tree and run against the stock
and the RFC-port binaries as the harness runs QEMU: ``-nodefaults`` (the build has no
VGA, parallel port or default NIC to create) and Debian's firmware folders.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from harness.arch import DEBIAN_FIRMWARE_DIRS, QEMU_BINARY
from harness.artifacts import cache
from harness.artifacts.qemu import build_tree
from harness.artifacts.stacks import get_stack
from harness.vm.spec import firmware_args

QTESTS = ("tests/qtest/qos-test", "tests/qtest/device-introspect-test")


@pytest.fixture(scope="module")
def qtests(artifacts):
    """The qtest programs, built once in the default stack's tree (its lock: variants
    patch and revert that tree)."""
    tree = build_tree(artifacts.pins.qemu_source_version, meson=get_stack(artifacts.stack).meson)
    with cache.locked(tree.path.with_suffix(".variant.lock")):
        subprocess.run(["ninja", "-C", str(tree.path / "build"), *QTESTS], check=True, capture_output=True,
                       timeout=3600)
    return {name.rsplit("/", 1)[1]: tree.path / "build" / name for name in QTESTS}


def _wrapper(tmp_path, binary):
    """A ``qemu-system-x86_64`` (qtest reads the target from the name) running ``binary``
    as the harness does."""
    path = tmp_path / QEMU_BINARY
    path.write_text("#!/bin/sh\nexec " + " ".join([str(binary), "-nodefaults", *firmware_args(DEBIAN_FIRMWARE_DIRS)])
                    + ' "$@"\n')
    path.chmod(0o755)
    return path


def _run(program, wrapper) -> str:
    proc = subprocess.run([str(program), "--tap", "-k"], capture_output=True, text=True, timeout=900,
                          env={"PATH": "/usr/bin:/bin", "QTEST_QEMU_BINARY": str(wrapper)})
    out = proc.stdout + proc.stderr
    plan = re.search(r"^1\.\.(\d+)$", out, re.M)
    assert proc.returncode == 0 and plan, out[-3000:]
    assert "not ok" not in out, out[-3000:]
    assert len(re.findall(r"^ok \d+ ", out, re.M)) == int(plan.group(1)) > 0, out[-3000:]
    return out


@pytest.mark.parametrize("variant", ["stock", "patched"])
def test_qemus_own_qtests_pass_on_the_minimal_build(artifacts, qtests, tmp_path, variant):
    wrapper = _wrapper(tmp_path, artifacts.qemus[variant])
    qos = _run(qtests["qos-test"], wrapper)
    assert re.search(r"^ok \d+ .*/virtio-balloon-pci/", qos, re.M), "qos-test found no virtio-balloon-pci node"
    _run(qtests["device-introspect-test"], wrapper)
