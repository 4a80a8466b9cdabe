"""The measurement's definitions on synthetic readings: no VM, no build."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from harness.results import metrics
from harness.results.metrics import HEADLINE, METRICS, SUMMARY_COLUMNS, summary_row


@dataclass
class Move:
    reached: bool
    outcome: str
    seconds: float
    events: list = field(default_factory=list)
    requested_at: float = math.nan


def reading(actual_mib: float, qemu_ahp_kib: float, rss_kib: float, host_ahp_kib: float = 0.0,
            split_pmd: float = 0.0, guest_anon_kib: float = 500_000.0) -> metrics.Reading:
    return {("balloon", "actual_mib"): actual_mib, ("qemu", "anon_huge_kib"): qemu_ahp_kib,
            ("qemu", "rss_kib"): rss_kib, ("host", "anon_huge_kib"): host_ahp_kib,
            ("host", "thp_split_pmd"): split_pmd, ("guest", "anon_kib"): guest_anon_kib}


IDENT = {"run_id": "a-r1", "arm": "a", "rep": 1, "step": "balloon 624", "backing": "anonymous"}


def test_balloon_step_arithmetic_and_units():
    before = reading(1024, 1_000_000, 1_100_000, host_ahp_kib=1_010_000, split_pmd=10)
    after = reading(624, 600_000, 700_000, host_ahp_kib=610_000, split_pmd=210)
    row = summary_row(IDENT, "balloon", 624, before, after, "tcg", 12.5, Move(True, "reached", 3.0))
    assert list(row) == SUMMARY_COLUMNS
    assert row["ballooned_mib"] == 400 and row["requested_mib"] == 400 and row["shrink_fraction"] == 1.0
    assert row["thp_lost_kib"] == 400_000
    # kB lost / 1024 = MiB lost, per MiB ballooned
    assert row["thp_lost_per_ballooned_mib"] == pytest.approx(400_000 / 1024 / 400)
    assert row["rss_freed_kib"] == 400_000
    assert row["thp_split_pmd_delta"] == 200
    assert row["reached"] is True and row["outcome"] == "reached" and row["settle_seconds"] == 3.0
    assert row["guest_anon_after_kib"] == 500_000 and row["accel"] == "tcg"


def test_nothing_ballooned_gives_nan_ratio_not_zero_or_infinity():
    before = reading(1024, 1_000_000, 1_100_000)
    after = reading(1024, 990_000, 1_100_000)
    row = summary_row(IDENT, "balloon", 624, before, after, "tcg", 1.0, Move(False, "settled", 10.0))
    assert row["ballooned_mib"] == 0
    assert math.isnan(row["thp_lost_per_ballooned_mib"])
    assert row["shrink_fraction"] == 0.0 and row["reached"] is False


def test_stopping_short_shows_in_shrink_fraction():
    # The RFC arm that stopped at 902 MiB for a 624 target: a fine-looking ratio, little memory back.
    row = summary_row(IDENT, "balloon", 624, reading(1024, 1_000_000, 1_100_000),
                      reading(902, 991_000, 1_092_000), "tcg", 30.0, Move(False, "settled", 20.0))
    assert row["shrink_fraction"] == pytest.approx(122 / 400)
    assert row["thp_lost_per_ballooned_mib"] < 0.1


def test_deflate_fraction_and_steps_without_a_target():
    row = summary_row(IDENT, "balloon", 1024, reading(600, 0, 0), reading(1024, 0, 0), "kvm", 1.0,
                      Move(True, "reached", 1.0))
    assert row["requested_mib"] == -424 and row["shrink_fraction"] == 1.0
    run = summary_row({**IDENT, "step": "usemem"}, "run", None, reading(1024, 0, 0), reading(1024, 0, 0),
                      "kvm", 5.0)
    assert math.isnan(run["target_mib"]) and math.isnan(run["shrink_fraction"])
    assert run["reached"] is None and math.isnan(run["settle_seconds"])


def test_missing_sources_are_nan():
    row = summary_row(IDENT, "measure", None, {}, {}, "tcg", 0.0)
    assert math.isnan(row["qemu_rss_before_kib"]) and math.isnan(row["thp_lost_per_ballooned_mib"])


def _sampled_keys() -> set[tuple[str, str]]:
    """Every (source, metric) the sampler records around a step: a host reading of a real
    process and a guest reading (its command run on this host's /proc, with a design driver's
    debugfs counters after the mark)."""
    import os
    import subprocess

    from harness.probes.sampler import read_guest, read_host

    def run(command: str) -> str:
        mark = command.split("echo ", 1)[1].split(";", 1)[0]
        text = subprocess.run(["sh", "-c", "cat /proc/meminfo /proc/buddyinfo /proc/vmstat /proc/stat"],
                              capture_output=True, text=True, check=True).stdout
        return f"{text}{mark}\nsmall 1\nhuge 2\norder 9\n"

    return (set(read_host(os.getpid(), lambda: 1024.0)) | set(read_guest(run)) | _workload_keys() | _frame_keys()
            | _after_balloon_keys() | _fleet_keys())


def _fleet_keys() -> set[tuple[str, str]]:
    """What a fleet's row adds to its after-reading (issue 30, harness.results.fleet.fleet_row)."""
    return {metrics.FLEET_GUESTS_KEY, metrics.FLEET_GUEST_MIB_KEY}


def _after_balloon_keys() -> set[tuple[str, str]]:
    """What the after-the-balloon steps add to their after-reading (harness.experiment.runner):
    an observe step's recovery figures, a retouch's time and size."""
    import numpy as np

    from harness.results.recovery import classify
    rec = classify(np.array([2]), np.array([[1]]), np.array([[10]]), np.array([0.0]))
    return {("recovery", k) for k in rec.figures()} | {metrics.RETOUCH_SECONDS_KEY, metrics.RETOUCH_MIB_KEY}


def _frame_keys() -> set[tuple[str, str]]:
    """The frame map's reading at a step boundary (harness.probes.framemap.FrameMap.capture):
    its counts of frames by state, and the smaps cross-check."""
    import numpy as np

    from harness.results.frames import frame_counts, joint_states
    host = np.array([0, 1, 2], dtype=np.uint8)
    joint = joint_states(np.array([0, 1, 2], dtype=np.uint8), host)
    return {("frames", k) for k in frame_counts(host, joint)} | {("frames", "huge_vs_smaps_kib")}


def _workload_keys() -> set[tuple[str, str]]:
    """The watched workloads' reading the runner adds around each step (one background workload)."""
    from harness.experiment.watch import WatchedWorkload, workload_reading
    from harness.experiment.workload import CgroupMemory, CommandState, StepCommand
    w = WatchedWorkload(StepCommand(None, "held", "usemem -s -1 100m", 1, "background"))  # type: ignore[arg-type]
    state = CommandState(exists=True, populated=True, pids=(7,), main_pid=7, main_end=None, ends=(), done=False,
                         error=None, memory=CgroupMemory(110_000.0, 100_000.0, 4096.0, 2000.0), oom_kills=0)
    return set(workload_reading([w], {w.slug: state}))


def test_every_column_is_computed_when_every_reading_is_there():
    """With every reading the runner takes (the sampler's and the watched workloads'), a move
    with QEMU's events and the host samples of the step, no summary column may be left None or NaN:
    a column summary_row forgot (or misnamed) would otherwise come out None in every run, silently."""
    keys = _sampled_keys()
    before: metrics.Reading = {k: 100.0 for k in keys}
    after: metrics.Reading = {k: 150.0 for k in keys}
    before.update(reading(1024, 1_000_000, 1_100_000, host_ahp_kib=1_010_000, split_pmd=10))
    after.update(reading(624, 600_000, 700_000, host_ahp_kib=610_000, split_pmd=210))
    # the backing's readings (runner.backing_reading: harness.probes.backing_usage), issue 29
    before.update({metrics.BACKING_HELD_KEY: 1_100_000.0, metrics.BACKING_HUGE_KEY: 1_000_000.0})
    after.update({metrics.BACKING_HELD_KEY: 700_000.0, metrics.BACKING_HUGE_KEY: 600_000.0})
    # a resize's neighbour virtio-mem move (runner._step_resize with neighbour_mib), issue 32
    after.update({metrics.NEIGHBOUR_REACHED_KEY: 1.0, metrics.NEIGHBOUR_SECONDS_KEY: 4.0,
                  metrics.NEIGHBOUR_MOVED_KEY: 128.0})
    events = [{"event": "BALLOON_CHANGE", "timestamp": {"seconds": 1001, "microseconds": 0}}]
    series = {metrics.RSS_KEY: [(0.0, 1_100_000.0), (3.0, 700_000.0)],
              metrics.AHP_KEY: [(0.0, 600_000.0), (1.0, 700_000.0), (3.0, 900_000.0)]}
    row = summary_row({**IDENT, "mechanism": "balloon", "guest": "fleet"}, "resize", 624, before, after, "tcg", 12.5,
                      Move(True, "reached", 3.0, events, 1000.0), series=series, start_t=0.0, workload_mb_s=321.0)
    empty = [c for c, v in row.items() if v is None or (isinstance(v, float) and math.isnan(v))]
    assert empty == [], f"summary_row leaves these columns empty with every reading there: {empty}"
    assert list(row) == SUMMARY_COLUMNS


def test_every_column_is_defined_and_headlines_say_which_way_is_better():
    for name in SUMMARY_COLUMNS:
        assert METRICS[name].meaning, name
    for name in HEADLINE:
        assert METRICS[name].better in ("lower", "higher"), name
        assert METRICS[name].meaning
    for required in ("reached", "shrink_fraction", "rss_freed_kib", "thp_lost_per_ballooned_mib"):
        assert required in HEADLINE


def test_the_docs_column_reference_is_generated_from_these_definitions():
    """The column table lives in the docs (docs/reference/columns.md), generated at build time
    from METRICS: every column, with its meaning, is in what the page is made of."""
    from pathlib import Path
    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "columns.md").read_text()
    assert "<!-- generated: columns -->" in page
    import importlib.util
    hook = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference_hook", hook)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.columns_markdown()
    missing = [c for c in SUMMARY_COLUMNS if f"| `{c}` |" not in table]
    assert not missing, f"the column reference lacks summary columns: {missing}"
    plain = table.replace("&lt;", "<").replace("&gt;", ">").replace("\\|", "|")
    assert all(METRICS[c].meaning in plain for c in SUMMARY_COLUMNS)


def test_integral_and_rise_time():
    # 1 GiB for 60 s = 1 GiB*min, trapezoids between samples
    assert metrics.integral_gib_min([(0.0, 1 << 20), (30.0, 1 << 20), (60.0, 1 << 20)]) == pytest.approx(1.0)
    assert metrics.integral_gib_min([(0.0, 0.0), (60.0, 2 << 20)]) == pytest.approx(1.0)
    assert math.isnan(metrics.integral_gib_min([(0.0, 5.0)]))
    pts = [(10.0, 0.0), (11.0, 50_000.0), (12.0, 95_000.0), (13.0, 100_000.0)]
    assert metrics.rise_seconds(pts, start=10.0) == pytest.approx(2.0)   # 90 % of 100 MB first at t=12
    assert math.isnan(metrics.rise_seconds([(0.0, 0.0), (1.0, 1000.0)], 0.0))  # less than a huge page


def test_targetless_mechanism_has_no_shrink_but_a_returned_ratio_and_speed():
    # free page reporting: the guest keeps its size, the host gets 400 MiB back in 8 s, 400 MiB THP lost
    row = summary_row(IDENT, "resize", 624, reading(1024, 1_000_000, 1_100_000),
                      reading(1024, 590_400, 690_400), "tcg", 10.0, Move(None, "settled", 8.0))  # type: ignore[arg-type]
    assert row["reached"] is None and math.isnan(row["shrink_fraction"]) and math.isnan(row["moved_gib_per_s"])
    assert row["thp_lost_per_returned_mib"] == pytest.approx(1.0)
    assert row["returned_gib_per_s"] == pytest.approx(409_600 / (1 << 20) / 8.0)


def test_speed_and_footprint_columns_of_a_resize():
    series = {metrics.RSS_KEY: [(5.0, 1 << 20), (65.0, 1 << 20)], metrics.AHP_KEY: [(5.0, 0.0), (65.0, 0.0)]}
    row = summary_row({**IDENT, "mechanism": "virtio-mem"}, "resize", 512, reading(1024, 0, 1 << 20),
                      reading(512, 0, 1 << 20), "tcg", 60.0, Move(True, "reached", 2.0), series=series, start_t=5.0)
    assert row["mechanism"] == "virtio-mem"
    assert row["moved_gib_per_s"] == pytest.approx(0.25)
    assert row["rss_gib_min"] == pytest.approx(1.0) and row["thp_gib_min"] == 0.0
    assert math.isnan(row["thp_rise_seconds"]) and math.isnan(row["returned_gib_per_s"])


def test_event_seconds_use_qemus_own_timestamps():
    events = [{"event": "BALLOON_CHANGE", "timestamp": {"seconds": 1000, "microseconds": 250000}},
              {"event": "BALLOON_CHANGE", "timestamp": {"seconds": 1002, "microseconds": 500000}}]
    row = summary_row(IDENT, "resize", 624, reading(1024, 0, 0), reading(624, 0, 0), "tcg", 5.0,
                      Move(True, "reached", 3.0, events, 1000.0))
    assert row["event_seconds"] == pytest.approx(2.5)
    assert math.isnan(summary_row(IDENT, "resize", 624, reading(1024, 0, 0), reading(624, 0, 0), "tcg", 5.0,
                                  Move(True, "reached", 3.0))["event_seconds"])
