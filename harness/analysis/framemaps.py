"""The frame-map pictures of a results folder: for each run, its 2 MiB guest frames (rows)
at each step boundary (columns), coloured by the joint state (harness.results.frames).

Reads ``runs/<run>/frames.parquet``; draws the boundary readings only (the host-only
readings during a resize have no guest side). The drawing is harness.render.statemap's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from harness.render.statemap import StatePanel, draw_state_maps
from harness.results import layout
from harness.results.frames import JOINT_STATES, joint_states

log = logging.getLogger(__name__)

COLOURS = {
    "unbacked": "#e6e6e6",
    "returned whole": "#2ca02c",
    "given up, backed": "#bcbd22",
    "split by balloon": "#d62728",
    "partial balloon, huge": "#9467bd",
    "partial balloon, unbacked": "#98df8a",
    "guest THP on huge": "#08306b",
    "kept huge": "#6baed6",
    "split": "#ff7f0e",
    "unplugged": "#74c476",
    "host only": "#ffffff",
}
TITLE = "where the huge pages went: guest state x host backing per 2 MiB frame"


def panel(frames: pd.DataFrame, title: str) -> StatePanel:
    """One run's boundary readings as a panel: frames x readings of joint states."""
    b = frames[frames["at"].astype(str) != "during"].copy()
    if b.empty:
        return StatePanel(title, np.zeros((0, 0), dtype=np.uint8), [], {})
    # joined again from the stored sides, so a folder written before a state was added draws alike
    b["joint"] = joint_states(b["guest"].to_numpy(np.uint8), b["host"].to_numpy(np.uint8))
    wide = b.pivot(index="frame", columns="sample", values="joint").sort_index()
    labels = []
    for sample in wide.columns:
        row = b[b["sample"] == sample].iloc[0]
        labels.append("boot" if str(row["phase"]) == "idle" else f"{row['phase']} ({row['at']})")
    numbers = wide.index.to_numpy()
    ticks = np.linspace(0, len(numbers) - 1, min(9, len(numbers))).astype(int)
    return StatePanel(title, wide.to_numpy(dtype=np.uint8), labels,
                      {int(i): f"{int(numbers[i]) * 2} MiB" for i in ticks})


def draw(runs: list[tuple[str, pd.DataFrame]], path: Path) -> Path:
    return draw_state_maps([panel(df, name) for name, df in runs], JOINT_STATES,
                           [COLOURS[s] for s in JOINT_STATES], path, TITLE, "guest-physical frame (2 MiB)")


def write_frame_maps(out: Path, plots_dir: Path, arm_order: Optional[list[str]] = None) -> list[Path]:
    """``plots/frames-<run>.png`` for every run with a frame map, and
    ``plots/frames_by_arm.png``: each arm's first such run side by side."""
    paths = []
    firsts: dict[str, tuple[str, pd.DataFrame]] = {}
    for name, run_id, f in layout.frame_map_files(out):   # a fleet's guests each have their own
        try:
            df = pd.read_parquet(f)
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s)", f, e)
            continue
        paths.append(draw([(name, df)], plots_dir / f"frames-{name}.png"))
        firsts.setdefault((layout.parse_run_id(run_id) or (run_id,))[0], (name, df))
    if firsts:
        order = [a for a in (arm_order or []) if a in firsts] + [a for a in firsts if a not in (arm_order or [])]
        paths.append(draw([firsts[a] for a in order], plots_dir / "frames_by_arm.png"))
    return paths
