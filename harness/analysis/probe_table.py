"""The guest probes' table under the headline table (issue 32; docs/guest-probes.md): per
step and counter, each arm's median change over its runs with the range, and the counters
a guest kernel lacked, with the reason. The per-run values go to ``probe_deltas.csv``
(:func:`write_probe_deltas`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from harness.render.numbers import fmt_number
from harness.render.text import text_table
from harness.results import layout
from harness.results.folder import ResultsFolder
from harness.results.probes import absent_table, per_arm, probe_deltas


def _has_probes(folder: ResultsFolder) -> bool:
    record = folder.scenario.record
    return record is not None and record.probes.active


def folder_deltas(folder: ResultsFolder) -> pd.DataFrame:
    """The folder's per-run deltas (reads its samples only when its scenario had probes)."""
    if not _has_probes(folder):
        return pd.DataFrame()
    return probe_deltas(folder.samples)


def write_probe_deltas(folder: ResultsFolder) -> Optional[Path]:
    """``probe_deltas.csv``: one row per run, step and counter (None without probes)."""
    deltas = folder_deltas(folder)
    if deltas.empty:
        return None
    path = folder.path / f"{layout.PROBE_DELTAS}.csv"
    deltas.to_csv(path, index=False)
    return path


def _cell(row: pd.Series) -> str:
    med = fmt_number(float(row["median"]))
    if row["min"] == row["max"]:
        return f"{med} (n={row['runs']})"
    return f"{med} [{fmt_number(float(row['min']))}-{fmt_number(float(row['max']))}] (n={row['runs']})"


def probe_text(folder: ResultsFolder, deltas: Optional[pd.DataFrame] = None) -> str:
    """The table, or "" when the scenario recorded no probe."""
    if not _has_probes(folder):
        return ""
    deltas = folder_deltas(folder) if deltas is None else deltas
    absent = absent_table(folder.runs)
    lines = []
    if not deltas.empty:
        table = per_arm(deltas, folder.scenario.steps)
        arms, _ = folder.order()
        arms = [a for a in arms if a in set(table["arm"])] or list(dict.fromkeys(table["arm"]))
        rows, still = [], 0
        for (step, name), g in table.groupby(["step", "name"], sort=False):
            if not g["max"].abs().gt(0).any() and not g["min"].abs().gt(0).any():
                still += 1      # no arm's run saw it change in this step
                continue
            cells = {r["arm"]: _cell(r) for _, r in g.iterrows()}
            rows.append([step, name, *[cells.get(a, "-") for a in arms]])
        lines.append("guest probes: change over each step, median [min-max] over runs ([probes]; per run: "
                     f"{layout.PROBE_DELTAS}.csv after `report`)")
        if rows:
            lines.append(text_table(["step", "counter", *arms], rows, left=2))
        if still:
            lines.append(f"({still} step and counter pairs did not change in any run: left out)")
    if not absent.empty:
        seen = absent.drop_duplicates(["kernel", "name"])
        lines.append("absent (the guest kernel lacks them): " + "; ".join(
            f"{r['name']} on {r['kernel'] or '?'} ({r['reason']})" for _, r in seen.iterrows()))
    return "\n".join(lines)
