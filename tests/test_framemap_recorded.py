"""The frame map without a guest or a host QEMU: QEMU's layout from a recorded ``info mtree -f``
(QEMU 7.2, q35 with 4 GiB split around the PCI hole and a 1 GiB virtio-mem device), and a
FrameMap over a mapping of this test's own (real /proc readers) with a guest side answered
from constructed bh-framemap output: its readings at step boundaries, its host-only samples
during a resize (and not outside one), its table, its parquet file and its errors."""

from __future__ import annotations

import ctypes
import mmap
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import GuestStateError
from harness.probes import framemap, guestmap, hostmap
from harness.probes.ramlayout import RamSegment, RamSpan, parse_flatview, read_layout, spans_from
from harness.results import layout

GIB = 1 << 30
RECORDED = Path(__file__).parent / "data" / "qemu-7.2.22-q35-4g-virtio-mem-mtree-f.txt"
# Where the constructed host answers put each RAM block (2 MiB aligned, as QEMU maps them).
BASES = {"pc.ram": 0x7F1CC3E00000, "vmem0-mem": 0x7F1E00000000}


def _recorded_hmp(command: str) -> str:
    """``info mtree -f`` as recorded; ``gpa2hva`` computed from the recorded pieces and BASES."""
    text = RECORDED.read_text()
    if command == "info mtree -f":
        return text
    gpa = int(command.split()[1], 16)
    for s in parse_flatview(text):
        if s.gpa <= gpa < s.gpa + s.size:
            return f"Host virtual address for {gpa:#x} ({s.region}) is {BASES[s.region] + s.offset + gpa - s.gpa:#x}"
    return f"No memory is mapped at address {gpa:#x}"


def test_the_recorded_flat_view_gives_the_ram_pieces_of_the_memory_address_space():
    pieces = parse_flatview(RECORDED.read_text())
    assert [(s.region, s.gpa, s.size, s.offset) for s in pieces] == [
        ("pc.ram", 0, 0xC0000, 0),
        ("pc.ram", 0x100000, 2 * GIB - 0x100000, 0x100000),
        ("pc.ram", 4 * GIB, 2 * GIB, 2 * GIB),
        ("vmem0-mem", 6 * GIB, 1 * GIB, 0),
    ]   # the ROMs, I/O and the other address spaces' views are left out


def test_spans_of_the_recorded_layout_cover_each_ram_block_whole():
    spans = read_layout(_recorded_hmp)
    assert [(s.region, s.hva, s.size) for s in spans] == [
        ("pc.ram", BASES["pc.ram"], 4 * GIB), ("vmem0-mem", BASES["vmem0-mem"], 1 * GIB)]
    ram, vmem = spans
    assert ram.gpa_of(ram.hva) == 0                                    # the range holding the ROM hole
    assert ram.gpa_of(ram.hva + 2 * GIB - hostmap.HUGE) == 2 * GIB - hostmap.HUGE
    assert ram.gpa_of(ram.hva + 2 * GIB) == 4 * GIB                    # above the PCI hole
    assert vmem.gpa_of(vmem.hva + hostmap.HUGE) == 6 * GIB + hostmap.HUGE


def test_a_piece_without_a_host_address_is_left_out():
    def hmp(command: str) -> str:
        return "No memory is mapped" if "0x180000000" in command else _recorded_hmp(command)
    assert [s.region for s in read_layout(hmp)] == ["pc.ram"]


def test_an_unaligned_block_is_trimmed_to_whole_huge_ranges():
    seg = RamSegment("pc.ram", 0, 8 * hostmap.HUGE, 0, 0x7F0000001000)
    (span,) = spans_from([seg])
    assert span.hva % hostmap.HUGE == 0 and span.size == 7 * hostmap.HUGE
    assert spans_from([RamSegment("rom", 0, 0x20000, 0, 0x7F0000000000)]) == []   # smaller than a range


# ---- FrameMap over this process's own mapping ----------------------------------------------

RANGES = 4
GUEST_TEXT = ("F 0 1 0 0 0 512 0 0\n"          # frame 0: free
              "F 1 1 0 100 0 0 412 0\n"        # frame 1: partly ballooned
              "F 2 1 0 512 0 0 0 0\n"          # frame 2: ballooned whole
              "F 3 1 0 0 512 0 0 0\n"          # frame 3: a guest THP
              "END 4\n")


@pytest.fixture
def own_mapping():
    """RANGES 2 MiB ranges: 0 and 3 touched whole, 1 touched but for one 4 KiB page, 2 never."""
    if os.geteuid() != 0 and not hostmap.ioctl_supported():
        pytest.skip("without PAGEMAP_SCAN the host reader needs root (pagemap frame numbers)")
    m = mmap.mmap(-1, (RANGES + 1) * hostmap.HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = (-base) % hostmap.HUGE
    for r in (0, 1, 3):
        for p in range(0, hostmap.HUGE, hostmap.PAGE):
            m[off + r * hostmap.HUGE + p] = 1
    m.madvise(mmap.MADV_DONTNEED, off + hostmap.HUGE + 5 * hostmap.PAGE, hostmap.PAGE)
    start = base + off
    yield [RamSpan("pc.ram", start, RANGES * hostmap.HUGE, (RamSegment("pc.ram", 0, RANGES * hostmap.HUGE, 0, start),))]
    m.close()


def test_readings_at_boundaries_and_during_a_resize_become_the_table_and_the_file(own_mapping, tmp_path):
    asked: list[str] = []

    def guest_run(command: str) -> str:
        asked.append(command)
        return GUEST_TEXT

    fm = framemap.FrameMap(os.getpid(), own_mapping, guest_run, moving=lambda phase: phase == "shrink")
    assert fm.frames.tolist() == [0, 1, 2, 3]
    fm.sample_during("shrink", 0.5)                  # before the step starts: nothing
    start = fm.capture("shrink", 1.0)
    fm.sample_during("shrink", 1.5)                  # inside a resize: a host-only reading
    fm.sample_during("measure", 1.6)                 # not a resize: nothing
    end = fm.capture("shrink", 2.0)
    fm.sample_during("shrink", 2.5)                  # after its end: nothing
    assert asked == [guestmap.GUEST_HELPER] * 2      # the guest only at the two boundaries
    for reading in (start, end):
        assert reading[("frames", "split_by_balloon")] + reading[("frames", "returned_whole")] <= 2
        assert ("frames", "huge_vs_smaps_kib") in reading

    df = fm.frame()
    assert len(df) == 3 * RANGES
    assert df.groupby("sample")["at"].first().tolist() == ["start", "during", "end"]
    assert df.groupby("sample")["t"].first().tolist() == [1.0, 1.5, 2.0]
    for _, rows in df.groupby("sample"):     # what the test did to its own mapping, every time
        assert rows["host_present"].tolist() == [hostmap.PAGES_PER_HUGE, hostmap.PAGES_PER_HUGE - 1, 0,
                                                 hostmap.PAGES_PER_HUGE]
        assert hostmap.HOST_STATES[rows["host"].iloc[2]] == "absent"
        assert hostmap.HOST_STATES[rows["host"].iloc[1]] == "split"
    guest = df[df["at"] == "end"].sort_values("frame")
    assert guest["guest_balloon"].tolist() == [0, 100, 512, 0]
    assert [guestmap.GUEST_STATES[g] for g in guest["guest"]] == ["free", "balloon-part", "balloon", "thp"]
    during = df[df["at"] == "during"]
    assert (during["guest_balloon"] == -1).all() and (during["guest"] == framemap.NO_GUEST).all()

    run_dir = tmp_path / "runs" / "a-r1"
    path = fm.write(run_dir)
    assert path == run_dir / layout.FRAMES and not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df, check_categorical=False)
    info = fm.info()
    assert info["frames"] == RANGES and info["errors"] == [] and info["regions"][0]["size_mib"] == RANGES * 2


def test_a_guest_side_that_fails_is_recorded_and_the_host_side_still_read(own_mapping, tmp_path):
    def guest_run(command: str) -> str:
        raise GuestStateError("bh-framemap printed no END line (cut short?)")

    fm = framemap.FrameMap(os.getpid(), own_mapping, guest_run)
    reading = fm.capture("measure", 1.0)
    assert reading[("frames", "host_huge")] + reading[("frames", "host_split")] <= RANGES
    assert len(fm.errors) == 1 and re.search(r"guest frame map at measure start: .*no END", fm.errors[0])
    df = fm.frame()
    assert (df["guest"] == framemap.NO_GUEST).all() and df["host_present"].tolist()[2] == 0


def test_no_reading_writes_no_file(own_mapping, tmp_path):
    fm = framemap.FrameMap(os.getpid(), own_mapping, None)
    assert fm.write(tmp_path / "runs" / "a-r1") is None and not (tmp_path / "runs").exists()
    with pytest.raises(Exception, match="no guest-RAM mapping"):
        framemap.FrameMap(os.getpid(), [], None)
