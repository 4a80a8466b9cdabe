"""The frame-map picture: one run's 2 MiB guest frames (rows) at each step boundary
(columns), coloured by what the guest holds there and how the host backs it.

Its own module (not report.py) so the picture moves with the rendering code it belongs
to. Reads ``runs/<run>/frames.parquet`` (harness.probes.framemap); draws the boundary
readings only (the host-only readings during a resize have no guest side).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from harness.probes.framemap import JOINT_STATES

log = logging.getLogger(__name__)

COLOURS = {
    "unbacked": "#e6e6e6",
    "returned whole": "#2ca02c",
    "ballooned, backed": "#bcbd22",
    "split by balloon": "#d62728",
    "partial balloon, huge": "#9467bd",
    "partial balloon, unbacked": "#98df8a",
    "guest THP on huge": "#08306b",
    "kept huge": "#6baed6",
    "split": "#ff7f0e",
    "host only": "#ffffff",
}


def boundary_matrix(frames: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(joint state per frame x boundary reading, column labels, frame numbers)."""
    b = frames[frames["at"].astype(str) != "during"]
    if b.empty:
        return np.zeros((0, 0), dtype=np.uint8), [], np.zeros(0, dtype=np.int64)
    wide = b.pivot(index="frame", columns="sample", values="joint").sort_index()
    labels = []
    for sample in wide.columns:
        row = b[b["sample"] == sample].iloc[0]
        labels.append("boot" if str(row["phase"]) == "idle" else f"{row['phase']} ({row['at']})")
    return wide.to_numpy(dtype=np.uint8), labels, wide.index.to_numpy()


def draw(frames: pd.DataFrame, ax, title: str = "") -> None:
    """One run's picture on ``ax``."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    matrix, labels, frame_numbers = boundary_matrix(frames)
    cmap = ListedColormap([COLOURS[s] for s in JOINT_STATES])
    norm = BoundaryNorm(np.arange(len(JOINT_STATES) + 1) - 0.5, len(JOINT_STATES))
    ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm, origin="lower")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
    if len(frame_numbers):
        ticks = np.linspace(0, len(frame_numbers) - 1, min(9, len(frame_numbers))).astype(int)
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{frame_numbers[i] * 2} MiB" for i in ticks], fontsize=7)
    ax.set_ylabel("guest-physical frame (2 MiB)", fontsize=8)
    ax.set_title(title, fontsize=9)


def _legend(fig, present: set[int]) -> None:
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=COLOURS[s], edgecolor="#999999", label=s)
               for i, s in enumerate(JOINT_STATES) if i in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)) or 1, fontsize=7, frameon=False)


def plot_runs(runs: list[tuple[str, pd.DataFrame]], path: Path) -> Path:
    """Runs side by side (one panel each) in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 + 3.0 * len(runs), 6.5), squeeze=False)
    present: set[int] = set()
    for ax, (name, df) in zip(axes[0], runs):
        draw(df, ax, name)
        present |= set(np.unique(df.loc[df["at"].astype(str) != "during", "joint"]).tolist())
    fig.suptitle("where the huge pages went: guest state x host backing per 2 MiB frame", fontsize=10)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    _legend(fig, present)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_frame_maps(out: Path, plots_dir: Path, arm_order: Optional[list[str]] = None) -> list[Path]:
    """``plots/frames-<run>.png`` for every run with a ``frames.parquet``, and
    ``plots/frames_by_arm.png``: each arm's first such run side by side."""
    found = sorted((Path(out) / "runs").glob("*/frames.parquet"))
    paths = []
    firsts: dict[str, tuple[str, pd.DataFrame]] = {}
    for f in found:
        run_id = f.parent.name
        try:
            df = pd.read_parquet(f)
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s)", f, e)
            continue
        paths.append(plot_runs([(run_id, df)], plots_dir / f"frames-{run_id}.png"))
        arm = run_id.rsplit("-r", 1)[0]
        firsts.setdefault(arm, (run_id, df))
    if firsts:
        order = [a for a in (arm_order or []) if a in firsts] + [a for a in firsts if a not in (arm_order or [])]
        paths.append(plot_runs([firsts[a] for a in order], plots_dir / "frames_by_arm.png"))
    return paths
