"""A state map: a grid of categorical states (rows x columns) per panel, panels side by
side, one colour per state and a legend of the states present.

Knows nothing of what the states mean: the caller names them and picks their colours
(the frame map, harness.analysis.framemaps, draws guest-physical frames against step
boundaries with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class StatePanel:
    """One panel: ``states`` (rows x columns of indices into the state names), the column
    labels, and the row labels to show at a few rows (index -> label)."""

    title: str
    states: np.ndarray
    columns: list[str]
    row_ticks: dict[int, str]


def draw_state_maps(panels: Sequence[StatePanel], names: Sequence[str], colours: Sequence[str], path: Path,
                    title: str = "", ylabel: str = "") -> Path:
    """Write the panels side by side as one PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(colours))
    norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 + 3.0 * len(panels), 6.5), squeeze=False)
    present: set[int] = set()
    for ax, p in zip(axes[0], panels):
        ax.imshow(p.states, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm, origin="lower")
        ax.set_xticks(range(len(p.columns)))
        ax.set_xticklabels(p.columns, rotation=35, ha="right", fontsize=7)
        ax.set_yticks(list(p.row_ticks))
        ax.set_yticklabels(list(p.row_ticks.values()), fontsize=7)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(p.title, fontsize=9)
        present |= set(np.unique(p.states).tolist())
    return save_with_state_legend(fig, title, names, colours, present, path, bottom=0.09)


def save_with_state_legend(fig, title: str, names: Sequence[str], colours: Sequence[str], present: set,
                           path: Path, bottom: float) -> Path:
    """Title, a legend of the states that occur (one swatch each, below the panels), and the PNG
    at ``path``; the figure is closed. Shared by the state maps and the timelines."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=colours[i], edgecolor="#999999", label=name)
               for i, name in enumerate(names) if i in present]
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)) or 1, fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
