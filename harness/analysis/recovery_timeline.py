"""The recovery timelines of a results folder: for each run with an observe step, the host
huge pages the resize before it broke (rows, grouped by their fate: harness.results.recovery)
over time (columns: every reading of the 2 MiB frame map from the break on), coloured by the
host's backing (huge, split, absent). ``plots/recovery-<run>.png`` beside the frame-map
picture ``plots/frames-<run>.png`` (harness.analysis.framemaps), and
``plots/recovery_by_arm.png``: each arm's first such run side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.render.timeline import TimelinePanel, draw_timelines
from harness.results import layout
from harness.results.frames import HOST_STATES
from harness.results.recovery import FATES, broken_by

log = logging.getLogger(__name__)

COLOURS = {"absent": "#e6e6e6", "split": "#d62728", "huge": "#08306b"}
TITLE = "what became of the huge pages the balloon broke:\nthe host backing of each broken 2 MiB frame over time"


def breaking_step(steps: Sequence[Any]) -> Optional[str]:
    """The last resize (not deflate) before the first observe step; None without one."""
    kinds = [(s.kind, s.label) for s in steps]
    first_observe = next((i for i, (k, _) in enumerate(kinds) if k == "observe"), None)
    if first_observe is None:
        return None
    moves = [label for k, label in kinds[:first_observe] if k in ("resize", "balloon")]
    return moves[-1] if moves else None


def panel(frames: pd.DataFrame, step: str, title: str) -> TimelinePanel:
    """One run: the broken frames (grouped by fate, each group by its fate's time) x readings."""
    rec = broken_by(frames, step)
    f = frames.assign(phase=frames["phase"].astype(str), at=frames["at"].astype(str))
    s0 = int(f[(f["phase"] == step) & (f["at"] == "start")]["sample"].min())
    later = f[f["sample"] >= s0]
    times = later.groupby("sample")["t"].first().sort_index()
    t_break = float(f[(f["phase"] == step) & (f["at"] == "end")]["t"].min())
    t = times.to_numpy() - t_break
    order = np.lexsort((np.nan_to_num(rec.seconds, nan=np.inf), rec.fate))
    if len(order):
        host = later[later["frame"].isin(rec.frames)].pivot(index="frame", columns="sample", values="host")
        rows = host.reindex(index=rec.frames[order], columns=times.index).to_numpy(np.uint8)
    else:   # nothing broken (a 2 MiB balloon): an empty panel that says so
        rows = np.zeros((0, len(t)), np.uint8)
    groups, first = [], 0
    for code, name in enumerate(FATES):
        n = int((rec.fate == code).sum())
        if n:
            groups.append((name.replace("_", " "), first, n))
            first += n
    starts = f[f["at"] == "start"].groupby("phase", observed=True)["t"].min().sort_values()
    marks = [(float(v) - t_break, str(k)) for k, v in starts.items() if float(v) - t_break >= t[0] - 1e-9]
    counts = ", ".join(f"{n} {label}" for label, _, n in groups)
    return TimelinePanel(f"{title}: {rec.broken} broken" + (f"\n{counts}" if counts else ""), rows, t, groups, marks)


def write_recovery_timelines(out: Path, plots_dir: Path, steps: Sequence[Any],
                             arm_order: Optional[list[str]] = None) -> list[Path]:
    """``plots/recovery-<run>.png`` for every run with a frame map, when the scenario has an
    observe step after a resize; and ``plots/recovery_by_arm.png``."""
    step = breaking_step(steps)
    if step is None:
        return []
    paths: list[Path] = []
    firsts: dict[str, TimelinePanel] = {}
    names, colours = list(HOST_STATES), [COLOURS[s] for s in HOST_STATES]
    for name, run_id, f in layout.frame_map_files(out):   # a fleet's guests each have their own
        try:
            p = panel(pd.read_parquet(f), step, name)
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s: no recovery timeline (%s)", f, e)
            continue
        paths.append(draw_timelines([p], names, colours, plots_dir / f"recovery-{name}.png", TITLE,
                                    "broken huge pages (2 MiB frames)", f"seconds after {step!r} ended"))
        firsts.setdefault((layout.parse_run_id(run_id) or (run_id,))[0], p)
    if firsts:
        order = [a for a in (arm_order or []) if a in firsts] + [a for a in firsts if a not in (arm_order or [])]
        paths.append(draw_timelines([firsts[a] for a in order], names, colours, plots_dir / "recovery_by_arm.png",
                                    TITLE, "broken huge pages (2 MiB frames)", f"seconds after {step!r} ended"))
    return paths
