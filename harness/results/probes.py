"""The guest probes' change over each step, per run (issue 32; docs/guest-probes.md).

A scenario's ``[probes]`` names its own counters and tracepoints, so their figures are not
summary columns (those are declared once for every scenario, :mod:`harness.results.metrics`):
they are rows of the samples (sources ``guest_vmstat`` and ``guest_trace``), and this module
turns them into one row per run, step and counter: the value at the step's last reading
minus the value at its first (the runner reads the guest just before and just after every
step, under the step's label, so the two ends are the step's own). A counter the guest's
kernel lacks is absent from the samples (a tracepoint's count per value of a field, which
appears with its first hit, counts from 0); run.json's ``probes.absent`` says why, and
:func:`absent_table` carries that reason into the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness.results.metrics import GUEST_TRACE_SOURCE, GUEST_VMSTAT_SOURCE

PROBE_SOURCES = (GUEST_VMSTAT_SOURCE, GUEST_TRACE_SOURCE)
DELTA_COLUMNS = ["run_id", "arm", "rep", "step", "source", "name", "first", "last", "delta", "samples"]


def probe_deltas(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step, counter): its first and last reading within the step and the
    difference; empty (with :data:`DELTA_COLUMNS`) when the folder recorded no probe."""
    if samples.empty or "source" not in samples:
        return pd.DataFrame(columns=DELTA_COLUMNS)
    rows = samples[samples["source"].isin(PROBE_SOURCES)]
    if rows.empty:
        return pd.DataFrame(columns=DELTA_COLUMNS)
    rows = rows.sort_values("t", kind="stable")
    grouped = rows.groupby(["run_id", "arm", "rep", "phase", "source", "metric"], sort=False)["value"]
    out = pd.DataFrame({"first": grouped.first(), "last": grouped.last(), "samples": grouped.size()}).reset_index()
    # a tracepoint's hits per value of a field ("sub:event:field=value") appear the first time
    # that value is hit: before that the count was 0, not missing. Their first reading is
    # the last one before the step, else 0.
    per_value = (out["source"] == GUEST_TRACE_SOURCE) & out["metric"].str.contains("=", regex=False)
    if per_value.any():
        out.loc[per_value, "first"] = [_before(rows, r) for r in out[per_value].itertuples()]
    out["delta"] = out["last"] - out["first"]
    out = out.rename(columns={"phase": "step", "metric": "name"})
    return out[DELTA_COLUMNS]


def _before(rows: pd.DataFrame, r: Any) -> float:
    """The last reading of ``r``'s counter before its step began, else 0."""
    same = rows[(rows["run_id"] == r.run_id) & (rows["metric"] == r.metric) & (rows["source"] == r.source)]
    start = rows[(rows["run_id"] == r.run_id) & (rows["phase"] == r.phase)]["t"].min()
    earlier = same[same["t"] < start]
    return float(earlier["value"].iloc[-1]) if len(earlier) else 0.0


def absent_table(runs: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """(run_id, arm, name, reason) for every probe a run's guest kernel lacked (run.json)."""
    rows = []
    for info in runs:
        probes = info.get("probes") if isinstance(info, dict) else None
        if not isinstance(probes, dict):
            continue
        for name, reason in dict(probes.get("absent") or {}).items():
            rows.append((info.get("run_id"), info.get("arm"), probes.get("kernel", ""), name, str(reason)))
    return pd.DataFrame(rows, columns=["run_id", "arm", "kernel", "name", "reason"])


def per_arm(deltas: pd.DataFrame, steps: Iterable[str] = ()) -> pd.DataFrame:
    """The deltas by arm, step and counter: median, min, max and the runs counted (the
    per-run values stay in :func:`probe_deltas`)."""
    if deltas.empty:
        return pd.DataFrame(columns=["arm", "step", "name", "runs", "median", "min", "max"])
    g = deltas.groupby(["arm", "step", "name"], sort=False)["delta"]
    out = pd.DataFrame({"runs": g.size(), "median": g.median(), "min": g.min(), "max": g.max()}).reset_index()
    order = {s: i for i, s in enumerate(steps)}
    out["_o"] = out["step"].map(lambda s: order.get(s, len(order)))
    return out.sort_values(["_o", "arm", "name"], kind="stable").drop(columns="_o").reset_index(drop=True)
