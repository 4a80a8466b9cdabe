"""The 2 MiB frame map on a real guest: one boot of the stock 1 GiB guest.

The guest touches 400 MiB (host huge pages behind it), the stock balloon takes 64 MiB in
4 KiB pages, then the map is read and checked against what the kernels say themselves:
the huge host ranges against the mapping's AnonHugePages in smaps (within one huge
page), the two host readers against each other on the paused guest (exactly), and the
guest's balloon pages against the balloon's own ``actual`` (exactly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.guest import Guest
from harness.probes import framemap, guestmap, hostmap
from harness.probes.ramlayout import qmp_hmp, read_layout
from harness.vm import MachineSpec

pytestmark = pytest.mark.vm

GUEST_MIB = 1024
BALLOON_MIB = 64


@pytest.fixture(scope="module")
def guest(stock_image):
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    if "[never]" in thp:
        pytest.skip(f"host THP is off ({thp.strip()}): the guest's RAM has no huge page to map")
    spec = MachineSpec.for_image(stock_image, memory_mib=GUEST_MIB, vcpus=1)
    with Guest(spec) as g:
        g.ssh.run("usemem -d -s -1 400m", timeout=600)
        result = g.balloon.move(GUEST_MIB - BALLOON_MIB, settle=20.0, timeout=300.0)
        assert result.reached, result
        yield g


def test_layout_is_the_whole_guest_ram(guest):
    spans = read_layout(qmp_hmp(guest.qmp))
    assert [s.region for s in spans] == ["pc.ram"]
    assert spans[0].size == GUEST_MIB << 20
    fm = framemap.FrameMap(guest.pid, spans, None)
    assert fm.frames.tolist() == list(range(GUEST_MIB // 2))   # below 2.75 GiB: no split at 4 GiB


def test_map_matches_smaps_readers_agree_and_balloon_is_counted(guest):
    run = lambda cmd: guest.ssh.run(cmd, timeout=180).stdout  # noqa: E731
    spans = read_layout(qmp_hmp(guest.qmp))
    fm = framemap.FrameMap(guest.pid, spans, run)
    counts = fm.read_guest()
    mem = guest.ssh.meminfo()
    # free pages: the buddy's own count (MemFree) plus the per-CPU lists, give or take what moved
    free_kib = int(counts[:, guestmap.GUEST_CLASSES.index("free")].sum()) * 4
    assert abs(free_kib - mem["MemFree"]) < 0.05 * mem["MemTotal"], (free_kib, mem["MemFree"])
    # the guest's own balloon: every page it gave is one PageOffline page in the map
    balloon_pages = int(counts[:, guestmap.GUEST_CLASSES.index("balloon")].sum())
    assert balloon_pages * 4 == (GUEST_MIB - guest.balloon.actual_mib()) * 1024 == BALLOON_MIB * 1024
    guest.qmp.execute("stop")            # nothing moves while both readers and smaps look
    try:
        span = spans[0]
        by_pagemap = hostmap.scan_pagemap(guest.pid, span.hva, span.hva + span.size)
        by_ioctl = hostmap.scan_ioctl(guest.pid, span.hva, span.hva + span.size) \
            if hostmap.ioctl_supported() else by_pagemap
        ahp_kib = hostmap.smaps_anon_huge_kib(guest.pid, span.hva)
    finally:
        guest.qmp.execute("cont")
    np.testing.assert_array_equal(by_ioctl.states, by_pagemap.states)
    np.testing.assert_array_equal(by_ioctl.present, by_pagemap.present)
    assert by_ioctl.huge_count >= 150, "usemem touched 400 MiB: the host should back much of it huge"
    assert abs(by_ioctl.huge_count * 2048 - ahp_kib) <= 2048
    # QEMU discards each 4 KiB balloon page: no frame holding one stays huge on the host
    guest_states = guestmap.states(counts)
    joint = framemap.joint_states(guest_states, by_ioctl.states)
    ballooned = counts[:, guestmap.GUEST_CLASSES.index("balloon")] > 0
    assert ballooned.any()
    assert not (by_ioctl.states[ballooned] == hostmap.HOST_HUGE).any()
    assert (joint == framemap.J["split by balloon"]).sum() + (joint == framemap.J["returned whole"]).sum() \
        + (joint == framemap.J["partial balloon, unbacked"]).sum() == ballooned.sum()


def test_capture_records_a_reading_with_its_figures(guest):
    fm = framemap.for_guest(guest, lambda cmd: guest.ssh.run(cmd, timeout=180).stdout, [])
    assert fm is not None
    figures = fm.capture("check", 0.0)
    assert abs(figures[("frames", "huge_vs_smaps_kib")]) <= 2048
    assert figures[("frames", "host_huge")] >= 150
    df = fm.frame()
    assert len(df) == GUEST_MIB // 2 and set(df["at"]) == {"start"}
    assert (df[[f"guest_{c}" for c in guestmap.GUEST_CLASSES]].sum(axis=1) == 512).all()
