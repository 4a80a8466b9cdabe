"""The RFC experiment, both arms, on real QEMU: thp-order must lose fewer host huge pages
per ballooned MiB than baseline, and each arm's numbers must hang together."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.cli.doctor import check_thp
from harness.experiment.plan import plan
from harness.experiment.runner import run_plan
from harness.experiment.scenario import load_scenario
from harness.results import ResultsStore, load_results
from harness.vm.balloon import EXACT_TOLERANCE_MIB, THP_ORDER_TOLERANCE_MIB

pytestmark = pytest.mark.vm
REPO = Path(__file__).resolve().parents[1]
RFC = REPO / "scenarios" / "rfc-v1.toml"


@pytest.fixture(scope="module")
def rfc_results(artifacts, tmp_path_factory):
    thp = check_thp()   # what `doctor` says: without host THP there are no huge pages to lose
    if thp.status != "ok":
        pytest.skip(f"host THP is off ({thp.detail})")
    scenario = load_scenario(RFC)
    # One repetition of the two RFC arms is enough for the direction, because each arm sits on
    # its own side of 1.0 THP lost per ballooned MiB for a reason of mechanism, not of luck
    # (test_thp_order_loses_fewer_huge_pages_per_ballooned_mib asserts both sides).
    scenario = scenario.model_copy(update={"repetitions": 1, "arms": tuple(
        a for a in scenario.arms if a.name in ("baseline", "thp-order"))})
    out = tmp_path_factory.mktemp("rfc")
    (out / "scenario.toml").write_text(scenario.path.read_text())
    failed = run_plan(plan(scenario).prepared(artifacts), ResultsStore(out))
    assert failed == []
    res = load_results(out)
    res.out = out
    return res


def _balloon_row(res, arm: str):
    rows = res.summary[(res.summary["arm"] == arm) & (res.summary["kind"] == "balloon")]
    assert len(rows) == 1
    return rows.iloc[0]


def test_thp_order_loses_fewer_huge_pages_per_ballooned_mib(rfc_results):
    """One run a side suffices because the two sides of 1.0 are mechanism: thp-order discards
    whole aligned 2 MiB blocks, so it cannot lose more huge-page memory than it ballooned (plus
    one block); baseline's 4 KiB discards land in huge pages whose other halves usemem still
    holds (punch-holes), so it loses more than it ballooned. Measured here over 5 repetitions:
    0.71 [0.71..0.71] against 1.65 [1.65..1.66] (docs/findings/designs.md)."""
    base = _balloon_row(rfc_results, "baseline")
    thp = _balloon_row(rfc_results, "thp-order")
    assert base["ballooned_mib"] > 0 and thp["ballooned_mib"] > 0
    assert thp["thp_lost_kib"] <= (thp["ballooned_mib"] + THP_ORDER_TOLERANCE_MIB) * 1024, thp
    assert base["thp_lost_per_ballooned_mib"] > 1.0, base
    assert thp["thp_lost_per_ballooned_mib"] < base["thp_lost_per_ballooned_mib"], (base, thp)


@pytest.mark.parametrize("arm", ["baseline", "thp-order"])
def test_each_arm_is_internally_consistent(rfc_results, arm):
    row = _balloon_row(rfc_results, arm)
    assert row["qemu_ahp_after_kib"] < row["qemu_ahp_before_kib"]
    assert row["qemu_rss_after_kib"] < row["qemu_rss_before_kib"]
    # (not the host-wide AnonHugePages: other guests on the host move it; the QEMU's own above)
    guest_mib = load_scenario(RFC).vm.memory_mib
    assert 0 < row["actual_mib"] <= guest_mib and row["start_mib"] == guest_mib
    # Only a balloon of 2 MiB pages may land up to 2 MiB off; a 4 KiB balloon lands exactly.
    tolerance = THP_ORDER_TOLERANCE_MIB if arm == "thp-order" else EXACT_TOLERANCE_MIB
    assert row["actual_mib"] >= row["target_mib"] - tolerance
    assert row["reached"] == (abs(row["actual_mib"] - row["target_mib"]) < tolerance)
    assert row["shrink_fraction"] == pytest.approx(row["ballooned_mib"] / (guest_mib - row["target_mib"]))
    # Losses are real and bounded: not more huge pages than the process had. (Below 1.0 per
    # ballooned MiB is possible: ballooned guest memory the host never backed costs nothing.)
    assert 0 < row["thp_lost_kib"] <= row["qemu_ahp_before_kib"]
    assert row["rss_freed_kib"] > 0
    assert not math.isnan(row["settle_seconds"]) and row["settle_seconds"] > 0
    # The samples cover the balloon phase at the configured rate. The sampler catches up when
    # a read is late, so only a loaded host's slow reads (QMP of a TCG guest) lower the rate:
    # half the configured rate is the bar a sampler that stalled or ran at 1/s cannot pass.
    hz = load_scenario(RFC).timing.host_sample_hz
    s = rfc_results.samples
    actual = s[(s["arm"] == arm) & (s["phase"] == row["step"]) & (s["metric"] == "actual_mib")]
    span = actual["t"].max() - actual["t"].min()
    assert span > 0 and len(actual) / span >= hz / 2, (len(actual), span)


def test_report_command_redraws_table_and_plots(rfc_results, capsys):
    from harness.cli import main
    assert main(["report", str(rfc_results.out)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[0] == "arm" and any(l.startswith("baseline") for l in lines)
    assert any(l.startswith("thp-order") for l in lines) and "583680" in out  # the RFC's figure beside
    table = [l for l in lines if l.split() and l.split()[0] in ("arm", "stock", "baseline", "thp-order")]
    assert max(len(l) for l in [*table, lines[1]]) <= 100, table     # fits a terminal by default
    # then one line (wrapped to 100 columns: continuation lines are indented): where the rest is
    last = max(i for i, line in enumerate(lines) if not line.startswith(" "))
    where = " ".join(line.strip() for line in lines[last:])
    assert lines[last].startswith("legend:") and "--explain" in where
    assert max(len(line) for line in lines) <= 100
    assert main(["report", str(rfc_results.out), "--wide"]) == 0
    assert "976896" in capsys.readouterr().out                        # and every RFC figure with --wide
    for png in ("host_memory_over_time.png", "summary_bars.png"):
        data = (rfc_results.out / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_frame_map_shows_where_each_arm_lost_its_huge_pages(rfc_results):
    """The 2 MiB frame map of the same runs: the baseline's 4 KiB balloon leaves frames
    partly ballooned on split host ranges, thp-order's 2 MiB balloon frames ballooned whole
    whose host range is gone whole; and the map's huge ranges match smaps at every boundary."""
    base = _balloon_row(rfc_results, "baseline")
    thp = _balloon_row(rfc_results, "thp-order")
    assert base["frames_split_by_balloon_after"] > 10 * max(thp["frames_split_by_balloon_after"], 1), (base, thp)
    assert thp["frames_returned_whole_after"] > base["frames_returned_whole_after"], (base, thp)
    # every ballooned 2 MiB page of thp-order is a frame returned whole (the RFC's driver balloons only those)
    assert thp["frames_returned_whole_after"] * 2 == pytest.approx(thp["ballooned_mib"], abs=2)
    assert (rfc_results.summary["frames_huge_vs_smaps_kib"].abs() <= 2048).all(), \
        rfc_results.summary[["run_id", "step", "frames_huge_vs_smaps_kib"]]
    import pandas as pd
    for run_id in ("baseline-r1", "thp-order-r1"):
        frames = pd.read_parquet(rfc_results.out / "runs" / run_id / "frames.parquet")
        boundary = frames[frames["at"].astype(str) != "during"]
        assert (boundary["guest_balloon"] >= 0).all(), "every boundary reading has the guest's side"
        assert set(frames["at"].astype(str)) >= {"start", "end", "during"}


def test_report_draws_the_frame_maps(rfc_results):
    from harness.analysis.framemaps import write_frame_maps
    paths = write_frame_maps(rfc_results.out, rfc_results.out / "plots", ["baseline", "thp-order"])
    assert {p.name for p in paths} == {"frames-baseline-r1.png", "frames-thp-order-r1.png", "frames_by_arm.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
