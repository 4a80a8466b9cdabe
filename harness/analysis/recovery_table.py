"""The after-the-balloon table under the headline table (docs/recovery.md): per arm and
observe step, medians over its runs of what became of the huge pages the balloon broke,
and of the retouch's time beside the accelerator (a relative figure under TCG).
"""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from harness.analysis.groups import fmt_metric
from harness.render.text import text_table
from harness.results.folder import ordered
from harness.results.metrics import METRICS

COLUMNS = ("recovery_broken_frames", "recovery_recollapsed_frames", "recovery_freed_frames",
           "recovery_split_thinned_frames", "recovery_still_split_frames", "recovery_half_seconds",
           "recovery_back_60s_frames")
HEADERS = tuple(METRICS[c].short for c in COLUMNS)   # each metric's short header (fits 100 columns)


def recovery_text(summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
                  step_order: Optional[list[str]] = None) -> str:
    """The table, or "" when no run has an observe step with recovery figures."""
    if summary is None or summary.empty or "recovery_broken_frames" not in summary.columns:
        return ""
    obs = summary[(summary["kind"] == "observe") & summary["recovery_broken_frames"].notna()]
    if obs.empty:
        return ""
    retouch = summary[summary["kind"] == "retouch"] if "retouch_seconds" in summary.columns else summary.iloc[0:0]
    arms, steps = ordered(obs, arm_order, step_order)
    rows = []
    for arm in arms:
        touch = retouch[retouch["arm"] == arm]
        t = float(touch["retouch_seconds"].median()) if len(touch) else math.nan
        accel = ",".join(sorted(set(touch["accel"].dropna().astype(str)))) if len(touch) else ""
        for step in steps:
            r = obs[(obs["arm"] == arm) & (obs["step"] == step)]
            if r.empty:
                continue
            rows.append([arm, step, str(len(r)), *[fmt_metric(c, float(r[c].median())) for c in COLUMNS],
                         f"{fmt_metric('retouch_seconds', t)} ({accel})" if accel else "-"])
    header = ["arm", "step", "n", *HEADERS, "retouch s"]
    return ("after the balloon: what became of the huge pages it broke (medians, docs/recovery.md)\n"
            + text_table(header, rows, left=2)
            + "\nhuge again: recollapsed; thinned: split for good; half s: from the break's end until half were "
              "huge\n    at once; at 60 s: huge again 60 s after it; retouch s: timed in the guest (accelerator)")
