"""The after-the-balloon steps on a real guest (docs/recovery.md): one boot of the stock
512 MiB guest, usemem punching holes in 300 MiB (host huge pages behind it), the balloon to
400 MiB, then deflate, retouch and 10 s of observe at 2 readings a second.

Measured, not assumed: the deflate gives the memory back as the guest itself counts it
(MemTotal), the retouch's time comes from the guest and lies within the step's wall time,
observe reads the frame map at its rate for its duration, and the recovery classification
of the run's stored frames agrees with the observe row and with the map's own readings.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import run_scenario_cli

from harness.results.frames import HOST_HUGE, HOST_SPLIT
from harness.results.recovery import FATES, broken_by
from tests.toml_text import after_balloon_steps, arm, preamble, step

pytestmark = pytest.mark.vm

GUEST_MIB, BALLOON_MIB = 512, 400
OBSERVE_S, OBSERVE_HZ = 10.0, 2.0


@pytest.fixture(scope="module")
def results(tmp_path_factory, artifacts):
    tmp = tmp_path_factory.mktemp("after")
    text = (preamble("after", memory_mib=GUEST_MIB, vm={"guest_thp": "always"},
                     timing={"settle_seconds": 3, "step_pause_seconds": 0.5, "host_sample_hz": 5})
            + step("background", "usemem", command="usemem --punch-holes -s -1 300m", ready="punch holes done",
                   holds_mib=120, timeout=600)
            + step("balloon", "balloon", target_mib=BALLOON_MIB)
            + after_balloon_steps(OBSERVE_S, OBSERVE_HZ)
            + arm("stock"))
    proc, out = run_scenario_cli(tmp, text)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(out / "summary.csv").set_index("step")
    frames = pd.read_parquet(out / "runs" / "stock-r1" / "frames.parquet")
    samples = pd.read_csv(out / "samples.csv") if (out / "samples.csv").exists() else pd.read_parquet(
        out / "samples.parquet")
    return summary, frames, samples, out


def test_deflate_gives_the_memory_back_to_the_guest(results):
    summary, *_ = results
    balloon, deflate = summary.loc["balloon"], summary.loc["deflate"]
    assert deflate["kind"] == "deflate" and deflate["target_mib"] == GUEST_MIB
    assert deflate["actual_mib"] == GUEST_MIB and bool(deflate["reached"])
    given_back_mib = deflate["actual_mib"] - balloon["actual_mib"]
    assert given_back_mib == GUEST_MIB - BALLOON_MIB
    # the guest's own count: MemTotal rose by what the balloon gave back (the stock driver
    # takes ballooned pages out of MemTotal), within one 2 MiB page
    rise_kib = deflate["guest_mem_total_after_kib"] - balloon["guest_mem_total_after_kib"]
    assert abs(rise_kib - given_back_mib * 1024) <= 2048, (rise_kib, given_back_mib)


def test_retouch_times_a_touch_of_what_was_given_back(results):
    summary, _, _, out = results
    r = summary.loc["retouch"]
    assert r["retouch_mib"] == GUEST_MIB - BALLOON_MIB
    assert 0 < r["retouch_seconds"] < r["step_seconds"]
    log = (out / "runs" / "stock-r1" / "steps").glob("*retouch*")
    text = "".join(p.read_text() for p in log)
    assert f"{(GUEST_MIB - BALLOON_MIB) << 20} bytes" in text   # usemem's own line: it touched that much
    assert r["accel"] in ("tcg", "kvm")


def test_observe_reads_the_frame_map_at_its_rate_for_its_duration(results):
    summary, frames, samples, _ = results
    f = frames.assign(phase=frames["phase"].astype(str), at=frames["at"].astype(str))
    observed = f[(f["phase"] == "observe") & (f["at"] == "during")].groupby("sample")["t"].first().to_numpy()
    expected = OBSERVE_S * OBSERVE_HZ + 1
    assert abs(len(observed) - expected) <= 1, observed
    gaps = np.diff(observed)
    assert abs(np.median(gaps) - 1 / OBSERVE_HZ) < 0.1, gaps
    assert OBSERVE_S - 0.5 <= observed[-1] - observed[0] <= OBSERVE_S + 0.5
    # the step took its duration (and the boundary readings), no less
    assert summary.loc["observe", "step_seconds"] >= OBSERVE_S
    # the host figures kept their own rate meanwhile (5/s)
    rss = samples[(samples["phase"] == "observe") & (samples["metric"] == "rss_kib")]
    assert len(rss) >= 0.8 * OBSERVE_S * 5


def test_recovery_of_the_real_run_agrees_with_the_map(results):
    summary, frames, _, _ = results
    rec = broken_by(frames, "balloon")
    row = summary.loc["observe"]
    assert rec.broken > 0, "the 4 KiB balloon broke no host huge page: nothing to follow"
    assert row["recovery_broken_frames"] == rec.broken
    assert sum(row[f"recovery_{fate}_frames"] for fate in FATES) == rec.broken
    # each broken frame was huge at the balloon's start and split at its end, in the stored map
    f = frames.assign(phase=frames["phase"].astype(str), at=frames["at"].astype(str))
    start = f[(f["phase"] == "balloon") & (f["at"] == "start")].set_index("frame")["host"]
    end = f[(f["phase"] == "balloon") & (f["at"] == "end")].set_index("frame")["host"]
    assert (start.loc[rec.frames] == HOST_HUGE).all() and (end.loc[rec.frames] == HOST_SPLIT).all()
    # every recollapsed frame is huge in the last reading; the figure is a fraction of them
    last = f[f["sample"] == f["sample"].max()].set_index("frame")["host"]
    recollapsed = rec.frames[rec.fate == FATES.index("recollapsed")]
    assert (last.loc[recollapsed] == HOST_HUGE).all()
    fraction = row["recovery_recollapsed_fraction"]
    assert 0 <= fraction <= 1 and (math.isclose(fraction, row["recovery_recollapsed_frames"] / rec.broken))
