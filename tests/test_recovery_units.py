"""The recovery classification (harness.results.recovery) on generated frame sequences
(hypothesis), the after-the-balloon steps in the schema, and their summary columns.

The classification is checked against its definitions (docs/recovery.md), written here a
second way, one frame and one reading at a time: the fates partition the broken huge pages,
each fate is the frame's last state, each fate's time is when the frame entered it for good,
and the map read back from a ``frames.parquet``-shaped table gives what the arrays give.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.experiment.scenario import load_scenario
from harness.results import metrics
from harness.results.frames import HOST_ABSENT, HOST_HUGE, HOST_SPLIT
from harness.results.recovery import FATES, broken_by, classify
from tests.toml_text import value

STATES = st.sampled_from([HOST_ABSENT, HOST_SPLIT, HOST_HUGE])


# a byte's state (byte % 4): huge weighs double before the step, split after it, so that one
# frame in four is broken by the step (one in nine with the three states alike)
BEFORE_OF = np.array([HOST_ABSENT, HOST_SPLIT, HOST_HUGE, HOST_HUGE], np.uint8)
AFTER_OF = np.array([HOST_ABSENT, HOST_SPLIT, HOST_HUGE, HOST_SPLIT], np.uint8)


@st.composite
def sequences(draw):
    """before (frames), host and present (readings x frames), increasing times. The states and
    the page counts come from one draw of bytes each: a numpy array drawn element by element
    (hypothesis.extra.numpy) cost most of these targets' time. Bytes still give every state
    at every place, and shrink to zeros. Of the 1,000 examples of the CI profile, 349 have a
    broken frame (143 with the arrays), 128 one that recollapsed (28), 207 a half-back time
    (31), 48 four broken frames or more (26)."""
    n_frames = draw(st.integers(1, 12))
    n_read = draw(st.integers(1, 10))
    cells = n_read * n_frames
    codes = np.frombuffer(draw(st.binary(min_size=cells + n_frames, max_size=cells + n_frames)), np.uint8) % 4
    before, host = BEFORE_OF[codes[:n_frames]], AFTER_OF[codes[n_frames:]].reshape(n_read, n_frames)
    raw = np.frombuffer(draw(st.binary(min_size=2 * cells, max_size=2 * cells)), np.uint16)
    pages = (raw % 511 + 1).astype(np.int16).reshape(n_read, n_frames)
    present = np.where(host == HOST_HUGE, 512, np.where(host == HOST_ABSENT, 0, pages)).astype(np.int16)
    gaps = draw(hnp.arrays(np.float64, n_read, elements=st.floats(0.1, 30.0)))
    t = 100.0 + np.cumsum(gaps)
    return before, host, present, t


def fate_of(column_host: np.ndarray, column_present: np.ndarray) -> str:
    """The definition, for one broken frame's readings."""
    last = column_host[-1]
    if last == HOST_HUGE:
        return "recollapsed"
    if last == HOST_ABSENT:
        return "freed"
    return "split_thinned" if column_present[-1] < column_present[0] else "still_split"


@given(sequences())
def test_fates_follow_their_definitions(seq):
    before, host, present, t = seq
    rec = classify(before, host, present, t)
    expected_broken = [f for f in range(len(before)) if before[f] == HOST_HUGE and host[0, f] == HOST_SPLIT]
    assert rec.frames.tolist() == expected_broken
    assert sum(rec.count(f) for f in FATES) == rec.broken
    rel = t - t[0]
    for i, f in enumerate(rec.frames):
        fate = FATES[rec.fate[i]]
        assert fate == fate_of(host[:, f], present[:, f])
        if fate == "still_split":
            assert math.isnan(rec.seconds[i])
            continue
        # in its fate at every reading from its time on, and not at the reading just before
        k = int(np.flatnonzero(rel == rec.seconds[i])[0])
        state_ok = ((host[:, f] == HOST_SPLIT) & (present[:, f] < present[0, f])) if fate == "split_thinned" \
            else host[:, f] == host[-1, f]
        assert state_ok[k:].all()
        assert k == 0 or not state_ok[k - 1]
    for j in range(len(t)):
        assert rec.huge_back[j] == sum(host[j, f] == HOST_HUGE for f in rec.frames)


@given(sequences())
def test_half_and_back_after_read_the_counts(seq):
    before, host, present, t = seq
    rec = classify(before, host, present, t)
    figures = rec.figures()
    assert figures["broken"] == rec.broken
    rel = t - t[0]
    if not rec.broken:
        assert math.isnan(figures["half_seconds"]) and math.isnan(figures["recollapsed_fraction"])
        return
    halves = [rel[j] for j in range(len(t)) if 2 * rec.huge_back[j] >= rec.broken]
    if halves:
        assert figures["half_seconds"] == halves[0]
    else:
        assert math.isnan(figures["half_seconds"])
    assert figures["recollapsed_fraction"] == rec.count("recollapsed") / rec.broken
    if rel[-1] < 60:
        assert math.isnan(figures["back_after"])
    else:
        assert figures["back_after"] == rec.huge_back[np.flatnonzero(rel <= 60)[-1]]


# A fifth of the profile's examples: this target checks that the stored-table path agrees with
# classify (checked at the full count above), and each example runs pandas' group-bys (~8 ms).
@settings(max_examples=max(100, settings.default.max_examples // 5))
@given(sequences())
def test_the_stored_map_reads_back_as_the_arrays(seq):
    """broken_by on a frames.parquet-shaped table (a balloon step's start and end, then
    observe readings) agrees with classify on the arrays."""
    before, host, present, t = seq
    n = len(before)
    frames_no = np.arange(n) * 3 + 7          # frame numbers need not start at 0 nor be dense
    readings = [("balloon 624", "start", before, np.where(before == HOST_HUGE, 512, 0), t[0] - 5.0)]
    readings += [("balloon 624" if j == 0 else "observe", "end" if j == 0 else "during", host[j], present[j], t[j])
                 for j in range(len(t))]
    k = len(readings)      # the table built column-wise (a dict per row cost most of the example)
    df = pd.DataFrame({"sample": np.repeat(np.arange(k), n), "t": np.repeat([r[4] for r in readings], n),
                       "phase": pd.Categorical(np.repeat([r[0] for r in readings], n)),
                       "at": np.repeat([r[1] for r in readings], n), "frame": np.tile(frames_no, k),
                       "host": np.concatenate([r[2] for r in readings]).astype(int),
                       "host_present": np.concatenate([r[3] for r in readings]).astype(int)})
    got = broken_by(df, "balloon 624")
    want = classify(before, host, present, t)
    assert got.frames.tolist() == frames_no[want.frames].tolist()
    assert got.fate.tolist() == want.fate.tolist()
    np.testing.assert_allclose(got.seconds, want.seconds)
    assert got.huge_back.tolist() == want.huge_back.tolist()


def test_broken_by_names_a_missing_step():
    df = pd.DataFrame({"sample": [0], "t": [0.0], "phase": ["idle"], "at": ["start"], "frame": [0], "host": [2],
                       "host_present": [512]})
    with pytest.raises(ValueError, match="no start and end reading of step 'balloon'"):
        broken_by(df, "balloon")


def test_summary_row_carries_the_recovery_and_retouch_figures():
    rec = classify(np.array([HOST_HUGE, HOST_HUGE]), np.array([[HOST_SPLIT, HOST_SPLIT], [HOST_HUGE, HOST_SPLIT]]),
                   np.array([[300, 300], [512, 300]]), np.array([0.0, 61.0]))
    after = {("recovery", k): v for k, v in rec.figures().items()}
    after[("retouch", "seconds")] = 1.5
    row = metrics.summary_row({"step": "observe"}, "observe", None, {}, after, "tcg", 61.0)
    assert row["recovery_broken_frames"] == 2 and row["recovery_recollapsed_frames"] == 1
    assert row["recovery_still_split_frames"] == 1 and row["recovery_recollapsed_fraction"] == 0.5
    assert row["recovery_half_seconds"] == 61.0 and row["recovery_back_60s_frames"] == 0   # 60 s: row 0 still
    assert row["retouch_seconds"] == 1.5 and math.isnan(row["retouch_mib"])
    plain = metrics.summary_row({"step": "b"}, "balloon", 600, {}, {}, "tcg", 1.0)
    assert math.isnan(plain["recovery_broken_frames"]) and math.isnan(plain["retouch_seconds"])


# ---- the steps in scenario files -----------------------------------------------------------

PREAMBLE = 'name = "after"\n[vm]\nmemory_mib = 1024\n[[arms]]\nname = "a"\n'


def _load(tmp_path, steps: list[dict]):
    text = PREAMBLE + "".join("[[steps]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in s.items()) for s in steps)
    p = tmp_path / "s.toml"
    p.write_text(text)
    return load_scenario(p)


def test_after_steps_load_with_their_defaults(tmp_path):
    s = _load(tmp_path, [{"kind": "balloon", "target_mib": 600}, {"kind": "deflate"}, {"kind": "retouch"},
                         {"kind": "observe", "seconds": 120}])
    deflate, retouch, observe = s.steps[1:]
    assert (deflate.label, deflate.target_mib) == ("2:deflate", None)
    assert (retouch.label, retouch.command, retouch.touch_mib) == ("3:retouch", None, None)
    assert (observe.label, observe.seconds, observe.sample_hz) == ("4:observe 120s", 120.0, 1.0)


@pytest.mark.parametrize("step, refusal", [
    ({"kind": "observe"}, r"steps\[0\]\.seconds: required key is missing"),
    ({"kind": "observe", "seconds": 10, "sample_hz": 0}, r"steps\[0\]\.sample_hz"),
    ({"kind": "observe", "seconds": 10, "sample_hz": 50}, r"steps\[0\]\.sample_hz"),
    ({"kind": "deflate", "seconds": 3}, r"steps\[0\]\.seconds: unknown key"),
    ({"kind": "retouch", "target_mib": 3}, r"steps\[0\]\.target_mib: unknown key"),
    ({"kind": "deflate", "target_mib": 2048}, r"steps\[0\]\.target_mib: 2048 MiB is more than"),
])
def test_after_steps_refuse_what_does_not_belong(tmp_path, step, refusal):
    with pytest.raises(ConfigError, match=refusal):
        _load(tmp_path, [step])


def test_recovery_scenario_loads():
    s = load_scenario("scenarios/recovery.toml")
    assert [st.kind for st in s.steps] == ["background", "balloon", "deflate", "retouch", "observe"]
    # every RFC arm twice: khugepaged fast and off, set per arm (host_thp), never the host's as it is
    assert [a.name for a in s.arms] == [f"{arm}-{k}" for arm in ("baseline", "thp-order", "stock")
                                        for k in ("fast", "off")]
    fast, off = (dict(s.arm_thp(a)) for a in s.arms[:2])
    assert fast["khugepaged.scan_sleep_millisecs"] < off["khugepaged.scan_sleep_millisecs"]


# ---- the timeline picture --------------------------------------------------------------------

def _stored_run(out, run_id: str, before, host, present, t) -> None:
    rows = []
    readings = [("balloon", "start", before, np.where(before == HOST_HUGE, 512, 0), t[0] - 5.0)]
    readings += [("balloon" if j == 0 else "observe", "end" if j == 0 else "during", host[j], present[j], t[j])
                 for j in range(len(t))]
    for sample, (phase, at, h, p, tt) in enumerate(readings):
        rows += [{"sample": sample, "t": tt, "phase": phase, "at": at, "frame": f, "host": int(h[f]),
                  "host_present": int(p[f])} for f in range(len(before))]
    d = out / "runs" / run_id
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(d / "frames.parquet", index=False)


def test_timelines_are_drawn_per_run_and_by_arm_even_when_nothing_broke(tmp_path):
    from types import SimpleNamespace

    from harness.analysis.recovery_timeline import write_recovery_timelines
    t = np.array([0.0, 1.0, 2.0])
    _stored_run(tmp_path, "a-r1", np.array([HOST_HUGE, HOST_HUGE, HOST_ABSENT]),
                np.array([[HOST_SPLIT, HOST_SPLIT, 0], [HOST_SPLIT, HOST_HUGE, 0], [HOST_ABSENT, HOST_HUGE, 0]]),
                np.array([[100, 200, 0], [100, 512, 0], [0, 512, 0]]), t)
    _stored_run(tmp_path, "b-r1", np.array([HOST_HUGE, HOST_ABSENT]),        # broke nothing
                np.array([[HOST_HUGE, 0]] * 3), np.array([[512, 0]] * 3), t)
    steps = [SimpleNamespace(kind="balloon", label="balloon"), SimpleNamespace(kind="deflate", label="deflate"),
             SimpleNamespace(kind="observe", label="observe")]
    paths = write_recovery_timelines(tmp_path, tmp_path / "plots", steps, ["a", "b"])
    assert sorted(p.name for p in paths) == ["recovery-a-r1.png", "recovery-b-r1.png", "recovery_by_arm.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    # no observe step after a resize: no picture
    assert write_recovery_timelines(tmp_path, tmp_path / "none", steps[:2]) == []
