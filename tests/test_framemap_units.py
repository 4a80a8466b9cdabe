"""The frame map's pieces without booting a guest: QEMU's RAM layout read from a real QEMU
started paused (no kernel runs), the guest helper's output format, the joint states."""

from __future__ import annotations

import socket
import subprocess

import numpy as np
import pytest

from harness.artifacts.qemu import stock_qemu
from harness.probes import framemap, guestmap, hostmap
from harness.probes.ramlayout import qmp_hmp, read_layout
from harness.vm.qmp import QMPConnection

GIB = 1 << 30


@pytest.fixture
def paused_qemu():
    """q35 with 4 GiB (split below and above 4 GiB) and a 1 GiB virtio-mem device, paused
    before the first instruction: the layout exists, nothing runs."""
    qemu = stock_qemu()
    if not qemu.exists():
        pytest.skip(f"no QEMU at {qemu}")
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [str(qemu), "-machine", "q35", "-accel", "tcg", "-S", "-display", "none", "-nodefaults",
         "-chardev", f"socket,id=qmp,fd={child.fileno()}", "-mon", "chardev=qmp,mode=control",
         "-m", "4096,maxmem=6G", "-object", "memory-backend-ram,id=vmem0-mem,size=1G",
         "-device", "virtio-mem-pci,id=vmem0,memdev=vmem0-mem,requested-size=0"],
        pass_fds=(child.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child.close()
    qmp = QMPConnection(parent, name="layout-test")
    try:
        yield proc, qmp
    finally:
        try:
            qmp.execute("quit")
        except Exception:  # QEMU closes the socket as it quits
            pass
        qmp.close()
        parent.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_layout_of_q35_split_and_virtio_mem(paused_qemu):
    proc, qmp = paused_qemu
    spans = read_layout(qmp_hmp(qmp))
    assert [s.region for s in spans] == ["pc.ram", "vmem0-mem"]
    ram, vmem = spans
    assert ram.size == 4 * GIB and vmem.size == 1 * GIB
    # q35 with more than 2.75 GiB: 2 GiB below the PCI hole, the other 2 above 4 GiB
    assert ram.gpa_of(ram.hva) == 0
    assert ram.gpa_of(ram.hva + 2 * GIB - hostmap.HUGE) == 2 * GIB - hostmap.HUGE
    assert ram.gpa_of(ram.hva + 2 * GIB) == 4 * GIB
    assert vmem.gpa_of(vmem.hva) >= 6 * GIB   # above the top of RAM (4 GiB + the 2 GiB moved up)
    # the addresses are the QEMU process's own: whole mappings in its smaps
    kib = hostmap.vma_anon_huge_kib(proc.pid, [ram.hva, vmem.hva])
    assert len(kib) == 2
    fm = framemap.FrameMap(proc.pid, spans, None)
    assert len(fm.frames) == 5 * 512 and len(set(fm.frames.tolist())) == 5 * 512
    host = fm.read_host()
    assert host.huge_count == 0 and host.present.sum() < 1024   # nothing ran: hardly anything touched


def test_guest_helper_output_is_parsed_and_runs_expand():
    text = "F 0 1 0 0 0 10 2 500\nF 1 3 0 512 0 0 0 0\nF 4 1 0 0 512 0 0 0\nF 5 1 0 200 0 312 0 0\nEND 6\n"
    frames = guestmap.parse(text)
    assert sorted(frames) == list(range(6))
    counts = np.stack([frames[f] for f in range(6)])
    assert guestmap.states(counts).tolist() == [
        guestmap.G_USED, guestmap.G_BALLOON, guestmap.G_BALLOON, guestmap.G_BALLOON, guestmap.G_THP,
        guestmap.G_BALLOON_PART]
    with pytest.raises(Exception, match="END"):
        guestmap.parse("F 0 1 0 0 0 512 0 0\n")
    with pytest.raises(Exception, match="sum"):
        guestmap.parse("F 0 1 0 0 0 500 0 0\nEND 1\n")


def test_joint_states():
    g = np.array([guestmap.G_BALLOON, guestmap.G_BALLOON_PART, guestmap.G_BALLOON_PART, guestmap.G_THP,
                  guestmap.G_USED, guestmap.G_FREE, framemap.NO_GUEST, guestmap.G_ABSENT], dtype=np.uint8)
    h = np.array([hostmap.HOST_ABSENT, hostmap.HOST_SPLIT, hostmap.HOST_HUGE, hostmap.HOST_HUGE,
                  hostmap.HOST_SPLIT, hostmap.HOST_ABSENT, hostmap.HOST_HUGE, hostmap.HOST_ABSENT], dtype=np.uint8)
    names = [framemap.JOINT_STATES[j] for j in framemap.joint_states(g, h)]
    assert names == ["returned whole", "split by balloon", "partial balloon, huge", "guest THP on huge",
                     "split", "unbacked", "host only", "unplugged"]
    counts = framemap.frame_counts(h, framemap.joint_states(g, h))
    assert counts == {"host_huge": 3, "host_split": 2, "split_by_balloon": 1, "returned_whole": 2,
                      "kept_huge": 1}
