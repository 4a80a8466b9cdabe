"""``balloon-harness merge OUT DIR...``: shard results folders combined into one.

A nightly job splits a scenario's runs over several bare-metal runners (``run --shard
K/N``); each writes a results folder of the same layout (``runs/<run_id>/`` with
``run.json`` marking a finished run, ``metadata.json``, ``scenario.toml``). Merging
copies every run into one folder and rebuilds the combined frames, so ``report``,
``check`` and ``history`` see one experiment.

Refused, naming the difference, because the merged figures would silently mix things:
shards of different scenarios or builds (scenario text hash, QEMU and module sha256s,
accelerator), and a run id present in two shards with different contents (the same run
measured twice; identical copies are fine). Each shard's own metadata (its host, kernel,
THP settings) is kept in ``metadata["shards"]``.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results import layout
from harness.results.folder import ResultsFolder, open_folder
from harness.results.identity import refuse_if_different
from harness.results.store import ResultsStore


def _same_tree(a: Path, b: Path) -> bool:
    """Same relative file names with the same bytes."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all(filecmp.cmp(a / p, b / p, shallow=False) for p in fa)


def _scenario_text(folder: ResultsFolder) -> str:
    if folder.scenario.text is None:
        raise HarnessError(f"{folder.path} has neither scenario.toml nor the scenario in metadata.json: "
                           f"cannot tell which scenario its runs belong to")
    return folder.scenario.text


def merge_results(out: str | Path, dirs: Sequence[str | Path], force: bool = False) -> Path:
    """Merge the shard folders ``dirs`` into the new folder ``out``; returns ``out``."""
    out = Path(out)
    if not dirs:
        raise HarnessError("merge needs at least one shard results folder")
    seen: dict[Path, str] = {}
    for d in dirs:
        real = Path(d).resolve()
        if real in seen:
            raise HarnessError(f"{d} is given twice ({seen[real]} is the same folder): each shard once, "
                               f"or its runs would be counted twice")
        seen[real] = str(d)
    folders = [open_folder(d) for d in dirs]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"{out} already exists and is not empty: merge into a new folder")
    if any(out.resolve() == f.path.resolve() for f in folders):
        raise HarnessError(f"{out} is one of the shards: merge into a new folder")
    texts = {f.path: _scenario_text(f) for f in folders}
    notes = refuse_if_different(folders, force, what="merge")
    first_text = texts[folders[0].path]
    for f in folders[1:]:  # metadata may lack the scenario; the files must agree all the same
        if texts[f.path] != first_text and not force:
            raise HarnessError(f"refusing to merge results of different scenarios: {folders[0].path} and "
                               f"{f.path} have different scenario.toml (pass --force to do it anyway)")

    sources: dict[str, Path] = {}
    for f in folders:
        for d in sorted(p for p in layout.runs_dir(f.path).iterdir() if p.is_dir()):
            if d.name in sources:
                if not _same_tree(sources[d.name], d):
                    raise HarnessError(f"run {d.name} is in two shards with different contents "
                                       f"({sources[d.name].parent.parent} and {f.path}): refusing to pick one")
                continue
            sources[d.name] = d

    tmp = out.with_name(f".{out.name}.merging")
    if tmp.exists():
        shutil.rmtree(tmp)
    layout.runs_dir(tmp).mkdir(parents=True)
    for run_id, src in sources.items():
        shutil.copytree(src, layout.run_dir(tmp, run_id))
    (tmp / layout.SCENARIO).write_text(first_text)
    ResultsStore(tmp).write_metadata(merged_metadata(folders, notes))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    ResultsStore(out).combine()
    return out


def merged_metadata(folders: Sequence[ResultsFolder], notes: Sequence[str] = ()) -> dict[str, Any]:
    """The first shard's metadata, each shard's own in ``shards``, accelerators of every run."""
    base = dict(folders[0].metadata)
    created = sorted(str(f.metadata["created"]) for f in folders if f.metadata.get("created"))
    accel: dict[str, Any] = {}
    for f in folders:
        if isinstance(f.metadata.get("accelerator"), dict):
            accel.update(f.metadata["accelerator"])
        for r in f.runs:
            if "run_id" in r:
                accel.setdefault(r["run_id"], r.get("accel", "unknown"))
    base.update({
        "created": created[0] if created else base.get("created"),
        "accelerator": accel,
        "shards": [{"source": str(f.path.resolve()), **f.metadata} for f in folders],
        "merged": {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from": [str(f.path) for f in folders],
                   "notes": list(notes)},
    })
    return json.loads(json.dumps(base, default=str))
