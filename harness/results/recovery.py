"""What became of each huge page a resize broke: from the 2 MiB frame map over time.

A host huge page is *broken* by a step when its guest frame's host range was one huge page
at the step's start reading and is split (mapped partly, in 4 KiB pages) at its end reading.
From then on, every later reading of the host map (the observe steps' fixed-rate readings,
the boundaries, the host-only readings during a deflate) says where it is, and its *fate* is
its state at the last reading:

- ``recollapsed``: one huge page again (khugepaged collapsed it, or the range was dropped
  and faulted back in huge);
- ``freed``: nothing present (the range was given back whole);
- ``split_thinned``: still split, with fewer 4 KiB pages present than right after the break:
  pages left the range after the break without it becoming huge again (the underused-THP
  shrinker splits a folio and drops its zero-filled pages: the proxy for "split for good");
- ``still_split``: still split and not thinned: still mapped by PTEs, whether the host still
  holds it as one huge folio or not (the map's reader cannot tell those apart).

Each fate's *time* is the seconds from the break's end reading to the first reading from
which the frame stayed in its fate (NaN for ``still_split``: nothing happened). The summary
keeps the counts, the recollapsed fraction, the time until half the broken huge pages were
huge again, and the count back after :data:`BACK_AFTER_SECONDS`
(harness.results.metrics, ``recovery_*``). Pure numpy/pandas, no I/O: the runner feeds it
the run's map so far (harness.experiment.runner) and the analysis the stored
``frames.parquet`` (harness.analysis.recovery_timeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.results.frames import HOST_ABSENT, HOST_HUGE, HOST_SPLIT

FATES = ("recollapsed", "freed", "split_thinned", "still_split")
RECOLLAPSED, FREED, SPLIT_THINNED, STILL_SPLIT = range(4)
NOT_BROKEN = 255
BACK_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class Recovery:
    """The fates of the huge pages one step broke. ``frames``: the broken frames' numbers;
    ``fate`` (codes into FATES) and ``seconds`` per broken frame; ``t`` the readings' times
    after the break (from 0 at the break's end reading) and ``huge_back`` how many of the
    broken frames were huge at each."""

    frames: np.ndarray
    fate: np.ndarray
    seconds: np.ndarray
    t: np.ndarray
    huge_back: np.ndarray

    @property
    def broken(self) -> int:
        return len(self.frames)

    def count(self, fate: str) -> int:
        return int((self.fate == FATES.index(fate)).sum())

    def half_seconds(self) -> float:
        """Seconds from the break until half the broken huge pages were huge again at once;
        NaN when that never happened (or nothing was broken)."""
        if not self.broken:
            return math.nan
        reached = np.flatnonzero(self.huge_back * 2 >= self.broken)
        return float(self.t[reached[0]]) if len(reached) else math.nan

    def back_after(self, seconds: float = BACK_AFTER_SECONDS) -> float:
        """Broken huge pages huge again at the last reading at most ``seconds`` after the
        break; NaN when the readings do not reach that far."""
        if not self.broken or not len(self.t) or self.t[-1] < seconds:
            return math.nan
        return float(self.huge_back[np.flatnonzero(self.t <= seconds)[-1]])

    def median_seconds(self, fate: str) -> float:
        s = self.seconds[self.fate == FATES.index(fate)]
        return float(np.median(s)) if len(s) else math.nan

    def figures(self) -> dict[str, float]:
        """The summary's figures (source ``recovery`` of a reading, metrics ``recovery_*``)."""
        out = {"broken": float(self.broken), **{f: float(self.count(f)) for f in FATES},
               "recollapsed_fraction": self.count("recollapsed") / self.broken if self.broken else math.nan,
               "half_seconds": self.half_seconds(), "back_after": self.back_after()}
        for f in ("recollapsed", "freed"):
            out[f"{f}_median_seconds"] = self.median_seconds(f)
        return out


def classify(before: np.ndarray, host: np.ndarray, present: np.ndarray, t: np.ndarray) -> Recovery:
    """The fates of the broken huge pages.

    ``before``: host states (HOST_*) per frame at the breaking step's start reading;
    ``host`` and ``present`` (readings x frames): host states and 4 KiB pages present, from
    the breaking step's end reading (row 0) to the last reading; ``t``: those readings'
    seconds (any origin; reported from row 0)."""
    host = np.asarray(host, dtype=np.uint8)
    present = np.asarray(present)
    t = np.asarray(t, dtype=np.float64) - (t[0] if len(t) else 0.0)
    if host.ndim != 2 or host.shape != present.shape or host.shape[0] != len(t) or host.shape[1] != len(before):
        raise ValueError(f"shapes do not match: before {np.shape(before)}, host {host.shape}, "
                         f"present {present.shape}, t {t.shape}")
    empty = np.zeros(0, dtype=np.int64)
    if not len(t):
        return Recovery(empty, empty.astype(np.uint8), empty.astype(float), t, empty)
    broken = np.flatnonzero((np.asarray(before) == HOST_HUGE) & (host[0] == HOST_SPLIT))
    h, p = host[:, broken], present[:, broken]
    last = h[-1]
    fate = np.full(len(broken), STILL_SPLIT, dtype=np.uint8)
    thinned = (last == HOST_SPLIT) & (p[-1] < p[0])
    fate[thinned] = SPLIT_THINNED
    fate[last == HOST_ABSENT] = FREED
    fate[last == HOST_HUGE] = RECOLLAPSED
    # in its fate from this reading on: the state it ends in (thinned: split with fewer pages)
    if len(broken):
        in_fate = np.where(fate == SPLIT_THINNED, (h == HOST_SPLIT) & (p < p[0]), h == last)
        # the first reading of the final run of in_fate rows (index of the last "not in fate" + 1)
        not_in = ~in_fate
        last_out = np.where(not_in.any(axis=0), len(t) - 1 - np.argmax(not_in[::-1], axis=0), -1)
        since = t[np.minimum(last_out + 1, len(t) - 1)]
        seconds = np.where(fate == STILL_SPLIT, math.nan, since)
    else:
        seconds = np.zeros(0)
    huge_back = (h == HOST_HUGE).sum(axis=1)
    return Recovery(broken, fate, seconds.astype(float), t, huge_back)


def broken_by(frames: pd.DataFrame, step: str) -> Recovery:
    """:func:`classify` on a run's frame map (``frames.parquet`` columns) for the huge pages
    step ``step`` broke, through its last reading."""
    f = frames.assign(phase=frames["phase"].astype(str), at=frames["at"].astype(str))
    start = f[(f["phase"] == step) & (f["at"] == "start")]
    end = f[(f["phase"] == step) & (f["at"] == "end")]
    if start.empty or end.empty:
        raise ValueError(f"the frame map has no start and end reading of step {step!r}")
    s0, s1 = int(start["sample"].min()), int(end["sample"].min())
    later = f[f["sample"] >= s1]
    host = later.pivot(index="sample", columns="frame", values="host").sort_index()
    present = later.pivot(index="sample", columns="frame", values="host_present").reindex_like(host)
    before = start[start["sample"] == s0].set_index("frame")["host"].reindex(host.columns)
    t = later.groupby("sample")["t"].first().reindex(host.index)
    rec = classify(before.to_numpy(np.uint8), host.to_numpy(np.uint8), present.to_numpy(np.int16), t.to_numpy())
    return Recovery(host.columns.to_numpy()[rec.frames], rec.fate, rec.seconds, rec.t, rec.huge_back)
