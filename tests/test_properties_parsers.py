"""The parsers of guest and host text under generated input (hypothesis): what the kernel,
QEMU and the guest helpers print is read back exactly (round trip), and any other text is
either read (its readable lines) or refused with one line, never a traceback. Text reaches
them from a guest over SSH and from /proc of a busy host: a cut line, a digit of another
script, a counter the parser does not know must not end a run in a traceback.

Targets: /proc's key-value files (meminfo, smaps_rollup), vmstat, buddyinfo, /proc/stat, the
THP setting, a guest's whole reading (harness.probes.sampler.read_guest), smaps'
AnonHugePages per VMA, the workload state (bh-step and cgroup files), the guest frame map
(bh-framemap), QEMU's flat view and the spans built from it. Profiles: tests/conftest.py.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import procfs
from harness.errors import GuestStateError
from harness.experiment.workload import parse_state
from harness.probes import guestmap, hostmap, ramlayout, sampler

# Text as it may arrive: any characters, lines of kernel-looking words, digits of other scripts.
WORDS = st.sampled_from(["Node", "0,", "zone", "Normal", "cpu", "cpu0", "F", "END", "main", "orphan", "exit",
                         "signal", "start", "procs", "populated", "current", "anon", "kB", "1", "-1", "512",
                         "0x1f", "²", "٣", "9" * 30, "", ":", "(prio", "0,", "ram):", "pc.ram", "@0", "done",
                         "error", "AnonHugePages:", "7f00-7f10", "MemTotal:", "thp_fault_alloc", "[always]"])
# lines shaped like the helpers' (a word then as many fields as they print), filled with anything
SHAPED = st.tuples(st.sampled_from(["F", "main", "orphan", "Node"]), st.lists(WORDS, min_size=2, max_size=8)).map(
    lambda t: " ".join([t[0], *t[1]]))
LINE = st.lists(WORDS, max_size=12).map(" ".join) | st.text(max_size=40) | SHAPED
TEXT = st.lists(LINE, max_size=20).map("\n".join) | st.text(max_size=300)
# a key starts with a letter or "_": one draw of text, its first character made one (two draws,
# a letter then the rest, cost ~7% more CPU in the proc snapshot target)
KEY = st.text("AZaz09_()", min_size=1, max_size=11).map(lambda k: k if k[0] in "AZaz_" else "_" + k[1:])
U64 = st.integers(0, (1 << 64) - 1)


VMSTAT_KEY = KEY.map(lambda k: f"nr_{k}")


def u64s(n_min: int, n_max: int) -> st.SearchStrategy[list[int]]:
    """64-bit counters from one draw of bytes (a draw per number made this target the suite's
    slowest; bytes still give 0, 2^64-1 and everything between)."""
    return st.binary(min_size=8 * n_min, max_size=8 * n_max).map(
        lambda b: list(struct.unpack(f"<{len(b) // 8}Q", b[:len(b) // 8 * 8])))


def counters(blob: bytes) -> list[int]:
    """vmstat's counters from 9 bytes each: 8 of value, read as a signed (-2^63..) or an
    unsigned (..2^64-1) number as the ninth byte's lowest bit says."""
    return [int.from_bytes(blob[i + 1:i + 9], "little", signed=bool(blob[i] & 1))
            for i in range(0, len(blob) - 8, 9)]


@st.composite
def proc_snapshots(draw) -> dict:
    """What a guest reading cats: meminfo, buddyinfo, vmstat, stat, and a THP setting. The
    keys of meminfo and vmstat are drawn as a list (a repeat dropped), their values as one run
    of bytes: st.dictionaries drew key and value per entry (3.7 -> 3.2 CPU-s for 1,000)."""
    mem_keys = list(dict.fromkeys(draw(st.lists(KEY, max_size=5))))
    vm_keys = list(dict.fromkeys(draw(st.lists(VMSTAT_KEY, max_size=5))))
    return {
        "meminfo": dict(zip(mem_keys, draw(u64s(len(mem_keys), len(mem_keys))))),
        "zones": draw(st.lists(st.tuples(st.integers(0, 64), st.sampled_from(["DMA", "DMA32", "Normal", "Movable"]),
                                         u64s(1, 11)), max_size=2)),
        "vmstat": dict(zip(vm_keys, counters(draw(st.binary(min_size=9 * len(vm_keys), max_size=9 * len(vm_keys)))))),
        "cpu": draw(u64s(10, 10)),
        "per_cpu": draw(st.lists(u64s(10, 10), max_size=1)),
        # distinct words, a repeat dropped (unique=True redrew one word in eight)
        "thp": list(dict.fromkeys(draw(st.lists(st.text("adefmnrsvw+", min_size=1, max_size=8), min_size=1,
                                                max_size=4)))),
        "order": draw(st.integers(0, 10)),
    }


@given(proc_snapshots(), st.data())
def test_a_proc_snapshot_round_trips_through_each_parser_and_the_guest_reading(snap, data):
    meminfo = "".join(f"{k}:{' ' * (1 + len(k) % 7)}{v} kB\n" for k, v in snap["meminfo"].items())
    buddy = "".join(f"Node {n}, zone {z:>8} " + " ".join(f"{c:6}" for c in counts) + "\n"
                    for n, z, counts in snap["zones"])
    vmstat = "".join(f"{k} {v}\n" for k, v in snap["vmstat"].items())
    stat = "cpu  " + " ".join(map(str, snap["cpu"])) + "\n" + "".join(
        f"cpu{i} " + " ".join(map(str, v)) + "\n" for i, v in enumerate(snap["per_cpu"])) + "intr 1 2 3\nctxt 99\n"
    text = meminfo + buddy + vmstat + stat
    assert procfs.parse_meminfo(text) == snap["meminfo"]
    assert procfs.parse_vmstat(text) == {**snap["vmstat"], "ctxt": 99}
    zones = procfs.parse_buddyinfo(text)
    assert [(z.node, z.zone, list(z.free)) for z in zones] == [(n, z, c) for n, z, c in snap["zones"]]
    order = snap["order"]
    blocks = sum(c << (o - order) for _, _, counts in snap["zones"] for o, c in enumerate(counts) if o >= order)
    assert procfs.free_blocks_at_least(zones, order) == blocks
    cpu = snap["cpu"]
    assert procfs.kernel_cpu_seconds(text) == (cpu[2] + cpu[5] + cpu[6]) / procfs.USER_HZ
    chosen = data.draw(st.sampled_from(snap["thp"]))
    assert procfs.parse_thp_setting(" ".join(f"[{c}]" if c == chosen else c for c in snap["thp"])) == chosen
    reading = sampler.read_guest(lambda command: text + "--bh-balloon-pages--\nsmall 3\nhuge 2\n")
    assert reading[("guest", "free_order9_blocks")] == procfs.free_blocks_at_least(zones, 9)
    assert reading[sampler.GUEST_CPU_KEY] == procfs.kernel_cpu_seconds(text)
    assert reading[("guest", "balloon_small")] == 3 and reading[("guest", "balloon_huge")] == 2


@given(TEXT, st.lists(st.integers(0, 1 << 48), max_size=3))
def test_any_text_through_every_parser_is_read_or_refused_in_one_line(text, addresses):
    """Every parser of guest and host text, and the guest reading that feeds the /proc ones,
    takes any text: a reading of what it can read, or (the frame map) one line saying why not."""
    for parse in (procfs.parse_kv_kib, procfs.parse_vmstat):
        assert all(isinstance(v, int) for v in parse(text).values())
    assert procfs.free_blocks_at_least(procfs.parse_buddyinfo(text), 9) >= 0
    cpu = procfs.kernel_cpu_seconds(text)
    assert cpu is None or cpu >= 0
    assert isinstance(procfs.parse_thp_setting(text), str)
    reading = sampler.read_guest(lambda command: text + "\n--bh-balloon-pages--\n" + text)
    assert all(isinstance(v, (int, float)) and not math.isnan(v) for v in reading.values())
    out, found = hostmap.anon_huge_by_vma(text.splitlines(keepends=True), addresses)
    assert found <= set(addresses) and all(v >= 0 for v in out.values())
    state = parse_state(text)
    assert isinstance(state.why_ended(), str)
    try:
        frames = guestmap.parse(text)
    except GuestStateError as e:
        assert "\n" not in str(e), str(e)
    else:
        assert all(c.sum() == guestmap.FRAME_PAGES for c in frames.values())
    assert all(s.size > 0 for s in ramlayout.parse_flatview(text))


# ---- smaps: AnonHugePages per VMA ----------------------------------------------------------

@given(st.lists(st.tuples(st.integers(0, 1 << 40), st.integers(1, 1 << 30), U64), max_size=8), st.data())
def test_smaps_anon_huge_pages_per_vma_round_trip(vmas, data):
    text = "".join(f"{lo:x}-{lo + size:x} rw-p 00000000 00:00 0 \nRss:  4 kB\nAnonHugePages: {ahp} kB\n"
                   for lo, size, ahp in vmas)
    addresses = data.draw(st.lists(st.integers(0, 1 << 41), max_size=4))
    out, found = hostmap.anon_huge_by_vma(text.splitlines(keepends=True), addresses)
    for a in addresses:
        holders = [(lo, ahp) for lo, size, ahp in vmas if lo <= a < lo + size]
        assert (a in found) == bool(holders)
    for lo in out:
        assert any(lo == v_lo for v_lo, _, _ in vmas)


# ---- the workload state (bh-step's status file and the cgroup's files) ---------------------

ENDS = st.lists(st.tuples(st.integers(1, 1 << 22), st.sampled_from(["main", "orphan"]),
                          st.sampled_from(["exit", "signal"]), st.integers(0, 255)), max_size=5)


@given(st.booleans(), st.lists(st.integers(1, 1 << 22), max_size=5), st.integers(0, 1 << 40), st.integers(0, 1 << 40),
       st.integers(0, 1 << 20), ENDS, st.booleans(), st.integers(1, 1 << 22))
def test_workload_state_round_trips(populated, pids, current, anon, oom, ends, done, start):
    text = (f"populated {int(populated)}\nfrozen 0\ncurrent {current}\nanon {anon}\nanon_thp 0\nfile 4096\n"
            f"oom_kill {oom}\nprocs {' '.join(map(str, pids))}\nstart {start}\n"
            + "".join(f"{role} {pid} {how} {value}\n" for pid, role, how, value in ends)
            + ("done\n" if done else ""))
    s = parse_state(text)
    assert s.exists and s.populated == populated and s.pids == tuple(pids) and s.main_pid == start
    assert s.memory is not None and s.memory.current_kib == current / 1024 and s.memory.anon_kib == anon / 1024
    assert s.oom_kills == oom and s.done == done
    assert [(e.pid, e.role, e.how, e.value) for e in s.ends] == [(p, r, h, v) for p, r, h, v in ends]
    assert isinstance(s.why_ended(), str)


# ---- the guest frame map (bh-framemap) -----------------------------------------------------

CUT_SPREAD = guestmap.FRAME_PAGES // 4    # a sixth of the cuts at 0 and a sixth at FRAME_PAGES


def frame_counts(blob: bytes) -> list[int]:
    """A frame's six counts (summing to FRAME_PAGES) from five cuts read from 10 bytes: a list
    of five integers drawn per frame cost most of this target's time (2.2 -> 1.6 CPU-s). Cuts
    are clipped into [0, FRAME_PAGES], so most frames (7 in 8) have a state with no page; zero
    bytes, where shrinking goes, give a whole frame in one state."""
    raw = np.frombuffer(blob, np.uint16).astype(np.int64) % (guestmap.FRAME_PAGES + 2 * CUT_SPREAD + 1)
    cuts = np.sort(np.clip(raw - CUT_SPREAD, 0, guestmap.FRAME_PAGES)).tolist()
    edges = [0, *cuts, guestmap.FRAME_PAGES]
    return [b - a for a, b in zip(edges, edges[1:])]


@given(st.lists(st.tuples(st.integers(1, 64), st.binary(min_size=10, max_size=10).map(frame_counts)), max_size=8),
       st.integers(0, 1 << 20))
def test_frame_map_round_trips_and_runs_expand(runs, start):
    lines, expected, first = [], {}, start
    for n, counts in runs:
        lines.append(f"F {first} {n} " + " ".join(map(str, counts)))
        expected.update({f: counts for f in range(first, first + n)})
        first += n
    parsed = guestmap.parse("\n".join([*lines, "END"]) + "\n")
    assert {f: c.tolist() for f, c in parsed.items()} == expected
    if parsed:
        states = guestmap.states(np.stack(list(parsed.values())))
        assert set(states.tolist()) <= set(range(len(guestmap.GUEST_STATES)))


# ---- QEMU's flat view and the spans of guest RAM -------------------------------------------

SEGMENT = st.tuples(st.integers(0, 1 << 44), st.integers(1, 1 << 34), st.sampled_from(
    ["pc.ram", "mem0", "pc.bios", "virtio-mem0", "/objects/mem"]), st.integers(0, 1 << 34), st.integers(-5, 5))


@given(st.lists(SEGMENT, max_size=8))
def test_flat_view_round_trips(segments):
    text = 'FlatView #0\n AS "memory", root: system\n Root memory region: system\n' + "".join(
        f"  {gpa:016x}-{gpa + size - 1:016x} (prio {prio}, ram): {region} @{off:016x}\n"
        for gpa, size, region, off, prio in segments) + "\nFlatView #1\n AS \"I/O\", root: io\n" \
        "  0000000000000000-000000000000ffff (prio 0, ram): io-ram @0000000000000000\n"
    parsed = ramlayout.parse_flatview(text)
    assert [(s.gpa, s.size, s.region, s.offset) for s in parsed] == [
        (gpa, size, region, off) for gpa, size, region, off, _ in segments]


@given(st.lists(st.tuples(st.sampled_from(["pc.ram", "mem0"]), st.integers(0, 1 << 24), st.integers(1, 1 << 12),
                          st.integers(0, 1 << 12), st.integers(0, 1 << 20)), max_size=6))
def test_spans_are_whole_huge_ranges_inside_the_pieces(pieces):
    """Generated pieces (in 4 KiB pages): every span is 2 MiB aligned from its region's base,
    a whole number of 2 MiB ranges, inside the host mapping of its region up to its last piece."""
    page = 4096
    segs = [ramlayout.RamSegment(region, gpa * page, size * page, off * page, (base + off) * page)
            for region, gpa, size, off, base in pieces]
    by_region: dict[str, list[ramlayout.RamSegment]] = {}
    for s in segs:
        by_region.setdefault(s.region, []).append(s)
    for span in ramlayout.spans_from(segs):
        mine = by_region[span.region]
        assert span.size > 0 and span.size % hostmap.HUGE == 0 and span.hva % hostmap.HUGE == 0 \
            or min(s.hva - s.offset for s in mine) % hostmap.HUGE
        # from the RAM block's start (a range may begin in a ROM hole of the view) to its last piece's end
        assert min(s.hva - s.offset for s in mine) <= span.hva
        assert span.hva + span.size <= max(s.hva + s.size for s in mine)
        span.gpa_of(span.hva)


def test_a_frame_map_line_beyond_any_guest_is_refused_not_expanded():
    with pytest.raises(GuestStateError, match="beyond"):
        guestmap.parse(f"F 0 {1 << 40} 512 0 0 0 0 0\nEND\n")
