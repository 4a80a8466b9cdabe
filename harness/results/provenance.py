"""Where a results folder's numbers came from, as it recorded them: the harness commit, the
scenario and how it was run, each arm's stack, design and builds, the host, and what went
wrong in its runs (stalls, OOM kills, failed runs).

A number posted upstream must say this much, or nobody can repeat it; the cover letter
(:mod:`harness.analysis.cover_letter`) prints it. Everything is read from the folder
(``metadata.json``, ``scenario.json``/``scenario.toml``, each run's ``run.json`` and
``error.txt``); what an older folder did not record reads as ``None``/empty, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.results import layout
from harness.results.folder import ResultsFolder, as_dict, failure_reason, own_trees_of

UNRECORDED = "not recorded"
OOM_MARK = "OOM killer acted"


@dataclass(frozen=True)
class ArmBuild:
    """One arm as it ran: its stack, the design (guest module, QEMU build, device
    properties, mechanism), and the builds' identities the runs recorded."""

    name: str
    stack: str
    module: str
    qemu: str
    device: tuple[tuple[str, str], ...] = ()
    mechanism: str = "balloon"
    host_thp: tuple[tuple[str, str], ...] = ()
    module_sha256: tuple[str, ...] = ()       # as the runs recorded them (more than one: a rebuild between runs)
    qemu_version: Optional[str] = None
    qemu_sha256: Optional[str] = None

    @property
    def design(self) -> str:
        """The arm's design in one phrase: module, QEMU, device properties, mechanism."""
        parts = [f"module {self.module}", f"qemu {self.qemu}"]
        if self.device:
            parts.append(" ".join(f"{k}={v}" for k, v in self.device))
        if self.mechanism != "balloon":
            parts.append(f"mechanism {self.mechanism}")
        if self.host_thp:
            parts.append("host THP " + " ".join(f"{k}={v}" for k, v in self.host_thp))
        return ", ".join(parts)


@dataclass(frozen=True)
class StackBuild:
    """A guest stack as the folder recorded it: guest kernel and QEMU versions."""

    name: str
    kernel: Optional[str] = None          # e.g. "6.1.192-2 (6.1.0-56-cloud-amd64)"
    qemu_source: Optional[str] = None     # the Debian source version QEMU was built from
    qemu_tree: Optional[str] = None       # or the user's tree it was built from (then no Debian source)


@dataclass(frozen=True)
class Host:
    """The host the runs ran on."""

    cpu: Optional[str] = None
    cpus: Optional[int] = None
    kernel: Optional[str] = None
    thp: tuple[tuple[str, str], ...] = ()   # enabled, defrag, khugepaged defrag (the knobs that decide THP)
    accelerators: tuple[str, ...] = ()      # what the runs used: kvm, tcg
    hostname: Optional[str] = None

    def same_as(self, other: Host) -> bool:
        """Whether two folders ran on the same host (the hostname aside: a renamed host is
        the same machine only if everything else agrees)."""
        return (self.cpu, self.cpus, self.kernel, self.thp) == (other.cpu, other.cpus, other.kernel, other.thp)


@dataclass
class Incidents:
    """What went wrong in an arm's runs at one step: moves that settled as a stall (the
    guest's driver failed to allocate) or timed out; for the arm as a whole, its failed
    runs and those whose guest's OOM killer acted."""

    stalled: int = 0
    timeouts: int = 0
    moves: int = 0


@dataclass(frozen=True)
class Provenance:
    """Everything :mod:`harness.analysis.cover_letter` says about one folder besides its numbers."""

    path: Path
    scenario: str
    description: str
    scenario_file: Optional[str]             # "scenarios/X.toml" when it came from a checkout's scenarios/
    harness_revision: Optional[str]
    planned_reps: int
    order: Optional[str]
    order_seed: Optional[int]
    jobs: Optional[int]
    created: Optional[str]
    arms: dict[str, ArmBuild]
    stacks: dict[str, StackBuild]
    host: Host
    incidents: dict[tuple[str, str], Incidents] = field(default_factory=dict)   # (arm, step)
    failed: dict[str, list[str]] = field(default_factory=dict)                  # arm -> failed run ids
    oom: dict[str, list[str]] = field(default_factory=dict)                     # arm -> runs whose OOM killer acted

    @property
    def run_command(self) -> list[str]:
        """The words of the command that repeats the folder's runs (at its harness commit)."""
        words = ["balloon-harness", "run", self.scenario_file or f"{self.path.name}/{layout.SCENARIO}"]
        if self.planned_reps:
            words += ["--reps", str(self.planned_reps)]
        if self.order and self.order != "random":
            words += ["--order", self.order]
        if self.order_seed is not None and self.order in (None, "random"):
            words += ["--order-seed", str(self.order_seed)]
        if self.jobs and self.jobs > 1:
            words += ["--jobs", str(self.jobs)]
        return words


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> Optional[int]:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def scenario_file(recorded: Optional[str]) -> Optional[str]:
    """``scenarios/X.toml`` when the scenario was read from a ``scenarios/`` folder (a
    checkout's: the path another checkout at the same commit has too), else None."""
    if not recorded:
        return None
    p = Path(recorded)
    return f"scenarios/{p.name}" if p.parent.name == "scenarios" else None


def _stack_of(arm_stack: str, runs: list[dict[str, Any]], meta: Mapping[str, Any]) -> str:
    recorded = {str(r["stack"]) for r in runs if _str(r.get("stack"))}
    if arm_stack:
        return arm_stack
    if len(recorded) == 1:
        return recorded.pop()
    stacks = list(as_dict(meta.get("stacks")))
    return stacks[0] if len(stacks) == 1 else UNRECORDED


def _stack_build(name: str, meta: Mapping[str, Any]) -> StackBuild:
    manifest = as_dict(meta.get("build_manifest"))
    built = as_dict(as_dict(manifest.get("stacks")).get(name))
    pins = as_dict(built.get("pins")) or as_dict(as_dict(as_dict(meta.get("stacks")).get(name)).get("pins"))
    kernel = as_dict(built.get("guest_kernel"))
    if not kernel and (not pins or pins.get("kernel_version") == as_dict(meta.get("guest_kernel")).get("version")):
        kernel = as_dict(meta.get("guest_kernel"))     # the folder's one stack (folders before stacks)
    version = _str(kernel.get("version")) or _str(pins.get("kernel_version"))
    release = _str(kernel.get("release"))
    text = f"{version} ({release})" if version and release else version or release
    own = _own_trees(name, meta)
    if "kernel" in own:
        text = own["kernel"]
    if "qemu" in own:
        return StackBuild(name, text, None, own["qemu"])
    return StackBuild(name, text, _str(pins.get("qemu_source_version")))


def _own_trees(stack: str, meta: Mapping[str, Any]) -> dict[str, str]:
    """``kernel``/``qemu`` -> how the folder names a build from a user's tree on ``stack``:
    its release, the tree (path@ref), the commit and whether it had uncommitted changes.
    A stack whose guest kernel was built from a tree did not run Debian's kernel of its
    pins, so the stack's Debian versions must not stand for it (a cover letter would cite a
    kernel that never ran)."""
    found: dict[str, str] = {}
    for own in own_trees_of(meta):
        if own.stack != stack or own.kind not in ("kernel", "qemu"):
            continue
        ident = as_dict(own.info.get("identity"))
        commit = _str(ident.get("commit"))
        state = ", with uncommitted changes" if ident.get("dirty") else ""
        at = f" at {commit[:12]}" if commit else ""
        release = _str(own.info.get("release"))
        found[own.kind] = (f"{release} " if release and own.kind == "kernel" else "") + \
            f"built from the tree {_str(own.info.get('tree')) or own.tree}{at}{state}"
    return found


def _qemu_identity(stack: str, qemu: str, meta: Mapping[str, Any]) -> tuple[Optional[str], Optional[str]]:
    """(version, sha256) of an arm's QEMU build: the stack's manifest entry, else the folder's
    top-level record (one stack)."""
    manifest = as_dict(meta.get("build_manifest"))
    built = as_dict(as_dict(manifest.get("stacks")).get(stack))
    version = _str(as_dict(built.get("qemu_versions")).get(qemu)) \
        or _str(as_dict(as_dict(meta.get("qemu")).get(qemu)).get("version"))
    sha = _str(as_dict(built.get("qemu_sha256")).get(qemu)) or _str(as_dict(manifest.get("qemu_sha256")).get(qemu))
    if not version and not sha:
        # a QEMU built from the user's tree: its own record (harness.experiment.metadata.own_trees)
        for own in own_trees_of(meta):
            if own.stack == stack and own.kind == "qemu":
                version = _str(own.info.get("qemu_version"))
                sha = _str(own.info.get("sha256"))
    if version:
        version = re.sub(r"^QEMU emulator version\s+", "", version)
    return version, sha


def _module_shas(stack: str, module: str, runs: list[dict[str, Any]], meta: Mapping[str, Any]) -> tuple[str, ...]:
    recorded = tuple(dict.fromkeys(str(r["module_sha256"]) for r in runs if _str(r.get("module_sha256"))))
    if recorded:
        return recorded
    built = as_dict(as_dict(as_dict(meta.get("build_manifest")).get("stacks")).get(stack))
    sha = _str(as_dict(as_dict(built.get("images")).get(module)).get("balloon_module_sha256")) \
        or _str(as_dict(as_dict(meta.get("guest_modules")).get(module)).get("sha256"))
    return (sha,) if sha else ()


def _host(meta: Mapping[str, Any], runs: list[dict[str, Any]], summary_accel: list[str]) -> Host:
    h = as_dict(meta.get("host"))
    thp = as_dict(h.get("thp"))
    knobs = tuple((k, str(thp[k])) for k in ("enabled", "defrag", "khugepaged_defrag") if k in thp)
    accel = tuple(sorted({str(r["accel"]) for r in runs if _str(r.get("accel"))} | set(summary_accel)))
    return Host(_str(h.get("cpu")), _int(h.get("cpus")), _str(h.get("kernel")), knobs, accel, _str(h.get("hostname")))


def _incidents(runs: list[dict[str, Any]]) -> dict[tuple[str, str], Incidents]:
    out: dict[tuple[str, str], Incidents] = {}
    for r in runs:
        arm = _str(r.get("arm"))
        for step, move in as_dict(r.get("moves")).items():
            if not arm or not isinstance(move, dict):
                continue
            i = out.setdefault((arm, str(step)), Incidents())
            i.moves += 1
            i.stalled += bool(move.get("stall"))
            i.timeouts += move.get("outcome") == "timeout"
    return out


def provenance(folder: ResultsFolder) -> Provenance:
    """What ``folder`` recorded about where its numbers came from."""
    meta = folder.metadata
    info = folder.scenario
    record = info.record
    runs_of: dict[str, list[dict[str, Any]]] = {}
    for r in folder.runs:
        runs_of.setdefault(str(r.get("arm", "")), []).append(r)
    arms: dict[str, ArmBuild] = {}
    stacks: dict[str, StackBuild] = {}
    models = {a.name: a for a in record.arms} if record is not None else {}
    for name in folder.arm_order():
        model = models.get(name)
        runs = runs_of.get(name, [])
        top = (record.stack or "") if record is not None else ""
        stack = _stack_of((model.stack if model is not None else "") or top, runs, meta)
        module = model.module if model is not None else str(runs[0].get("module", "?")) if runs else "?"
        qemu = model.qemu if model is not None else "?"
        version, sha = _qemu_identity(stack, qemu, meta)
        arms[name] = ArmBuild(name, stack, module, qemu, tuple(model.device) if model is not None else (),
                              model.mechanism if model is not None else "balloon",
                              tuple(model.host_thp) if model is not None else (),
                              _module_shas(stack, module, runs, meta), version, sha)
        if stack not in stacks:
            stacks[stack] = _stack_build(stack, meta)
    failed: dict[str, list[str]] = {}
    oom: dict[str, list[str]] = {}
    for run_id in folder.failed:
        parsed = layout.parse_run_id(run_id)
        arm = parsed[0] if parsed else run_id
        failed.setdefault(arm, []).append(run_id)
        if OOM_MARK in failure_reason(folder.path, run_id, limit=10_000):
            oom.setdefault(arm, []).append(run_id)
    order = as_dict(meta.get("arm_order"))
    scen = as_dict(meta.get("scenario"))
    s = folder.summary
    accel = [str(a) for a in s["accel"].dropna().unique()] if not s.empty and "accel" in s.columns else []
    return Provenance(
        path=folder.path, scenario=info.name, description=(record.description if record is not None else ""),
        scenario_file=scenario_file(_str(scen.get("path")) or (str(record.path) if record is not None
                                                                and record.path else None)),
        harness_revision=_str(meta.get("harness_revision")), planned_reps=folder.planned_reps,
        order=_str(order.get("order")), order_seed=_int(order.get("seed")), jobs=_int(meta.get("jobs")),
        created=_str(meta.get("created")), arms=arms, stacks=stacks, host=_host(meta, folder.runs, accel),
        incidents=_incidents(folder.runs), failed=failed, oom=oom)
