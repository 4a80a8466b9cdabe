"""The shared plot: every run a point over a box plot per group.

Why every run and not a bar per group: with 3 to 10 repetitions a mean bar hides that an
arm stalled once; points show it. Hollow red points: runs that did not reach their
target. The jitter is seeded, so the same results always draw the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

JITTER = 0.12


@dataclass
class Group:
    """One box: its label, one value per run (NaN allowed), and per run whether it reached its
    target (NaN: no target; 0: missed)."""

    label: str
    values: np.ndarray
    reached: Optional[np.ndarray] = None


def box_panel(ax: Any, groups: Sequence[Group], title: str, rng: np.random.Generator,
              hlines: Sequence[tuple[float, str, str]] = (), label_points: bool = False,
              rotation: float = 0, fontsize: float = 8) -> None:
    """Draw ``groups`` on matplotlib axes ``ax``; ``hlines``: (y, colour, linestyle) guides."""
    boxes, positions = [], []
    for i, g in enumerate(groups, 1):
        vals = np.asarray(g.values, dtype=float)
        flags = np.asarray(g.reached, dtype=float) if g.reached is not None else np.full(len(vals), np.nan)
        have = ~np.isnan(vals)
        ok, missed = have & (flags != 0), have & (flags == 0)
        x = i + rng.uniform(-JITTER, JITTER, size=len(vals))
        ax.scatter(x[ok], vals[ok], s=20, color="tab:blue", zorder=3,
                   label="run" if label_points and i == 1 else None)
        ax.scatter(x[missed], vals[missed], s=24, facecolors="none", edgecolors="tab:red", zorder=3,
                   label="run, target not reached" if label_points and i == 1 else None)
        if have.any():
            boxes.append(vals[have])
            positions.append(i)
    if boxes:
        ax.boxplot(boxes, positions=positions, widths=0.5, showfliers=False, medianprops={"color": "black"})
    for y, colour, style in hlines:
        ax.axhline(y, color=colour, linestyle=style, linewidth=0.8)
    ax.set_xticks(range(1, len(groups) + 1), [g.label for g in groups], rotation=rotation, fontsize=fontsize)
    ax.set_title(title, fontsize=9)
