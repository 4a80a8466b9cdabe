"""Tables and plots from a results folder.

The table puts this host's numbers beside the RFC's (from the scenario's
``[reference]`` tables). ``thp_lost_per_ballooned_mib`` is the figure of merit:
1.0 is what it costs when only the ballooned memory loses its huge pages; the RFC's
problem is values far above it, because 4 KiB discards split huge pages around
pages the guest still uses. Values below 1.0 happen when part of the ballooned
guest memory was never backed by the host, so there was nothing to lose.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

TABLE_COLUMNS = [
    ("arm", "arm"),
    ("step", "step"),
    ("reached", "reached"),
    ("actual_mib", "actual MiB"),
    ("host_ahp_before_kib", "host AHP before kB"),
    ("host_ahp_after_kib", "host AHP after kB"),
    ("rfc_host_ahp_before_kib", "RFC before kB"),
    ("rfc_host_ahp_after_kib", "RFC after kB"),
    ("qemu_ahp_before_kib", "QEMU AHP before kB"),
    ("qemu_ahp_after_kib", "QEMU AHP after kB"),
    ("rss_freed_kib", "RSS freed kB"),
    ("thp_lost_per_ballooned_mib", "THP lost / ballooned MiB"),
    ("settle_seconds", "settle s"),
    ("thp_split_pmd_delta", "split_pmd"),
]


def step_table(summary: pd.DataFrame, reference: dict[str, dict[str, float]] | None = None,
               arm_order: list[str] | None = None,
               kinds: tuple[str, ...] = ("balloon", "measure")) -> pd.DataFrame:
    """One row per arm and step (mean over repetitions), with the RFC's figures beside.

    Arms appear in ``arm_order`` (the scenario's order), steps in run order.
    """
    if summary.empty:
        return pd.DataFrame(columns=[c for c, _ in TABLE_COLUMNS])
    s = summary[summary["kind"].isin(kinds)].copy()
    s["reached"] = s["reached"].astype("float")
    numeric = [c for c, _ in TABLE_COLUMNS if c in s.columns and c not in ("arm", "step")]
    order = {name: i for i, name in enumerate(dict.fromkeys([*(arm_order or []), *s["arm"]]))}
    step_order = {name: i for i, name in enumerate(dict.fromkeys(s["step"]))}
    table = s.groupby(["arm", "step"], sort=False)[numeric].mean().reset_index()
    table["reps"] = s.groupby(["arm", "step"], sort=False).size().values
    table = table.sort_values(by=["arm", "step"], key=lambda col: col.map(order if col.name == "arm" else step_order))
    reference = reference or {}
    # The reference figures belong to each arm's last step in the table (its final measurement).
    last_step = s.groupby("arm", sort=False)["step"].last().to_dict()
    for col in ("host_ahp_before_kib", "host_ahp_after_kib"):
        table[f"rfc_{col}"] = [reference.get(arm, {}).get(col, math.nan) if step == last_step[arm] else math.nan
                               for arm, step in zip(table["arm"], table["step"])]
    return table.reset_index(drop=True)


def format_table(table: pd.DataFrame) -> str:
    """A plain-text table for the terminal."""
    cols = [(c, h) for c, h in TABLE_COLUMNS if c in table.columns]
    if "reps" in table.columns:
        cols.append(("reps", "reps"))

    def fmt(col: str, v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if col == "reached":
            return "yes" if v >= 1 else ("no" if v <= 0 else f"{v:.0%}")
        if col in ("thp_lost_per_ballooned_mib",):
            return f"{v:.2f}"
        if col in ("settle_seconds", "actual_mib"):
            return f"{v:.1f}"
        if isinstance(v, float):
            return f"{v:.0f}"
        return str(v)

    rows = [[h for _, h in cols]] + [[fmt(c, r[c]) for c, _ in cols] for _, r in table.iterrows()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.rjust(w) if i > 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_all(samples: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write the time-series and the bar chart PNGs; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if not samples.empty:
        paths.append(_plot_timeseries(samples, summary, out_dir / "host_memory_over_time.png"))
    if not summary.empty:
        paths.append(_plot_bars(summary, out_dir / "summary_bars.png"))
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
        ax2.plot(d["t"], d["value"], color="tab:red", alpha=0.6, label="balloon actual")
        ax2.set_ylabel("guest MiB (balloon actual)")
        steps = summary[(summary["run_id"] == run_id) & (summary["kind"] == "balloon")]
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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_bars(summary: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt
    s = summary[summary["kind"] == "balloon"]
    if s.empty:
        s = summary
    g = s.groupby(["arm", "step"], sort=False).mean(numeric_only=True).reset_index()
    labels = [f"{a}\n{st}" for a, st in zip(g["arm"], g["step"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(labels, g["thp_lost_per_ballooned_mib"], color="tab:blue")
    axes[0].axhline(1.0, color="black", linestyle="--", linewidth=0.8)
    axes[0].set_title("host THP lost per ballooned MiB (1.0: only the ballooned memory)")
    x = range(len(g))
    axes[1].bar([i - 0.2 for i in x], g["qemu_ahp_before_kib"] / 1024, width=0.4, label="before")
    axes[1].bar([i + 0.2 for i in x], g["qemu_ahp_after_kib"] / 1024, width=0.4, label="after")
    axes[1].set_xticks(list(x), labels)
    axes[1].set_title("QEMU AnonHugePages (MiB)")
    axes[1].legend()
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
