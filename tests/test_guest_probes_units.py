"""Issue 32's harness parts without a guest: the ``[probes]``, guest knob and neighbour keys
of the schema (refusals as one line naming the key), the probes' parsing of a sample's
text and their change per step, and the guest knobs' writes through a real shell (host
paths the kernel refuses, so nothing on the host changes). The guest side is
tests/test_neighbours_vm.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import GuestStateError
from harness.experiment import guest_knobs
from harness.experiment.scenario import load_scenario, load_scenario_text
from harness.probes.guest_events import EVENT_MARK, GuestEvents, _events_wanted, trigger
from harness.results.metrics import GUEST_TRACE_SOURCE, GUEST_VMSTAT_SOURCE, SAMPLE_COLUMNS
from harness.results.probes import absent_table, per_arm, probe_deltas

ROOT = Path(__file__).resolve().parents[1]

BASE = """
name = "t"
[[steps]]
kind = "balloon"
target_mib = 512
{step}
[[arms]]
name = "a"
{arm}
{rest}
"""


def _load(tmp_path: Path, step: str = "", arm: str = "", rest: str = ""):
    return load_scenario_text(BASE.format(step=step, arm=arm, rest=rest), tmp_path / "t.toml")


def _refusal(tmp_path: Path, **parts: str) -> str:
    with pytest.raises(Exception) as e:
        _load(tmp_path, **parts)
    text = str(e.value)
    assert "\n" not in text.strip(), text
    return text


def test_probes_and_knobs_load(tmp_path):
    s = _load(tmp_path, arm='guest_knobs = { "/proc/sys/vm/watermark_boost_factor" = 0 }',
              rest='[guest]\nknobs = { "/sys/kernel/mm/transparent_hugepage/enabled" = "never", '
                   '"/proc/sys/vm/watermark_boost_factor" = "15000" }\n'
                   '[probes]\nguest_vmstat = ["compact_stall"]\nguest_trace = ["compaction:*"]\n')
    assert s.arm_guest_knobs(s.arms[0]) == {"/sys/kernel/mm/transparent_hugepage/enabled": "never",
                                            "/proc/sys/vm/watermark_boost_factor": "0"}
    assert s.probes.guest_vmstat == ("compact_stall",) and s.probes.guest_trace == ("compaction:*",)
    assert s.probes.active


@pytest.mark.parametrize("rest, key", [
    ('[probes]\nguest_vmstat = ["Compact Stall"]', "probes.guest_vmstat[0]"),
    ('[probes]\nguest_trace = ["mm_compaction_begin"]', "probes.guest_trace[0]"),
    ('[probes]\nguest_trace = ["a:b", "a:b"]', "probes.guest_trace"),
    ('[probes]\nguest_trace = ["a:b:x", "a:b:y"]', "probes.guest_trace"),
    ('[guest]\nknobs = { "/etc/passwd" = "x" }', "guest.knobs"),
    ('[guest]\nknobs = { "/proc/sys/../../etc/x" = "1" }', "guest.knobs"),
    ('[guest]\nknobs = { "/sys/module/virtio_balloon/parameters/x" = true }', "guest.knobs"),
    ('[guest]\nknobs = { "/proc/sys/vm/x" = "it\'s" }', "guest.knobs"),
    ('[vm]\nappend = "bh.thp=never"', "vm.append"),
    ('[vm]\nneighbour_virtio_mem_mib = 100', "vm.neighbour_virtio_mem_mib"),
])
def test_bad_keys_are_refused_in_one_line(tmp_path, rest, key):
    assert f": {key}" in _refusal(tmp_path, rest=rest)


def test_a_neighbour_move_needs_the_device_and_a_balloon_arm(tmp_path):
    assert "steps[0].neighbour_mib" in _refusal(tmp_path, step="neighbour_mib = 128")
    assert "arms[0].mechanism" in _refusal(tmp_path, step="neighbour_mib = 128", arm='mechanism = "virtio-mem"',
                                           rest="[vm]\nneighbour_virtio_mem_mib = 256")
    s = _load(tmp_path, step="neighbour_mib = 128", rest="[vm]\nneighbour_virtio_mem_mib = 256")
    assert s.steps[0].neighbour_mib == 128


def test_the_shipped_neighbour_scenario_loads():
    s = load_scenario(ROOT / "scenarios" / "neighbours.toml")
    assert s.vm.neighbour_virtio_mem_mib == 256 and "movablecore=" in s.vm.append
    assert {a.module for a in s.arms} == {"contig", "compact"}
    assert {a.stack for a in s.arms} == {"bookworm", "trixie", "sid"}


def test_events_wanted_expands_subsystems_and_names_the_absent():
    listing = {"compaction": ["mm_compaction_begin", "mm_compaction_end"], "huge_memory": ["mm_khugepaged_scan_pmd"]}
    wanted, absent = _events_wanted(("compaction:*", "huge_memory:mm_khugepaged_scan_pmd", "huge_memory:nope",
                                     "cma:*"), listing)
    assert wanted == ["compaction:mm_compaction_begin", "compaction:mm_compaction_end",
                      "huge_memory:mm_khugepaged_scan_pmd"]
    assert set(absent) == {"huge_memory:nope", "cma:*"}


def test_a_sample_parses_counters_totals_and_values_per_field():
    probe = GuestEvents(vmstat=("compact_stall",),
                        events=("compaction:mm_compaction_begin", "compaction:mm_compaction_end:status",
                                "migrate:mm_migrate_pages"))
    cmd = probe.command()
    assert "compaction:mm_compaction_begin@compaction/mm_compaction_begin" in cmd and EVENT_MARK in cmd
    text = (f"small 3\n{EVENT_MARK}\n@@compaction:mm_compaction_begin\n    Hits: 17\n"
            "@@compaction:mm_compaction_end:status\n{ status:          1 } hitcount:          5\n"
            "{ status:          4 } hitcount:          7\n    Hits: 12\n@@migrate:mm_migrate_pages\n")
    r = probe.parse(text, {"compact_stall": 5, "other": 1})
    assert r == {(GUEST_VMSTAT_SOURCE, "compact_stall"): 5.0,
                 (GUEST_TRACE_SOURCE, "compaction:mm_compaction_begin"): 17.0,
                 (GUEST_TRACE_SOURCE, "compaction:mm_compaction_end"): 12.0,
                 (GUEST_TRACE_SOURCE, "compaction:mm_compaction_end:status=1"): 5.0,
                 (GUEST_TRACE_SOURCE, "compaction:mm_compaction_end:status=4"): 7.0}


def test_a_field_replaces_the_plain_trigger_of_its_event():
    wanted, absent = _events_wanted(("compaction:*", "compaction:mm_compaction_end:status"),
                                    {"compaction": ["mm_compaction_begin", "mm_compaction_end"]})
    assert wanted == ["compaction:mm_compaction_begin", "compaction:mm_compaction_end:status"] and not absent
    assert trigger("compaction:mm_compaction_end:status") == "hist:keys=status"
    assert trigger("compaction:mm_compaction_begin") == "hist:keys=common_pid"


def test_the_probe_command_runs_in_a_real_shell(tmp_path):
    """The per-sample text, run by sh over a tracefs-like folder: totals and values per field."""
    begin = tmp_path / "events" / "compaction" / "mm_compaction_begin"
    end = tmp_path / "events" / "compaction" / "mm_compaction_end"
    begin.mkdir(parents=True)
    end.mkdir(parents=True)
    (begin / "hist").write_text("# event histogram\n{ common_pid: 1 } hitcount: 4\n\nTotals:\n    Hits: 4\n"
                                "    Entries: 1\n    Dropped: 0\n")
    (end / "hist").write_text("# event histogram\n#\n{ status:          2 } hitcount:          3\n\nTotals:\n"
                              "    Hits: 3\n    Entries: 1\n    Dropped: 0\n")
    probe = GuestEvents(events=("compaction:mm_compaction_begin", "compaction:mm_compaction_end:status"))
    cmd = probe.command().replace("/sys/kernel/tracing", str(tmp_path))
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert probe.parse(out, {}) == {(GUEST_TRACE_SOURCE, "compaction:mm_compaction_begin"): 4.0,
                                    (GUEST_TRACE_SOURCE, "compaction:mm_compaction_end"): 3.0,
                                    (GUEST_TRACE_SOURCE, "compaction:mm_compaction_end:status=2"): 3.0}


def test_probe_deltas_are_last_minus_first_per_run_and_step():
    rows = [("r1", "a", 1, "idle", 0.0, GUEST_VMSTAT_SOURCE, "compact_stall", 2.0),
            ("r1", "a", 1, "inflate", 1.0, GUEST_VMSTAT_SOURCE, "compact_stall", 3.0),
            ("r1", "a", 1, "inflate", 2.0, GUEST_VMSTAT_SOURCE, "compact_stall", 9.0),
            ("r1", "a", 1, "inflate", 2.0, "guest", "compact_stall", 100.0),
            ("r2", "a", 2, "inflate", 1.0, GUEST_TRACE_SOURCE, "x:y", 1.0),
            ("r2", "a", 2, "inflate", 3.0, GUEST_TRACE_SOURCE, "x:y", 5.0)]
    rows += [("r2", "a", 2, "idle", 0.0, GUEST_TRACE_SOURCE, "x:y:f=1", 2.0),
             ("r2", "a", 2, "inflate", 1.0, GUEST_TRACE_SOURCE, "x:y:f=1", 3.0),
             ("r2", "a", 2, "inflate", 3.0, GUEST_TRACE_SOURCE, "x:y:f=2", 7.0)]   # value 2 first hit in the step
    d = probe_deltas(pd.DataFrame(rows, columns=SAMPLE_COLUMNS))
    got = {(r.run_id, r.step, r.name): r.delta for r in d.itertuples()}
    assert got == {("r1", "idle", "compact_stall"): 0.0, ("r1", "inflate", "compact_stall"): 6.0,
                   ("r2", "inflate", "x:y"): 4.0, ("r2", "idle", "x:y:f=1"): 2.0,
                   ("r2", "inflate", "x:y:f=1"): 1.0, ("r2", "inflate", "x:y:f=2"): 7.0}
    table = per_arm(d, ["idle", "inflate"])
    assert list(table["step"]) == ["idle", "idle", "inflate", "inflate", "inflate", "inflate"]
    assert probe_deltas(pd.DataFrame(columns=SAMPLE_COLUMNS)).empty


def test_absent_probes_come_from_run_json():
    runs = [{"run_id": "r1", "arm": "a", "probes": {"kernel": "6.1", "absent": {"thp_underused_split_page": "why"}}},
            {"run_id": "r2", "arm": "a", "probes": None}]
    t = absent_table(runs)
    assert list(t["name"]) == ["thp_underused_split_page"] and list(t["reason"]) == ["why"]


def _sh(cmd: str) -> str:
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout


def test_guest_knobs_write_and_read_back_through_a_real_shell(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1\n")
    b.write_text("always [madvise] never\n")
    record = guest_knobs.apply(_sh, {str(a): "42", str(b): "never"})
    assert record[str(a)] == {"requested": "42", "read_back": "42"}
    assert record[str(b)]["read_back"] == "never"     # a plain file holds what was written


def test_a_refused_knob_is_one_line_with_path_value_and_errno():
    # the host's kernel refuses a word for a number: EINVAL, and nothing changes
    path = "/proc/sys/vm/watermark_boost_factor"
    if not Path(path).exists():
        pytest.skip(f"no {path} on this host")
    with pytest.raises(GuestStateError) as e:
        guest_knobs.apply(_sh, {path: "lots"})
    text = str(e.value)
    assert path in text and "'lots'" in text and "EINVAL" in text and "\n" not in text


def test_a_missing_knob_is_enoent(tmp_path):
    with pytest.raises(GuestStateError, match="ENOENT"):
        guest_knobs.apply(_sh, {str(tmp_path / "nope"): "1"})
