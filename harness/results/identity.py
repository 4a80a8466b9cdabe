"""Whether two results folders may be compared or merged: the same scenario, builds and conditions.

Comparing results of different scenarios or builds compares apples and pears, so it is
refused (naming the difference) unless forced: the scenario text's hash, each QEMU's and
each balloon module's sha256, the accelerator, and the guests run at once (``--jobs``)
must agree. Why ``--jobs`` is refused rather than its host-wide figures dropped: guests
run together share the host's CPUs and memory, so besides the host-wide figures (which
mix the guests) the timings (settle_seconds, speeds) and the host's THP supply change
too; no subset of figures is safely comparable. A folder written before ``jobs`` was
recorded counts as 1 when its runs' wall-clock spans do not overlap (they ran one after
another), else as not recorded (said so as "cannot check").
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import pandas as pd

from harness.errors import HarnessError
from harness.results.folder import ResultsFolder, as_dict, own_trees_of


class Incomparable(HarnessError):
    """Two results that must not be compared (different scenario, build or accelerator)."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


JOBS = "guests at once (--jobs)"


def jobs_of(metadata: dict[str, Any], runs: Optional[list[dict[str, Any]]] = None) -> Optional[str]:
    """Guests run at once: metadata's ``jobs``; for an older folder 1 when its runs ran one
    after another (no two runs' [started, started + wall_seconds] overlap), else None."""
    jobs = as_dict(metadata).get("jobs")
    if isinstance(jobs, int) and not isinstance(jobs, bool):
        return str(jobs)
    spans = []
    for r in runs or []:
        start, wall = r.get("started"), r.get("wall_seconds")
        if not isinstance(start, (int, float)) or not isinstance(wall, (int, float)):
            return None
        spans.append((float(start), float(start) + float(wall)))
    spans.sort()
    if not spans or any(nxt[0] < prev[1] for prev, nxt in zip(spans, spans[1:])):
        return None
    return "1"


def fingerprint(metadata: dict[str, Any], summary: Optional[pd.DataFrame] = None,
                scenario_text: Optional[str] = None,
                runs: Optional[list[dict[str, Any]]] = None) -> dict[str, str]:
    """What makes two results comparable: scenario hash, QEMU and module sha256s, accelerator,
    guests at once (``jobs``; from ``runs`` when the metadata predates it).

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
    # Kernels and QEMUs built from users' trees: by content (tree, uncommitted changes), not
    # by path or binary (runners build them apart; the same tree is the same build).
    trees: dict[str, set[str]] = {}
    for own in own_trees_of(meta):
        ident = as_dict(own.info.get("identity"))
        if ident.get("content"):
            kind = "qemu" if own.kind == "qemu" else "kernel"
            trees.setdefault(kind, set()).add(str(ident["content"]) + (f"+{ident['changes']}"
                                                                       if ident.get("changes") else ""))
    for kind, contents in sorted(trees.items()):
        fp[f"{kind} trees"] = ", ".join(sorted(contents))
    if summary is not None and "accel" in summary.columns:
        accel = sorted({str(a) for a in summary["accel"].dropna()})
        if accel:
            fp["accelerator"] = ", ".join(accel)
    jobs = jobs_of(meta, runs)
    if jobs is not None:
        fp[JOBS] = jobs
    return fp


def folder_fingerprint(folder: ResultsFolder) -> dict[str, str]:
    return fingerprint(folder.metadata, folder.summary, folder.scenario.text, folder.runs)


def host_of(folder: ResultsFolder) -> Optional[str]:
    """The host the runs ran on (metadata's host name), None when not recorded."""
    name = as_dict(as_dict(folder.metadata).get("host")).get("hostname")
    return str(name) if name else None


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


def refuse_if_different(folders: list[ResultsFolder], force: bool, what: str = "compare") -> list[str]:
    """Raise :class:`Incomparable` naming every difference (unless ``force``); returns notes."""
    notes: list[str] = []
    base = folders[0]
    fa = folder_fingerprint(base)
    problems: list[str] = []
    for other in folders[1:]:
        if other.path.resolve() == base.path.resolve():
            continue
        fo = folder_fingerprint(other)
        diffs, unknown = differences(fa, fo, (str(base.path), str(other.path)))
        problems += diffs
        notes += [f"cannot check: {u}" for u in unknown]
        if JOBS not in fa and JOBS not in fo:
            notes.append(f"cannot check: {JOBS} recorded in neither folder, and their runs overlap in time "
                         f"(or have no times): unknown")
    if problems:
        if not force:
            raise Incomparable(f"refusing to {what} results of different scenarios or builds: "
                               + "; ".join(problems) + " (pass --force to do it anyway)")
        notes += [f"forced despite: {p}" for p in problems]
    return notes


