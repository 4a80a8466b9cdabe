"""Whether two results folders may be compared or merged: the same scenario and builds.

Comparing results of different scenarios or builds compares apples and pears, so it is
refused (naming the difference) unless forced: the scenario text's hash, each QEMU's and
each balloon module's sha256, and the accelerator must agree.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import pandas as pd

from harness.errors import HarnessError
from harness.results.folder import ResultsFolder, as_dict


class Incomparable(HarnessError):
    """Two results that must not be compared (different scenario, build or accelerator)."""


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
    # Kernels and QEMUs built from users' trees: by content (tree, uncommitted changes), not
    # by path or binary (runners build them apart; the same tree is the same build).
    trees: dict[str, set[str]] = {}
    for label, info in as_dict(meta.get("own_trees")).items():
        ident = as_dict(as_dict(info).get("identity"))
        if ident.get("content"):
            kind = "qemu" if label.split(": ", 1)[-1].startswith("qemu ") else "kernel"
            trees.setdefault(kind, set()).add(str(ident["content"]) + (f"+{ident['changes']}"
                                                                       if ident.get("changes") else ""))
    for kind, contents in sorted(trees.items()):
        fp[f"{kind} trees"] = ", ".join(sorted(contents))
    if summary is not None and "accel" in summary.columns:
        accel = sorted({str(a) for a in summary["accel"].dropna()})
        if accel:
            fp["accelerator"] = ", ".join(accel)
    return fp


def folder_fingerprint(folder: ResultsFolder) -> dict[str, str]:
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


def refuse_if_different(folders: list[ResultsFolder], force: bool, what: str = "compare") -> list[str]:
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


