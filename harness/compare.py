"""``balloon-harness compare A B``: two results folders, or two arms, figure by figure.

For every arm (when comparing folders), step and headline figure: the median of A, the
median of B, the change in percent, and the two-sided Mann-Whitney U p-value, marked
``*`` when below ``alpha`` (default 0.05).

Why Mann-Whitney U and not a t-test: a scenario has few repetitions (3 to 10), the
figures are not normal (the THP ratio and settle times are skewed; an arm that stops
short, as the RFC's ``thp-order`` driver does when the guest has no free 2 MiB block,
produces outliers), and the question is "do the runs of B tend to be lower than those of
A", which is what U answers from ranks alone, without assuming a distribution. The price:
with 3 runs a side the smallest possible two-sided p is 0.10, so nothing can be
significant at 0.05; 4 runs a side can reach 0.029, 5 runs 0.008. With fewer than 2 runs
on a side there is no test at all: p is NaN and the row says "n too small".

Comparing results of different scenarios or builds compares apples and pears, so it is
refused (naming the difference) unless ``force``: the scenario text's hash, each QEMU's
and each balloon module's sha256, and the accelerator must agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.metrics import METRICS, TABLE_KINDS
from harness.results import RUN_DONE, SUMMARY_COLUMNS, load_results
from harness.statistics import (
    HEADLINE_METRICS,
    REACHED_FRACTION,
    ScenarioInfo,
    as_dict,
    centre,
    ordered,
    run_values,
    scenario_info,
)

DEFAULT_ALPHA = 0.05
COMPARE_KINDS = TABLE_KINDS
COMPARISON_COLUMNS = ["arm_a", "arm_b", "step", "metric", "n_a", "median_a", "n_b", "median_b",
                      "change_pct", "p_value", "significant", "direction", "note"]


class Incomparable(HarnessError):
    """Two results that must not be compared (different scenario, build or accelerator)."""


@dataclass
class Folder:
    """A results folder opened for analysis: its summary, metadata, finished runs, scenario.

    The samples (large: several rows a second per run) are read only when asked for.
    """

    path: Path
    summary: pd.DataFrame
    metadata: dict[str, Any]
    runs: list[dict[str, Any]]
    scenario: ScenarioInfo

    @property
    def samples(self) -> pd.DataFrame:
        return load_results(self.path).samples

    def arm_order(self) -> list[str]:
        arms, _ = ordered(self.summary, self.scenario.arms, self.scenario.steps)
        return arms


def read_summary(path: Path, run_ids: list[str]) -> pd.DataFrame:
    """The folder's summary rows: the combined ``summary.parquet`` when it is up to date
    (newer than every ``run.json`` and holding exactly the finished runs), else rebuilt
    from ``runs/*/summary.parquet``, as :func:`harness.results.load_results` does."""
    top = path / "summary.parquet"
    done = [path / "runs" / r / RUN_DONE for r in run_ids]
    if top.exists() and all(top.stat().st_mtime >= d.stat().st_mtime for d in done):
        summary = pd.read_parquet(top)
        if "run_id" in summary.columns and set(summary["run_id"]) == set(run_ids):
            return summary
    frames = [pd.read_parquet(d.parent / "summary.parquet") for d in done]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)


def open_folder(path: str | Path) -> Folder:
    """Open a results folder, or say why it is not one."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such results folder")
    if not path.is_dir() or not (path / "runs").is_dir():
        raise HarnessError(f"{path} is not a results folder (no runs/ inside)")
    runs = [json.loads(p.read_text()) for p in sorted((path / "runs").glob(f"*/{RUN_DONE}"))]
    run_ids = [p.parent.name for p in sorted((path / "runs").glob(f"*/{RUN_DONE}"))]
    try:
        metadata = json.loads((path / "metadata.json").read_text())
    except (OSError, ValueError):
        metadata = {}
    metadata = metadata if isinstance(metadata, dict) else {}
    return Folder(path, read_summary(path, run_ids), metadata, runs, scenario_info(path, metadata))


@dataclass
class Side:
    """One side of a comparison: a folder, or one arm of it (``DIR:arm``)."""

    folder: Folder
    arm: Optional[str] = None

    @property
    def label(self) -> str:
        return f"{self.folder.path}:{self.arm}" if self.arm else str(self.folder.path)


def parse_side(spec: str) -> Side:
    """``DIR`` or ``DIR:arm``; refuses unknown folders and arms, naming the ones there are."""
    p = Path(spec)
    if p.is_dir() or ":" not in spec:
        return Side(open_folder(p))
    d, arm = spec.rsplit(":", 1)
    folder = open_folder(d)
    arms = folder.arm_order()
    if arm not in arms:
        raise HarnessError(f"{spec}: no arm named {arm!r} in {d} (arms with results: "
                           f"{', '.join(arms) or 'none'})")
    return Side(folder, arm)


# --- what must agree ----------------------------------------------------------------------

def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(metadata: dict[str, Any], summary: Optional[pd.DataFrame] = None,
                scenario_text: Optional[str] = None) -> dict[str, str]:
    """What makes two results comparable: scenario hash, QEMU and module sha256s, accelerator.

    Keys that the metadata does not record are left out (an old or hand-made folder);
    the caller reports them as unknown instead of crashing.
    """
    fp: dict[str, str] = {}
    meta = as_dict(metadata)
    scen = as_dict(meta.get("scenario"))
    text = scen["text"] if isinstance(scen.get("text"), str) else scenario_text
    if text is not None:
        fp["scenario"] = _sha(text)
    qemus = as_dict(as_dict(meta.get("build_manifest")).get("qemu_sha256"))
    for name, sha in sorted(qemus.items()):
        fp[f"qemu {name} sha256"] = str(sha)
    for name, m in sorted(as_dict(meta.get("guest_modules")).items()):
        if isinstance(m, dict) and m.get("sha256") is not None:
            fp[f"module {name} sha256"] = str(m["sha256"])
    if summary is not None and "accel" in summary.columns:
        accel = sorted({str(a) for a in summary["accel"].dropna()})
        if accel:
            fp["accelerator"] = ", ".join(accel)
    return fp


def folder_fingerprint(folder: Folder) -> dict[str, str]:
    return fingerprint(folder.metadata, folder.summary, folder.scenario.text)


def _short(v: Optional[str]) -> str:
    if v is None:
        return "not recorded"
    return v[:12] if len(v) == 64 else v


def differences(a: dict[str, str], b: dict[str, str], names: tuple[str, str] = ("A", "B")
                ) -> tuple[list[str], list[str]]:
    """(differences, unknowns): keys whose values differ; keys recorded on one side only."""
    diffs, unknown = [], []
    for key in sorted(set(a) | set(b)):
        if key in a and key in b:
            if a[key] != b[key]:
                diffs.append(f"{key} differs ({names[0]} {_short(a[key])}, {names[1]} {_short(b[key])})")
        else:
            unknown.append(f"{key} recorded only in {names[0] if key in a else names[1]}")
    return diffs, unknown


def refuse_if_different(folders: list[Folder], force: bool, what: str = "compare") -> list[str]:
    """Raise :class:`Incomparable` naming every difference (unless ``force``); returns notes."""
    notes: list[str] = []
    base = folders[0]
    fa = folder_fingerprint(base)
    problems: list[str] = []
    for other in folders[1:]:
        if other.path.resolve() == base.path.resolve():
            continue
        diffs, unknown = differences(fa, folder_fingerprint(other), (str(base.path), str(other.path)))
        problems += diffs
        notes += [f"cannot check: {u}" for u in unknown]
    if problems:
        if not force:
            raise Incomparable(f"refusing to {what} results of different scenarios or builds: "
                               + "; ".join(problems) + " (pass --force to do it anyway)")
        notes += [f"forced despite: {p}" for p in problems]
    return notes


# --- the test -----------------------------------------------------------------------------

def mann_whitney(a: Any, b: Any) -> tuple[float, str]:
    """Two-sided Mann-Whitney U p-value, and a note when there is none ("n too small")."""
    from scipy.stats import mannwhitneyu
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return math.nan, "n too small"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if math.isnan(p):
        return p, "no variation"
    return p, ""


def change_pct(a: float, b: float) -> float:
    """(b - a) / |a| in percent; NaN when a is 0 or unknown."""
    if math.isnan(a) or math.isnan(b) or a == 0:
        return math.nan
    return (b - a) / abs(a) * 100.0


def direction(metric: str, a: float, b: float) -> str:
    """"better" / "worse" for B against A by the metric's definition, "" when it has none."""
    name = "reached" if metric == REACHED_FRACTION else metric
    better = METRICS[name].better if name in METRICS else None
    if better is None or math.isnan(a) or math.isnan(b) or a == b:
        return ""
    return "better" if (b > a) == (better == "higher") else "worse"


def compare_rows(sa: pd.DataFrame, arm_a: str, sb: pd.DataFrame, arm_b: str, steps: list[str],
                 metrics: list[str], alpha: float) -> list[dict[str, Any]]:
    """One row per step and metric for arm_a of ``sa`` against arm_b of ``sb``."""
    rows = []
    ga = {k: v for k, v in sa[sa["arm"] == arm_a].groupby("step", sort=False)}
    gb = {k: v for k, v in sb[sb["arm"] == arm_b].groupby("step", sort=False)}
    for step in steps:
        ra, rb = ga.get(step), gb.get(step)
        for metric in metrics:
            va = run_values(ra, metric) if ra is not None else np.array([])
            vb = run_values(rb, metric) if rb is not None else np.array([])
            if va.size == 0 and vb.size == 0:
                continue
            ma, mb = centre(metric, va), centre(metric, vb)
            p, note = mann_whitney(va, vb)
            sig = bool(not math.isnan(p) and p < alpha)
            rows.append({"arm_a": arm_a, "arm_b": arm_b, "step": step, "metric": metric,
                         "n_a": int(va.size), "median_a": ma, "n_b": int(vb.size), "median_b": mb,
                         "change_pct": change_pct(ma, mb), "p_value": p, "significant": sig,
                         "direction": direction(metric, ma, mb), "note": note})
    return rows


@dataclass
class Comparison:
    a: str
    b: str
    alpha: float
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _steps(summary: pd.DataFrame, info: ScenarioInfo) -> list[str]:
    s = summary[summary["kind"].isin(COMPARE_KINDS)] if "kind" in summary.columns else summary
    _, steps = ordered(s, info.arms, info.steps)
    return steps


def compare(a: str | Side, b: str | Side, alpha: float = DEFAULT_ALPHA, force: bool = False,
            metrics: Optional[list[str]] = None) -> Comparison:
    """Compare two folders (every common arm) or two arms (``DIR:arm`` on either side)."""
    if not 0 < alpha < 1:
        raise HarnessError(f"--alpha must be between 0 and 1, got {alpha}")
    sa = a if isinstance(a, Side) else parse_side(a)
    sb = b if isinstance(b, Side) else parse_side(b)
    notes = refuse_if_different([sa.folder, sb.folder], force)
    metrics = metrics or list(HEADLINE_METRICS)
    fa, fb = sa.folder, sb.folder
    if sa.arm or sb.arm:
        arm_a = sa.arm or sb.arm or ""
        arm_b = sb.arm or sa.arm or ""
        for side, arm in ((sa, arm_a), (sb, arm_b)):
            if arm not in side.folder.arm_order():
                raise HarnessError(f"{side.folder.path}: no arm named {arm!r} (arms with results: "
                                   f"{', '.join(side.folder.arm_order()) or 'none'})")
        pairs = [(arm_a, arm_b)]
    else:
        arms_a, arms_b = fa.arm_order(), fb.arm_order()
        pairs = [(x, x) for x in arms_a if x in arms_b]
        notes += [f"arm {x} only in A" for x in arms_a if x not in arms_b]
        notes += [f"arm {x} only in B" for x in arms_b if x not in arms_a]
    steps_a, steps_b = _steps(fa.summary, fa.scenario), _steps(fb.summary, fb.scenario)
    steps = [s for s in steps_a if s in steps_b]
    notes += [f"step {s!r} only in A" for s in steps_a if s not in steps_b]
    notes += [f"step {s!r} only in B" for s in steps_b if s not in steps_a]
    rows: list[dict[str, Any]] = []
    for arm_a, arm_b in pairs:
        rows += compare_rows(fa.summary, arm_a, fb.summary, arm_b, steps, metrics, alpha)
    return Comparison(sa.label, sb.label, alpha, pd.DataFrame(rows, columns=COMPARISON_COLUMNS), notes)


# --- text ---------------------------------------------------------------------------------

def fmt_value(metric: str, v: float) -> str:
    """A figure as the tables show it (ratios with two decimals, counts and kB without)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    unit = "ratio" if metric == REACHED_FRACTION else (METRICS[metric].unit if metric in METRICS else "")
    if unit in ("ratio", "bool"):
        return f"{v:.2f}"
    if unit in ("s", "MiB"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def render_table(header: list[str], rows: list[list[str]], left: int = 1, last_left: bool = True) -> str:
    """Plain-text table: the first ``left`` columns (and the last, a note) left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lefts = set(range(left)) | ({len(header) - 1} if last_left else set())

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in lefts else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]])


def format_comparison(c: Comparison) -> str:
    """The comparison as a terminal table with its legend."""
    same_arm = (c.rows["arm_a"] == c.rows["arm_b"]).all() if not c.rows.empty else True
    header = ["arm" if same_arm else "arms", "step", "metric", "A median", "n", "B median", "n",
              "change", "p", "", "note"]
    rows = []
    for r in c.rows.itertuples():
        arm = r.arm_a if same_arm else f"{r.arm_a} vs {r.arm_b}"
        change = "-" if math.isnan(r.change_pct) else f"{r.change_pct:+.1f}%"
        p = "-" if math.isnan(r.p_value) else (f"{r.p_value:.3f}" if r.p_value >= 0.001 else f"{r.p_value:.1e}")
        note = r.note or (r.direction if r.significant else "")
        rows.append([arm, r.step, r.metric, fmt_value(r.metric, r.median_a), str(r.n_a),
                     fmt_value(r.metric, r.median_b), str(r.n_b), change, p, "*" if r.significant else "", note])
    text = [f"A: {c.a}", f"B: {c.b}", ""]
    text.append(render_table(header, rows, left=3) if rows else "(no common arm and step with data)")
    text.append("")
    text.append(f"median over runs (reached_fraction: fraction of runs that reached the target); change: "
                f"(B - A) / A; p: two-sided Mann-Whitney U; * p < {c.alpha:g}; better/worse by the metric's "
                f"definition. 'n too small': fewer than 2 runs on a side, no test possible.")
    text += [f"note: {n}" for n in c.notes]
    return "\n".join(text)
