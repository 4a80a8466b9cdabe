"""A state timeline: rows (things) x time (seconds, unevenly spaced readings), one colour
per state, rows grouped under labelled bands, panels side by side.

Knows nothing of what the states mean (harness.analysis.recovery_timeline draws the huge
pages a balloon broke, over the minutes after it, with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.render.statemap import save_with_state_legend


@dataclass
class TimelinePanel:
    """One panel: ``states`` (rows x readings, indices into the state names), ``t`` the
    readings' seconds, ``groups`` (label, first row, rows) bands drawn beside the rows,
    ``marks`` (seconds, label) vertical lines (the steps' starts)."""

    title: str
    states: np.ndarray
    t: np.ndarray
    groups: list[tuple[str, int, int]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)


def _edges(t: np.ndarray) -> np.ndarray:
    """Column edges: each reading holds until the next (the last for its median spacing)."""
    if len(t) == 1:
        return np.array([t[0], t[0] + 1.0])
    step = float(np.median(np.diff(t)))
    return np.concatenate([t, [t[-1] + max(step, 1e-3)]])


def draw_timelines(panels: Sequence[TimelinePanel], names: Sequence[str], colours: Sequence[str], path: Path,
                   title: str = "", ylabel: str = "", xlabel: str = "seconds") -> Path:
    """Write the panels side by side as one PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(colours))
    norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.2 + 3.6 * max(1, len(panels)), 6.0),
                             squeeze=False)
    present: set[int] = set()
    for ax, p in zip(axes[0], panels):
        if p.states.size:
            rows = np.arange(p.states.shape[0] + 1)
            ax.pcolormesh(_edges(np.asarray(p.t, dtype=float)), rows, p.states, cmap=cmap, norm=norm,
                          shading="flat")
            present |= set(np.unique(p.states).tolist())
        if len(p.t):
            edges = _edges(np.asarray(p.t, dtype=float))
            ax.set_xlim(edges[0], edges[-1])
        rows_n = max(1, p.states.shape[0])
        for label, first, n in p.groups:
            ax.axhline(first, color="#333333", linewidth=0.6)
            if n < 0.04 * rows_n:   # too thin a band for its label: the title counts it
                continue
            ax.text(1.01, (first + n / 2) / rows_n, f"{label}\n({n})", fontsize=7,
                    transform=ax.transAxes, va="center")
        for t, label in p.marks:
            ax.axvline(t, color="#000000", linewidth=0.6, linestyle=":")
            ax.text(t, 1.0, label, fontsize=6, rotation=90, va="bottom", ha="right",
                    transform=ax.get_xaxis_transform())
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(p.title, fontsize=9, pad=28)
        ax.tick_params(labelsize=7)
    return save_with_state_legend(fig, title, names, colours, present, path, bottom=0.07)
