"""A fleet's row (issue 30, docs/fleet.md): its guests' readings of one step, summed.

The fleet is read as one large guest: per-process and per-guest figures (the QEMU processes'
RSS and AnonHugePages, the balloons' sizes, the frame maps' counts, the guests' own meminfo)
add up, so every summary column derived from them (rss_freed_kib, returned_fraction,
thp_lost_per_returned_mib, ...) is the fleet's own. Host figures (/proc/meminfo, vmstat) are
one host's already: they come from the first guest's sampler. Times and ratios a guest
measured itself (retouch, recovery) do not add up and stay NaN: each guest's row has them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.results import metrics

# Sources whose figures add up over guests (harness.probes.sampler, harness.probes.framemap).
SUMMED_SOURCES = ("qemu", "balloon", "frames", "guest", "workload")
HOST_SOURCE = "host"
FLEET_LABEL = "fleet"


def fleet_step_label(label: str) -> str:
    """The fleet row's step label: its own group in every table (never pooled with one guest's)."""
    return f"{label} [{FLEET_LABEL}]"


def summed_reading(readings: Sequence[metrics.Reading]) -> metrics.Reading:
    """The guests' readings summed per key of :data:`SUMMED_SOURCES` (a key missing or NaN in
    any guest makes the sum NaN: a total over part of the fleet is no total); host keys from
    the first reading."""
    out: metrics.Reading = {}
    keys = {k for r in readings for k in r}
    for key in keys:
        source = key[0]
        if source in SUMMED_SOURCES:
            values = [float(r.get(key, math.nan)) for r in readings]
            out[key] = math.nan if any(math.isnan(v) for v in values) else sum(values)
        elif source == HOST_SOURCE and readings:
            out[key] = readings[0].get(key, math.nan)
    return out


def fleet_row(identity: dict[str, Any], kind: str, target_mib, befores: Sequence[metrics.Reading],
              afters: Sequence[metrics.Reading], accel: str, step_seconds: float, guest_mib: int) -> dict[str, Any]:
    """The step's '[fleet]' summary row from its guests' readings (those that finished it)."""
    before, after = summed_reading(befores), summed_reading(afters)
    after[metrics.FLEET_GUESTS_KEY] = float(len(afters))
    after[metrics.FLEET_GUEST_MIB_KEY] = float(guest_mib)
    total_target = float(target_mib) * len(afters) if target_mib is not None else None
    row_identity = {**identity, "step": fleet_step_label(identity["step"]), "guest": FLEET_LABEL}
    return metrics.summary_row(row_identity, kind, total_target, before, after, accel, step_seconds)
