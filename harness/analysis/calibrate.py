"""Noise floors measured on an A/A results folder (``balloon-harness calibrate``).

Two copies of one arm ran interleaved, N repetitions each: any difference between them is
noise. For every headline figure and table step the floor is

    the 95th percentile of |Hodges-Lehmann shift| between two groups of N runs each,
    drawn with replacement from the 2N runs of both copies (2000 resamples, seeded),

i.e. how far apart two identical arms land at N repetitions in 19 of 20 nights (for
``reached_fraction``, a yes/no per run: the difference of the two groups' fractions). A
figure's shipped floor (one number per figure, as ``EFFECT_FLOORS`` holds them) is the
largest over the steps. As Firecracker's A/B tooling keeps per-metric noise thresholds
measured on its hosts, not set by hand.

The same folder is also the A/A check: the copy against the other through ``decide`` at
the default alpha: no figure should come out better or worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.decide import BETTER, HIGHER, LOWER, WORSE, decide
from harness.analysis.defaults import DEFAULT_ALPHA
from harness.analysis.groups import HEADLINE_METRICS, REACHED_FRACTION, run_values
from harness.errors import HarnessError
from harness.results.folder import open_folder, ordered
from harness.results.metrics import TABLE_KINDS

RESAMPLES = 2000
QUANTILE = 0.95
SEED = 26
DEFINITION = (f"{QUANTILE:.0%} percentile of |Hodges-Lehmann shift| (reached_fraction: |difference of "
              f"fractions|) between two groups of n runs drawn with replacement from the 2n runs of two "
              f"identical arms, {RESAMPLES} resamples, seed {SEED}; per figure the largest over the steps")


@dataclass
class FloorRow:
    step: str
    metric: str
    n: int                  # runs per copy (the group size of the resampling)
    median: float
    floor: float
    aa_shift: float         # the copy against the other: the observed shift
    aa_p: float
    aa_verdict: str


@dataclass
class Calibration:
    path: Path
    arm: str
    twin: str
    rows: list[FloorRow] = field(default_factory=list)

    @property
    def floors(self) -> dict[str, float]:
        """figure -> its floor (the largest over the steps); reached_fraction as ``reached``."""
        out: dict[str, float] = {}
        for r in self.rows:
            if math.isfinite(r.floor):
                name = "reached" if r.metric == REACHED_FRACTION else r.metric
                out[name] = max(out.get(name, 0.0), r.floor)
        return out

    @property
    def false_alarms(self) -> list[FloorRow]:
        """A/A figures called better or worse (there should be none)."""
        return [r for r in self.rows if r.aa_verdict in (BETTER, WORSE, HIGHER, LOWER)]


def noise_floor(metric: str, values: np.ndarray, n: int, rng: np.random.Generator,
                resamples: int = RESAMPLES, quantile: float = QUANTILE) -> float:
    """The ``quantile`` of |shift| between two groups of ``n`` drawn with replacement from ``values``."""
    if values.size < 2 or n < 1:
        return math.nan
    a = rng.choice(values, size=(resamples, n), replace=True)
    b = rng.choice(values, size=(resamples, n), replace=True)
    if metric == REACHED_FRACTION:
        shifts = b.mean(axis=1) - a.mean(axis=1)
    else:
        shifts = np.median((b[:, None, :] - a[:, :, None]).reshape(resamples, -1), axis=1)
    return float(np.quantile(np.abs(shifts), quantile))


def calibrate_folder(path: str | Path, arm: str, twin: str, seed: int = SEED,
                     alpha: float = DEFAULT_ALPHA) -> Calibration:
    """Floors and the A/A decisions of results folder ``path`` (arm against its twin)."""
    folder = open_folder(path)
    s = folder.summary
    if s.empty:
        raise HarnessError(f"{path}: no finished run to calibrate from")
    arms = set(s["arm"])
    missing = [a for a in (arm, twin) if a not in arms]
    if missing:
        raise HarnessError(f"{path}: no finished run of {', '.join(missing)} "
                           f"(arms with runs: {', '.join(sorted(arms))})")
    s = s[s["kind"].isin(TABLE_KINDS)] if "kind" in s.columns else s
    _, steps = ordered(s, [arm, twin], folder.scenario.steps)
    rng = np.random.default_rng(seed)
    cal = Calibration(Path(path), arm, twin)
    for step in steps:
        rows = s[s["step"] == step]
        for metric in HEADLINE_METRICS:
            va, vb = run_values(rows[rows["arm"] == arm], metric), run_values(rows[rows["arm"] == twin], metric)
            if va.size == 0 or vb.size == 0:
                continue
            d = decide(metric, va, vb, alpha)
            n = min(va.size, vb.size)
            pooled = np.concatenate([va, vb])
            cal.rows.append(FloorRow(step, metric, n, float(np.median(pooled)) if metric != REACHED_FRACTION
                                     else float(pooled.mean()), noise_floor(metric, pooled, n, rng),
                                     d.shift, d.p_value, d.verdict))
    return cal


def calibration_record(cal: Calibration, **context: Any) -> dict[str, Any]:
    """What ``floors.json`` holds: the floors, how they were measured, and every step's row."""
    return {**context, "arm": cal.arm, "twin": cal.twin, "definition": DEFINITION,
            "floors": {k: round(v, 6) for k, v in cal.floors.items()},
            "aa_false_alarms": [f"{r.step}: {r.metric}" for r in cal.false_alarms],
            "by_step": pd.DataFrame([r.__dict__ for r in cal.rows]).replace({np.inf: None, -np.inf: None})
            .astype(object).where(lambda df: df.notna(), None).to_dict(orient="records")}
