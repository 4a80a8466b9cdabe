"""Fleets without a guest (issue 30, docs/fleet.md): the schema's `guests` and its refusals,
the host-room check of a fleet (refused in one line naming the numbers, before any build),
the fleet row's sums and the "more guests fit" definition, and the table's host-wide marks."""

from __future__ import annotations

import math

import pytest
from test_refusals import _one_line

from harness.cli import main
from harness.errors import ConfigError
from harness.experiment.capacity import FLEET_VCPUS_PER_CORE, HostRoom, check_room
from harness.experiment.scenario import load_scenario
from harness.results import fleet, metrics
from harness.results.scenario_schema import FLEET_GUESTS_MAX
from tests.toml_text import two_stock_arms

BASE = two_stock_arms("fleet-units")


def _load(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_scenario(path)


def test_guests_at_the_top_and_per_arm(tmp_path):
    s = _load(tmp_path, "guests = 3\n" + BASE.replace('name = "b"', 'name = "b"\nguests = 2'))
    assert [s.guests_of(a) for a in s.arms] == [3, 2] and s.fleet_size == 3
    one = _load(tmp_path, BASE)
    assert [one.guests_of(a) for a in one.arms] == [1, 1] and one.fleet_size == 1


@pytest.mark.parametrize("top, arm_key, named", [
    ("guests = 0\n", "", ["guests", "at least 1"]),
    (f"guests = {FLEET_GUESTS_MAX + 1}\n", "", ["guests", f"at most {FLEET_GUESTS_MAX}"]),
    ('guests = "3"\n', "", ["guests", "must be int"]),
    ("guests = 2.0\n", "", ["guests", "must be int"]),
    ("guests = true\n", "", ["guests", "must be int"]),
    ("", "guests = 0\n", ["arms[1].guests", "at least 1"]),
    ("", "guests = -2\n", ["arms[1].guests", "at least 1"]),
])
def test_guests_is_refused_in_one_line(tmp_path, top, arm_key, named):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, top + BASE.replace('name = "b"\n', 'name = "b"\n' + arm_key))
    assert "\n" not in str(e.value)
    for text in named:
        assert text in str(e.value), str(e.value)


def test_a_fleet_is_counted_against_memory_and_cores():
    room = HostRoom(memory_mib=3000, cores=2)
    check_room(1024, 1, jobs=1, runs=9, room=room, guests=2)              # 2 GiB, 2 vCPUs: fits
    check_room(900, 1, jobs=1, runs=9, room=room, guests=2 * FLEET_VCPUS_PER_CORE - 1)   # overcommit allowed
    with pytest.raises(ConfigError, match=r"a fleet of 3 guests of 1024 MiB needs 3072 MiB; this host has 3000 MiB"):
        check_room(1024, 1, jobs=1, runs=9, room=room, guests=3)
    with pytest.raises(ConfigError, match=r"a fleet of 3 guests of 2 vCPU\(s\) needs 6 vCPUs; this host has 2 cores"):
        check_room(100, 2, jobs=1, runs=9, room=room, guests=3)
    with pytest.raises(ConfigError, match=r"--jobs 1 \(got --jobs 2\)"):
        check_room(100, 1, jobs=2, runs=9, room=room, guests=2)


def test_a_fleet_the_host_cannot_hold_is_refused_before_the_build(tmp_path, capsys):
    room = HostRoom.now()
    mib = room.memory_mib // 2 + 1          # one guest fits, three do not
    path = tmp_path / "s.toml"
    path.write_text("guests = 3\n" + BASE.replace("memory_mib = 256", f"memory_mib = {mib}"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 1
    _one_line(capsys, f"a fleet of 3 guests of {mib} MiB", f"needs {3 * mib} MiB", "MemAvailable")
    assert not out.exists()


def test_a_fleet_with_jobs_is_refused_before_the_build(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("guests = 2\n" + BASE)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--jobs", "2", "--reps", "2"]) == 1
    _one_line(capsys, "a fleet of 2 guests", "--jobs 1")


def _reading(rss: float, ahp: float, size: float, host_ahp: float) -> metrics.Reading:
    return {("qemu", "rss_kib"): rss, ("qemu", "anon_huge_kib"): ahp, ("balloon", "actual_mib"): size,
            ("host", "anon_huge_kib"): host_ahp}


def test_the_fleet_row_sums_its_guests_and_derives_more_guests_fit():
    befores = [_reading(1_000_000, 800_000, 1024, 5e6), _reading(900_000, 700_000, 1024, 5e6)]
    afters = [_reading(400_000, 300_000, 624, 4e6), _reading(250_000, 200_000, 624, 4e6)]
    identity = {"run_id": "a-r1", "arm": "a", "rep": 1, "step": "balloon", "mechanism": "balloon"}
    row = fleet.fleet_row(identity, "balloon", 624, befores, afters, "tcg", 1.0, guest_mib=512)
    assert row["step"] == "balloon [fleet]" and row["guest"] == "fleet" and row["fleet_guests"] == 2
    assert row["rss_freed_kib"] == 1_250_000 and row["qemu_ahp_after_kib"] == 500_000
    assert row["fleet_returned_mib"] == pytest.approx(1_250_000 / 1024)
    assert row["fleet_thp_kept_kib"] == 500_000
    assert row["fleet_more_guests_fit"] == math.floor(1_250_000 / 1024 / 512) == 2
    assert row["ballooned_mib"] == 800 and row["host_ahp_after_kib"] == 4e6   # the host's once, not summed
    one = metrics.summary_row(identity, "balloon", 624, befores[0], afters[0], "tcg", 1.0)
    assert math.isnan(one["fleet_more_guests_fit"]) and one["guest"] is None


def test_more_guests_fit_is_never_negative():
    assert metrics.more_guests_fit(-300.0, 512) == 0
    assert metrics.more_guests_fit(1023.9, 512) == 1
    assert math.isnan(metrics.more_guests_fit(math.nan, 512))


def test_a_guest_missing_a_figure_makes_the_sum_nan():
    s = fleet.summed_reading([{("qemu", "rss_kib"): 1.0}, {}])
    assert math.isnan(s[("qemu", "rss_kib")])


def test_the_fleet_figures_are_declared_host_wide_with_their_definition():
    for name in ("fleet_guests", "fleet_returned_mib", "fleet_thp_kept_kib", "fleet_more_guests_fit"):
        assert name in metrics.HOST_WIDE
    assert "floor(fleet_returned_mib / one guest's memory_mib)" in metrics.METRICS["fleet_more_guests_fit"].meaning


@pytest.mark.parametrize("arm_extra", ['backing = "tmpfs"\n', 'host_thp = { defrag = "never" }\n'])
def test_a_fleet_with_a_backing_or_host_knobs_is_refused_before_the_build(tmp_path, capsys, arm_extra):
    """A fleet's guests would share one host room (mounts, pools, knobs): not built yet, so the
    combination is refused in one line before anything builds, naming the arm."""
    path = tmp_path / "s.toml"
    path.write_text("guests = 2\n" + BASE.replace('name = "b"', 'name = "b"\n' + arm_extra))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 1
    _one_line(capsys, "arm b: a fleet (2 guests)", "anonymous memory")
    assert not out.exists()
