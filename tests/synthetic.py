"""Synthetic results folders for the analysis tests and benchmarks (no VM).

``make_results`` writes what a real run writes (``runs/<id>/summary.parquet``,
``samples.parquet``, ``run.json`` as :class:`harness.results.ResultsStore` writes them, plus
``metadata.json`` and ``scenario.toml``), with figures drawn around per-arm means that
the test chooses, so tests assert behaviour against the inputs they built.
"""

from __future__ import annotations

import atexit
import json
import math
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.results import ResultsStore, write_frame, write_text
from harness.results.layout import RUN_DONE, SAMPLES, SUMMARY
from harness.results.metrics import SAMPLE_COLUMNS, SUMMARY_COLUMNS, summary_row

START_MIB = 1024.0
TARGET_MIB = 624
BALLOON_STEP = f"balloon {TARGET_MIB}"


@dataclass
class ArmSpec:
    """Means of one arm's figures; each run draws around them with ``noise`` (relative sd)."""

    ratio: float = 2.0          # thp_lost_per_ballooned_mib
    shrink: float = 1.0         # fraction of the requested MiB actually ballooned
    settle: float = 10.0        # settle_seconds
    noise: float = 0.05
    qemu: str = "patched"
    module: str = "patched"
    stack: str = ""             # the arm's guest stack ("": the scenario's default)


DEFAULT_ARMS = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.1)}


def scenario_text(name: str, arms: dict[str, ArmSpec], reps: int, expect: list[dict[str, Any]] = (),
                  reference: Optional[dict[str, dict[str, float]]] = None) -> str:
    def val(v: Any) -> str:
        return json.dumps(v) if isinstance(v, str) else repr(v)
    lines = [f'name = "{name}"', f"repetitions = {reps}", "", "[vm]", "memory_mib = 1024", "",
             "[[steps]]", 'kind = "run"', 'label = "usemem"', 'command = "usemem --punch-holes 800m"', "",
             "[[steps]]", 'kind = "balloon"', f'label = "{BALLOON_STEP}"', f"target_mib = {TARGET_MIB}", "",
             "[[steps]]", 'kind = "measure"', 'label = "after"', ""]
    for arm, spec in arms.items():
        lines += ["[[arms]]", f'name = "{arm}"', f'qemu = "{spec.qemu}"', f'module = "{spec.module}"',
                  *([f'stack = "{spec.stack}"'] if spec.stack else []), ""]
    for e in expect:
        lines += ["[[expect]]", *[f"{k} = {val(v)}" for k, v in e.items()], ""]
    for arm, cols in (reference or {}).items():
        lines += [f"[reference.{arm}]", *[f"{k} = {v}" for k, v in cols.items()], ""]
    return "\n".join(lines)


def metadata(name: str, text: str, qemu_sha: str = "q" * 64, module_sha: str = "m" * 64,
             host: str = "testhost", created: str = "2024-05-01T02:00:00+0000",
             jobs: Optional[int] = 1) -> dict[str, Any]:
    return {**({"jobs": jobs} if jobs is not None else {}),
        "created": created,
        "harness_revision": "0123456789abcdef",
        "host": {"hostname": host, "kernel": "6.1.0-test", "cpu": "synthetic", "cpus": 2},
        "build_manifest": {"qemu_sha256": {"patched": qemu_sha, "stock": "s" * 64}},
        "guest_modules": {"patched": {"sha256": module_sha}, "stock": {"sha256": "t" * 64}},
        "scenario": {"name": name, "path": f"/scenarios/{name}.toml", "text": text},
    }


def run_rows(run_id: str, arm: str, rep: int, spec: ArmSpec, rng: np.random.Generator,
             accel: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One run's summary rows (as the runner computes them, through ``summary_row``) and the
    quantities its samples are drawn from; the draws in a fixed order (seeded folders stay
    the same)."""
    def draw(mean: float) -> float:
        return float(mean * (1 + spec.noise * rng.standard_normal()))

    shrink = min(1.0, max(0.0, draw(spec.shrink))) if spec.shrink < 1.0 else 1.0
    requested = START_MIB - TARGET_MIB
    ballooned = requested * shrink
    actual = START_MIB - ballooned
    ratio = max(0.0, draw(spec.ratio))
    ahp0, rss0, host0 = 950 * 1024.0, 1000 * 1024.0, 976896.0
    lost = min(ratio * ballooned * 1024, ahp0)
    ident = {"run_id": run_id, "arm": arm, "rep": rep}
    r0 = {("balloon", "actual_mib"): START_MIB, ("qemu", "anon_huge_kib"): ahp0,
          ("qemu", "rss_kib"): rss0, ("host", "anon_huge_kib"): host0, ("host", "thp_split_pmd"): 100.0}
    r1 = {("balloon", "actual_mib"): actual, ("qemu", "anon_huge_kib"): ahp0 - lost,
          ("qemu", "rss_kib"): rss0 - ballooned * 1024 * 0.98, ("host", "anon_huge_kib"): host0 - lost,
          ("host", "thp_split_pmd"): 100.0 + round(lost / 2048)}
    move = SimpleNamespace(reached=abs(actual - TARGET_MIB) < 2.0,
                           outcome="reached" if abs(actual - TARGET_MIB) < 2.0 else "settled",
                           seconds=max(0.1, draw(spec.settle)))
    rows = [summary_row({**ident, "step": "usemem"}, "run", None, {**r0}, {**r0}, accel, 5.0),
            summary_row({**ident, "step": BALLOON_STEP}, "balloon", TARGET_MIB, r0, r1, accel,
                        move.seconds + 2, move),
            summary_row({**ident, "step": "after"}, "measure", None, r1, r1, accel, 2.0)]
    return rows, {"ballooned": ballooned, "lost": lost, "ahp0": ahp0}


def _run_frames(run_id: str, arm: str, rep: int, spec: ArmSpec, rng: np.random.Generator,
                accel: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, q = run_rows(run_id, arm, rep, spec, rng, accel)
    ballooned, lost, ahp0 = q["ballooned"], q["lost"], q["ahp0"]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    t = np.arange(0, 3.0, 0.5)
    samples = pd.DataFrame(
        [(run_id, arm, rep, BALLOON_STEP, float(x), "balloon", "actual_mib", START_MIB - ballooned * x / 3.0)
         for x in t] + [(run_id, arm, rep, BALLOON_STEP, float(x), "qemu", "anon_huge_kib", ahp0 - lost * x / 3.0)
                        for x in t], columns=SAMPLE_COLUMNS)
    return samples, summary


_built: dict[str, Path] = {}   # make_results' arguments -> a folder built with them (this process)


def make_results(out: Path, arms: Optional[dict[str, ArmSpec]] = None, reps: int = 5, seed: int = 0,
                 name: str = "syn", expect: list[dict[str, Any]] = (), accel: str = "kvm",
                 failed: tuple[str, ...] = (), missing: tuple[str, ...] = (),
                 qemu_sha: str = "q" * 64, module_sha: str = "m" * 64, host: str = "testhost",
                 created: str = "2024-05-01T02:00:00+0000", reference: Optional[dict] = None,
                 fast: bool = False, run_ids: Optional[list[str]] = None, jobs: Optional[int] = 1) -> Path:
    """A results folder: ``reps`` runs of each arm; ``failed`` run ids get only an error.txt,
    ``missing`` run ids are left out; ``run_ids`` restricts the runs written (shards); ``jobs``
    is recorded in metadata.json (None: not recorded, as in folders older than that key).

    The figures are a function of the arguments (seeded), so a folder built once with the same
    arguments is copied instead of written again (a copy costs milliseconds, writing Parquet
    frames a second or more on a loaded 2-core host); the copy's runs get run_uids of their own,
    as two folders written apart would."""
    out = Path(out)
    key = repr((arms if arms is not None else DEFAULT_ARMS, reps, seed, name, list(expect), accel, tuple(failed),
                tuple(missing), qemu_sha, module_sha, host, created, reference, fast,
                None if run_ids is None else list(run_ids), jobs))
    fresh = not out.exists()   # a folder written into an existing one is not a function of the arguments
    if fresh and key in _built:
        shutil.copytree(_built[key], out, symlinks=True)
        for done in out.glob(f"runs/*/{RUN_DONE}"):   # each folder's runs are runs of their own
            info = json.loads(done.read_text())
            info["run_uid"] = uuid.uuid4().hex
            done.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return out
    _write_results(out, arms, reps, seed, name, expect, accel, failed, missing, qemu_sha, module_sha, host,
                   created, reference, fast, run_ids, jobs)
    if not fresh:
        return out
    keep = Path(tempfile.mkdtemp(prefix="bh-synthetic-")) / "results"
    shutil.copytree(out, keep, symlinks=True)
    atexit.register(shutil.rmtree, keep.parent, True)
    _built[key] = keep
    return out


def _write_results(out: Path, arms: Optional[dict[str, ArmSpec]], reps: int, seed: int, name: str,
                   expect: list[dict[str, Any]], accel: str, failed: tuple[str, ...], missing: tuple[str, ...],
                   qemu_sha: str, module_sha: str, host: str, created: str, reference: Optional[dict],
                   fast: bool, run_ids: Optional[list[str]], jobs: Optional[int] = 1) -> None:
    arms = arms if arms is not None else DEFAULT_ARMS
    planned = {f"{arm}-r{rep}" for rep in range(1, reps + 1) for arm in arms}
    unknown = sorted((set(failed) | set(missing) | set(run_ids or ())) - planned)
    if unknown:   # a test that marks a run the folder does not have tests nothing
        raise ValueError(f"make_results: no such run in this folder: {', '.join(unknown)} (runs: {sorted(planned)})")
    rng = np.random.default_rng(seed)
    text = scenario_text(name, arms, reps, list(expect), reference)
    store = ResultsStore(out)
    # the runs this call writes, by run id: what ResultsStore.combine would read back
    written: Optional[dict[str, tuple[pd.DataFrame, pd.DataFrame]]] = \
        None if any(store.runs_dir.glob(f"*/{RUN_DONE}")) else {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.toml").write_text(text)
    store.write_metadata(metadata(name, text, qemu_sha, module_sha, host, created, jobs))
    for rep in range(1, reps + 1):
        for arm, spec in arms.items():
            run_id = f"{arm}-r{rep}"
            samples, summary = _run_frames(run_id, arm, rep, spec, rng, accel)
            if run_id in missing or (run_ids is not None and run_id not in run_ids):
                continue
            if run_id in failed:
                d = store.run_dir(run_id)
                d.mkdir(parents=True, exist_ok=True)
                (d / "error.txt").write_text("BootTimeout: the guest never answered SSH\n\ntraceback...\n")
                continue
            info = {"run_uid": uuid.uuid4().hex, "run_id": run_id, "arm": arm, "rep": rep, "status": "complete",
                    "accel": accel,
                    "started": 1714528800.0 + rep, "wall_seconds": 30.0}
            # The files write_run writes, in its order (frames, then the completion mark), but
            # the combined frames are built once at the end, not after every run (n^2 writes).
            d = store.run_dir(run_id)
            d.mkdir(parents=True, exist_ok=True)
            if fast:  # Parquet only (benchmarks with hundreds of runs)
                samples.to_parquet(d / "samples.parquet", index=False)
                summary.to_parquet(d / "summary.parquet", index=False)
                (d / RUN_DONE).write_text(json.dumps(info) + "\n")
            else:
                for name, frame in (("samples", samples), ("summary", summary)):
                    write_frame(frame, d / name)
                write_text(d / RUN_DONE, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
            if written is not None:
                written[run_id] = (samples, summary)
    if not written:   # runs written before this call (a folder filled shard by shard), or none
        store.combine()
        return
    # The combined frames from the frames in hand: ResultsStore.combine reads every run's
    # Parquet back (a third of a folder's cost). Same runs, same order (run id, as
    # layout.complete_run_dirs sorts them), same write_frame; tests/test_synthetic.py checks
    # that the files are those combine writes.
    ids = sorted(written)
    for stem, i in ((SAMPLES, 0), (SUMMARY, 1)):
        write_frame(pd.concat([written[r][i] for r in ids], ignore_index=True), out / stem)


def nan_safe(v: float) -> float:
    return -1.0 if math.isnan(v) else v
