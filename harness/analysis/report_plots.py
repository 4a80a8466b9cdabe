"""The report's plots: every run (box plots with each run as a point, never one bar per arm)
and the memory of each run over time. Apart from the report's text (:mod:`.report`), so the
text can be had without matplotlib, and the plots by whoever writes the report's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from harness.analysis.defaults import RATIO, SHORT_SHRINK
from harness.analysis.groups import reached_as_float
from harness.render.boxplot import Group, box_panel
from harness.results.folder import ordered
from harness.results.metrics import MOVE_KINDS


def plot_all(samples: pd.DataFrame, summary: pd.DataFrame, out_dir: Path,
             arm_order: Optional[list[str]] = None, step_order: Optional[list[str]] = None) -> list[Path]:
    """Write the time-series and the per-run summary PNGs; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if not samples.empty:
        paths.append(_plot_timeseries(samples, summary, out_dir / "host_memory_over_time.png"))
    if not summary.empty:
        paths.append(_plot_runs(summary, out_dir / "summary_bars.png", arm_order, step_order))
    return paths


def _plot_timeseries(samples: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt
    runs = list(dict.fromkeys(samples["run_id"]))
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), squeeze=False, sharex=True)
    for ax, run_id in zip(axes[:, 0], runs):
        s = samples[samples["run_id"] == run_id]
        for (source, metric), label, style in (
                (("qemu", "anon_huge_kib"), "QEMU AnonHugePages", "-"),
                (("qemu", "rss_kib"), "QEMU Rss", "--"),
                (("host", "anon_huge_kib"), "host AnonHugePages", ":")):
            d = s[(s["source"] == source) & (s["metric"] == metric)].sort_values("t")
            ax.plot(d["t"], d["value"] / 1024, style, label=label)
        ax.set_ylabel("MiB (host)")
        ax2 = ax.twinx()
        d = s[(s["source"] == "balloon") & (s["metric"] == "actual_mib")].sort_values("t")
        ax2.plot(d["t"], d["value"], color="tab:red", alpha=0.6, label="guest size")
        ax2.set_ylabel("guest MiB (balloon actual / virtio-mem size)")
        steps = summary[(summary["run_id"] == run_id) & summary["kind"].isin(MOVE_KINDS)]
        for _, row in steps.iterrows():
            ax2.axhline(row["target_mib"], color="tab:red", linestyle="-.", linewidth=0.8)
            start = s[s["phase"] == row["step"]]["t"]
            if len(start):
                ax.axvline(start.min(), color="grey", linewidth=0.8)
                ax2.annotate(f"target {row['target_mib']:.0f} MiB", (start.min(), row["target_mib"]),
                             fontsize=8, xytext=(3, 3), textcoords="offset points", color="tab:red")
        arm = s["arm"].iloc[0]
        ax.set_title(f"{run_id} ({arm})")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower left", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since the run started (boot included)")
    # fixed margins in inches, not tight_layout: that measures every label of every run's two
    # axes, a third of this plot's time (1.3 CPU-s for 10 runs), and it is drawn on each report
    height = 3.2 * len(runs)
    fig.subplots_adjust(left=0.08, right=0.91, top=1 - 0.4 / height, bottom=0.55 / height, hspace=0.14)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# (column, title, scale): the per-run panels of the summary plot.
RUN_PANELS = [
    (RATIO, "host THP lost per ballooned MiB (1.0: only the ballooned memory)", 1.0),
    ("shrink_fraction", "shrink_fraction (1.0: the whole requested change)", 1.0),
    ("rss_freed_kib", "QEMU RSS freed (MiB)", 1 / 1024),
    ("host_ahp_after_kib", "host AnonHugePages after (MiB)", 1 / 1024),
]


def _plot_runs(summary: pd.DataFrame, path: Path, arm_order: Optional[list[str]] = None,
               step_order: Optional[list[str]] = None) -> Path:
    """Every run as a point over a box plot per arm and balloon step; hollow: target not reached."""
    import matplotlib.pyplot as plt
    s = summary[summary["kind"].isin(MOVE_KINDS)] if "kind" in summary.columns else summary
    if s.empty:
        s = summary
    arms, steps = ordered(s, arm_order, step_order)
    groups = [(a, st) for a in arms for st in steps if ((s["arm"] == a) & (s["step"] == st)).any()]
    labels = [f"{a}\n{st}" if len(steps) > 1 else a for a, st in groups]
    panels = [p for p in RUN_PANELS if p[0] in s.columns]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same plot for the same results
    for k, (ax, (col, title, scale)) in enumerate(zip(axes[0], panels)):
        boxes = []
        for label, (arm, step) in zip(labels, groups):
            rows = s[(s["arm"] == arm) & (s["step"] == step)]
            vals = pd.to_numeric(rows[col], errors="coerce").astype(float).to_numpy() * scale
            reached = reached_as_float(rows["reached"]).to_numpy() if "reached" in rows.columns else None
            boxes.append(Group(label, vals, reached))
        guides = [(1.0, "black", "--")] if col == RATIO else []
        guides += [(SHORT_SHRINK, "tab:red", ":")] if col == "shrink_fraction" else []
        box_panel(ax, boxes, title, rng, guides, label_points=k == 0)
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:
        axes[0, 0].legend(handles, names, fontsize=7, loc="best")
    fig.suptitle("every run (points) over box plots (median, IQR, whiskers)", fontsize=10)
    # fixed margins (inches over the 4.2 in height), not tight_layout, as in _plot_timeseries
    fig.subplots_adjust(left=0.045, right=0.99, top=1 - 0.7 / 4.2, bottom=0.6 / 4.2, wspace=0.22)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
