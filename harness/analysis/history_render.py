"""Nightly history, shown: the trend as text and as a plot, and tonight against the last
nights as text (for ``history``, ``check`` and its Markdown). Rendering only: the
decisions are :mod:`harness.analysis.history`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.analysis.decide import N_TOO_SMALL, WORSE
from harness.analysis.defaults import MIN_NIGHTS
from harness.analysis.groups import fmt_metric
from harness.analysis.history import HistoryCheck, Trend
from harness.render.numbers import fmt_p, fmt_pct
from harness.render.text import text_table
from harness.results.metrics import METRICS


def format_trend(trend: Trend, png: Optional[Path] = None) -> str:
    """The trend as text: per arm and step, one line per night (``png``: where its plot is)."""
    m = METRICS.get(trend.metric)
    unit = f" [{m.unit}]" if m and m.unit else ""
    lines = [f"history of {trend.scenario}: {trend.metric}{unit}" +
             (f", {m.better} is better" if m and m.better else "")]
    for (a, st), g in trend.table.groupby(["arm", "step"], sort=False):
        lines += ["", f"{a} / {st}:"]
        f = lambda v: fmt_metric(trend.metric, v)  # noqa: E731
        rows = [[r.date, str(r.n), f(r.median), f"{f(r.q1)}..{f(r.q3)}", f"{f(r.min)}..{f(r.max)}",
                 r.changed or "-"] for r in g.itertuples()]
        lines.append(text_table(["date", "n", "median", "IQR", "min..max", "changed since the night before"],
                                rows, left=1, last_left=True))
        found = trend.changes.get((a, st), [])
        nights = g["date"].nunique()
        if found:
            lines += [f"change point: from {d}: median {f(c.before)} -> {f(c.after)} (E-divisive, permutation "
                      f"p = {c.p_value:.3f})" for d, c in found]
        else:
            lines.append("change points: none" + (" (E-divisive needs 6 nights or more)" if nights < 6 else
                                                  " (E-divisive, permutation p <= 0.05)"))
    if png:
        lines += ["", f"plot: {png}"]
    return "\n".join(lines)

def plot_trend(trend: Trend, path: Path) -> Path:
    """Median per night (line), IQR (band), every run (points); dotted lines where a build changed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    dates = sorted(trend.table["date"].unique())
    x_of = {d: i for i, d in enumerate(dates)}
    fig, ax = plt.subplots(figsize=(max(6.0, min(20.0, 0.35 * len(dates) + 4)), 4.2))
    for (a, st), g in trend.table.groupby(["arm", "step"], sort=False):
        x = g["date"].map(x_of).to_numpy()
        line, = ax.plot(x, g["median"], marker="o", markersize=3, label=f"{a} / {st} (median)")
        ax.fill_between(x, g["q1"], g["q3"], color=line.get_color(), alpha=0.2)
        p = trend.points[(trend.points["arm"] == a) & (trend.points["step"] == st)]
        ax.scatter(p["date"].map(x_of), p["value"], s=8, color=line.get_color(), alpha=0.5)
    for d, ch in zip(trend.table["date"], trend.table["changed"]):
        if ch:
            ax.axvline(x_of[d] - 0.5, color="grey", linestyle=":", linewidth=0.8)
    for found in trend.changes.values():
        for d, _ in found:
            ax.axvline(x_of[d] - 0.5, color="red", linestyle="--", linewidth=0.8)
    step = max(1, len(dates) // 15)
    ax.set_xticks(range(0, len(dates), step), dates[::step], rotation=45, ha="right", fontsize=7)
    m = METRICS.get(trend.metric)
    ax.set_ylabel(f"{trend.metric}" + (f" [{m.unit}]" if m and m.unit else ""))
    ax.set_title(f"{trend.scenario}: {trend.metric} per night (dotted: a build changed; dashed: change point)",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

def format_history_check(check: HistoryCheck) -> str:
    if check.note:
        return f"history: {check.note}"
    head = (f"against the last {len(check.nights)} night(s) in {check.history_dir} "
            f"({check.nights[0]}..{check.nights[-1]}), one value per night (its median): tonight against "
            f"the past nights' spread (Student prediction interval, at least {MIN_NIGHTS} nights), "
            f"alpha {check.alpha:g}, a regression also after Holm over the {len(check.rows)} rows:")
    if check.rows.empty:
        return head + " no common arm and step with data"
    rows = []
    for r in check.rows.itertuples():
        mark = "REGRESSION" if r.regression else (
            f"n too small: {r.reps_needed} nights needed" if r.verdict == N_TOO_SMALL else
            f"{r.verdict} (not after Holm: p {fmt_p(r.p_holm)})" if r.verdict == WORSE else r.verdict)
        rows.append([r.arm, r.step, r.metric, fmt_metric(r.metric, r.median_history), str(r.n_history),
                     fmt_metric(r.metric, r.median_now), str(r.n_now), fmt_pct(r.change_pct),
                     fmt_metric(r.metric, r.shift), fmt_p(r.p_value), mark])
    return head + "\n" + text_table(["arm", "step", "metric", "past nights", "nights", "tonight", "runs", "change",
                                      "shift", "p", ""], rows, left=3, last_left=True)
