"""The one reader of a results folder for analysis.

:func:`open_folder` gives a :class:`ResultsFolder`: the summary rows of the finished runs,
``metadata.json``, each run's ``run.json``, the recorded scenario (its typed record, or an old
folder's scenario.toml read leniently: :class:`ScenarioInfo`), and the failed runs with their reasons and the steps they
finished. ``compare``, ``check``, ``merge``, ``history``, ``report`` and the review all
read folders through here; the file names come from :mod:`harness.results.layout`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from pydantic import ValidationError

from harness.errors import ConfigError, HarnessError
from harness.results import layout
from harness.results.fleet import fleet_step_label
from harness.results.layout import RUN_DONE
from harness.results.metrics import DEFAULT_PRIMARY, SUMMARY_COLUMNS
from harness.results.scenario_schema import (
    Expectation,
    Scenario,
    default_step_label,
    figure_name,
    read_record,
    read_toml_leniently,
    refusal,
)
from harness.results.store import load_results

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = " (failed later)"


def step_positions(summary: pd.DataFrame) -> dict[str, float]:
    """Each step's position within its run (steps of a run are written in run order)."""
    if summary.empty:
        return {}
    pos = summary.groupby("run_id", sort=False).cumcount() if "run_id" in summary.columns \
        else pd.Series(range(len(summary)), index=summary.index)
    return pos.groupby(summary["step"], sort=False).min().astype(float).to_dict()


def ordered(summary: pd.DataFrame, arm_order: Optional[list[str]] = None,
            step_order: Optional[list[str]] = None) -> tuple[list[str], list[str]]:
    """Arms in the scenario's order (then any others as met), steps in run order."""
    present_arms = list(dict.fromkeys(summary["arm"])) if not summary.empty else []
    arms = [a for a in (arm_order or []) if a in set(present_arms)]
    arms += [a for a in present_arms if a not in arms]
    present_steps = list(dict.fromkeys(summary["step"])) if not summary.empty else []
    pos = step_positions(summary)
    steps = [s for s in (step_order or []) if s in set(present_steps)]
    # issue 30: a fleet's '<step> [fleet]' row right after its step (harness.results.fleet)
    steps = [x for s in steps for x in (s, fleet_step_label(s)) if x in set(present_steps)]
    rest = [s for s in present_steps if s not in steps]
    steps += sorted(rest, key=lambda s: (pos.get(s, math.inf), present_steps.index(s)))
    return arms, steps


@dataclass
class ScenarioInfo:
    """What the analysis needs from a results folder's scenario: its record.

    ``record`` is the resolved scenario the run wrote (``scenario.json``), read through the
    scenario schema's models (:mod:`harness.results.scenario_schema`); a folder written before
    the record has only ``scenario.toml`` (or metadata.json's copy of its text), read through
    the same models without the run-time checks (an arm's QEMU path need not exist on the
    machine that analyses the results). ``raw`` is the record as plain tables (``device`` a
    table), for readers that look up a key; ``problem`` says why an old text did not pass.
    """

    name: str = ""
    arms: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    text: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None
    record: Optional[Scenario] = None
    problem: Optional[str] = None

    @property
    def expectations(self) -> tuple[Expectation, ...]:
        """The scenario's ``[[expect]]`` promises, checked when they were read."""
        if self.record is None:
            if self.problem and self.raw.get("expect"):
                raise ConfigError(self.problem)
            return ()
        return self.record.expectations

    @property
    def primary(self) -> tuple[str, ...]:
        """The figures that decide a comparison (the scenario's ``primary``, else the default)."""
        if self.record is None:
            if self.problem and "primary" in self.raw:
                raise ConfigError(self.problem)
            return tuple(figure_name(m) for m in DEFAULT_PRIMARY)
        return tuple(self.record.primary)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a table (a dict), else an empty one: metadata may lack any key."""
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class OwnTree:
    """One build from a user's tree as metadata.json's ``own_trees`` records it, under the
    label ``"<stack>: kernel <tree>"`` or ``"<stack>: qemu <tree>"``
    (harness.experiment.metadata.own_trees); ``stack`` is empty for a label without one."""

    stack: str
    kind: str               # "kernel" or "qemu"
    tree: str
    info: dict[str, Any]    # its record: identity (commit, content, dirty), release, qemu_version, ...


def own_trees_of(metadata: Any) -> list[OwnTree]:
    """Every build from a user's tree that ``metadata`` records, in its order."""
    found = []
    for label, info in as_dict(as_dict(metadata).get("own_trees")).items():
        stack, sep, what = str(label).partition(": ")
        if not sep:
            stack, what = "", str(label)
        kind, _, tree = what.partition(" ")
        found.append(OwnTree(stack, kind, tree, as_dict(info)))
    return found


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def _read_metadata(out: Path) -> dict[str, Any]:
    try:
        meta = json.loads((out / layout.METADATA).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _tables(record: Scenario) -> dict[str, Any]:
    """The record as plain tables, as a scenario file writes them (``device`` a table)."""
    raw = record.model_dump(mode="json", exclude={"path"})
    for arm, model in zip(raw["arms"], record.arms):
        arm["device"] = dict(model.device)
        arm["options"] = dict(model.options)
    return raw


def _with_record(info: ScenarioInfo, record: Scenario) -> ScenarioInfo:
    info.record, info.name, info.raw = record, record.name, _tables(record)
    info.arms = [a.name for a in record.arms]
    info.steps = [st.label for st in record.steps]
    info.reference = {arm: dict(cols) for arm, cols in record.reference.items()}
    return info


def scenario_info(out: str | Path, metadata: Optional[dict[str, Any]] = None) -> ScenarioInfo:
    """The scenario of results folder ``out``: its record (``scenario.json``), else its
    ``scenario.toml`` read leniently through the same models (empty lists when none is
    recorded)."""
    out = Path(out)
    meta = metadata if metadata is not None else _read_metadata(out)
    scen = as_dict(meta.get("scenario"))
    toml_path = out / layout.SCENARIO
    path: Optional[Path] = toml_path
    text: Optional[str] = toml_path.read_text() if toml_path.is_file() else None
    if text is None:
        text, path = (scen["text"] if isinstance(scen.get("text"), str) else None), None
    info = ScenarioInfo(name=scen["name"] if isinstance(scen.get("name"), str) else out.name,
                        text=text, path=path)
    record_path = out / layout.SCENARIO_RECORD
    if record_path.is_file():
        try:
            return _with_record(info, read_record(record_path.read_text()))
        except (ValueError, KeyError, TypeError) as e:   # ValidationError is a ValueError
            log.warning("%s: not a scenario record this version reads (%s); reading %s instead",
                        record_path, str(e).splitlines()[0], layout.SCENARIO)
    if text is None:
        return info
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return info
    info.raw = raw
    where = path or (out / layout.METADATA)
    try:
        return _with_record(info, read_toml_leniently(raw, Path(info.name)))
    except ValidationError as e:
        info.problem = refusal(where, e)
        log.warning("%s", info.problem)
    # what the analysis can still use of a text the schema refuses: the names
    if isinstance(raw.get("name"), str):
        info.name = raw["name"]
    info.arms = [a["name"] for a in as_list(raw.get("arms")) if isinstance(a, dict) and isinstance(a.get("name"), str)]
    info.steps = [s["label"] if isinstance(s.get("label"), str) else default_step_label(i, s)
                  for i, s in enumerate(as_list(raw.get("steps"))) if isinstance(s, dict)]
    ref = as_dict(raw.get("reference"))
    info.reference = {arm: {k: float(v) for k, v in cols.items() if isinstance(v, (int, float))}
                      for arm, cols in ref.items() if isinstance(cols, dict)}
    return info


@dataclass
class ResultsFolder:
    """A results folder opened for analysis: its summary, metadata, finished runs, scenario.

    The samples (large: several rows a second per run) are read only when asked for.
    """

    path: Path
    summary: pd.DataFrame
    metadata: dict[str, Any]
    runs: list[dict[str, Any]]
    scenario: ScenarioInfo

    failed: dict[str, str] = field(default_factory=dict)   # run id -> first line of its error.txt

    @property
    def samples(self) -> pd.DataFrame:
        return load_results(self.path).samples

    @property
    def planned_reps(self) -> int:
        """Repetitions per arm the folder was started with (0 when not recorded)."""
        reps = self.metadata.get("repetitions", self.scenario.raw.get("repetitions"))
        return int(reps) if isinstance(reps, (int, float)) and not isinstance(reps, bool) else 0

    def arm_order(self) -> list[str]:
        arms, _ = ordered(self.summary, self.scenario.arms, self.scenario.steps)
        return arms

    def order(self) -> tuple[list[str], list[str]]:
        """Arms in the scenario's order, steps in run order."""
        return ordered(self.summary, self.scenario.arms, self.scenario.steps)


def read_summary(path: Path, run_ids: list[str]) -> pd.DataFrame:
    """The folder's summary rows: the combined ``summary.parquet`` when it is up to date
    (newer than every ``run.json`` and holding exactly the finished runs), else rebuilt
    from ``runs/*/summary.parquet``, as :func:`harness.results.load_results` does."""
    top = path / f"{layout.SUMMARY}.parquet"
    done = [layout.run_dir(path, r) / RUN_DONE for r in run_ids]
    if top.exists() and all(top.stat().st_mtime >= d.stat().st_mtime for d in done):
        summary = pd.read_parquet(top)
        if "run_id" in summary.columns and set(summary["run_id"]) == set(run_ids):
            return summary
    frames = [pd.read_parquet(d.parent / f"{layout.SUMMARY}.parquet") for d in done]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)


def open_folder(path: str | Path) -> ResultsFolder:
    """Open a results folder, or say why it is not one."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such results folder")
    if not path.is_dir() or not layout.runs_dir(path).is_dir():
        raise HarnessError(f"{path} is not a results folder (no {layout.RUNS}/ inside)")
    done = layout.complete_run_dirs(path)
    runs = [json.loads((d / RUN_DONE).read_text()) for d in done]
    metadata = _read_metadata(path)
    return ResultsFolder(path, read_summary(path, [d.name for d in done]), metadata, runs,
                         scenario_info(path, metadata), failed_runs(path))


def failed_runs(path: Path) -> dict[str, str]:
    """run id -> the first line of its error.txt, for every run that failed (error.txt, no run.json)."""
    failed = {}
    for d in layout.failed_run_dirs(path):
        text = (d / layout.ERROR).read_text(errors="replace").strip()
        failed[d.name] = text.splitlines()[0] if text else "failed (empty error.txt)"
    return failed


def failure_reason(path: Path, run_id: str, limit: int = 160) -> str:
    """The first line of a failed run's error.txt, without its PIDs (so the same failure in
    several runs reads once), and whether the guest's OOM killer acted."""
    try:
        text = (layout.run_dir(path, run_id) / layout.ERROR).read_text(errors="replace")
    except OSError:
        return f"no {layout.ERROR}"
    first = re.sub(r"\bpid \d+", "pid N", text.splitlines()[0] if text else "")
    first = first if len(first) <= limit else first[:limit - 1] + "…"
    return first + (" (the guest's OOM killer acted)" if "OOM killer acted" in text else "")


def partial_arm(arm: str) -> str:
    """The name under which a failed run's finished steps are shown: never mixed with the
    complete runs of ``arm``, never hidden either."""
    return arm + PARTIAL_SUFFIX


def partial_rows(path: Path, failed: list[str]) -> pd.DataFrame:
    """The steps failed runs finished before they failed (their partial summary, kept by
    the runner), under :func:`partial_arm` names."""
    frames = []
    for run_id in failed:
        csv = layout.run_dir(path, run_id) / layout.PARTIAL_SUMMARY
        if csv.is_file():
            d = pd.read_csv(csv)
            if not d.empty:
                d["arm"] = d["arm"].astype(str).map(partial_arm)
                frames.append(d)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


