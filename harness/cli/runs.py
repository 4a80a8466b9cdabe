"""``build``, ``run``, ``reproduce`` and ``report``: the commands that build and boot.

``run``/``reproduce`` take a :class:`RunRequest` (made from the command line by
:meth:`RunRequest.from_args`, or directly by ``review``); :func:`execute` runs it, prints
the table and hands the folder to the analysis options (``--check``, ``--history``).

The run machinery (paramiko, qemu.qmp, pandas) and the analysis (pandas, scipy,
matplotlib) are imported inside the commands: `--help` and `doctor` do not pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.analysis.defaults import DEFAULT_MAX_REPS, MAX_REPS_LIMIT
from harness.artifacts.stacks import DEFAULT_STACK, STACKS
from harness.cli import analysis, output
from harness.errors import HarnessError
from harness.resources import scenario_path
from harness.results import layout

if TYPE_CHECKING:
    from harness.artifacts.stacks import ArchiveOptions

RFC_SCENARIO = "rfc-v1.toml"  # shipped with the package: harness.resources.scenario_path
RESULTS = Path("results")


@dataclass(frozen=True)
class RunRequest:
    """Everything ``run``/``reproduce`` is asked: the scenario, where its results go, how."""

    scenario: Path
    out: Optional[Path] = None          # default: results/<scenario>-<timestamp>
    jobs: str = "1"                     # N or "auto"
    reps: Optional[int] = None          # overrides the scenario's repetitions
    shard: Optional[str] = None         # "K/N"
    resume: bool = False
    until_decided: bool = False         # add repetitions to open comparisons (harness.analysis.adaptive)
    max_reps: int = DEFAULT_MAX_REPS
    order: Optional[str] = None         # arms' order per round (random/balanced/fixed): overrides the scenario's
    order_seed: Optional[int] = None
    after: analysis.AfterRun = field(default_factory=analysis.AfterRun)

    @classmethod
    def from_args(cls, scenario: Path, args: argparse.Namespace) -> RunRequest:
        return cls(scenario=scenario, out=Path(args.out) if args.out else None, jobs=args.jobs,
                   reps=args.reps, shard=args.shard, resume=args.resume,
                   until_decided=args.until_decided, max_reps=args.max_reps,
                   order=args.order, order_seed=args.order_seed,
                   after=analysis.AfterRun.from_args(args))


def _default_out(name: str, resume: bool) -> Path:
    """A new timestamped folder, or with --resume the newest one of this scenario."""
    if resume:
        existing = sorted(RESULTS.glob(f"{name}-2*"))
        if existing:
            return layout.within(RESULTS, existing[-1])
    return layout.within(RESULTS, RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def jobs_count(value: str, vcpus: int) -> int:
    """``--jobs N`` or ``auto`` (host cores / guest vCPUs, at least 1)."""
    if value == "auto":
        return max(1, (os.cpu_count() or 1) // max(1, vcpus))
    try:
        jobs = int(value)
    except ValueError:
        raise HarnessError(f"--jobs {value!r}: a whole number or 'auto'") from None
    if jobs < 1:
        raise HarnessError("--jobs must be at least 1")
    return jobs


def _repetitions(req: RunRequest, out: Path) -> Optional[int]:
    """--reps, else (with --resume) the count the folder was started with, else the scenario's."""
    if req.reps is not None:
        return int(req.reps)
    if req.resume and (out / layout.METADATA).exists():
        return json.loads((out / layout.METADATA).read_text()).get("repetitions")
    return None


def _order(req: RunRequest, out: Path) -> tuple[Optional[str], Optional[int]]:
    """--order/--order-seed, else (with --resume) the ones the folder was started with."""
    order, seed = req.order, req.order_seed
    if req.resume and (out / layout.METADATA).exists():
        recorded = json.loads((out / layout.METADATA).read_text()).get("arm_order") or {}
        order = order or recorded.get("order")
        seed = seed if seed is not None else recorded.get("seed")
    return order, seed


def execute(req: RunRequest) -> int:
    """Run the request's scenario into its folder; print the table; the exit code.

    The plan is computed once (:func:`harness.experiment.plan.plan`): shown, checked against
    the host's room, built for and prepared (every image and accelerator) before the first
    boot, then run exactly as it is."""
    # Deferred: the runner pulls in paramiko, qemu.qmp and pandas, which `--help`,
    # `doctor` and the analysis commands do not need.
    from harness.artifacts.build import build_all
    from harness.artifacts.needs import needs_of
    from harness.experiment import metadata
    from harness.experiment.capacity import check_room
    from harness.experiment.plan import Shard, check_host_room, plan
    from harness.experiment.runner import run_plan
    from harness.experiment.scenario import load_scenario, with_order, with_repetitions
    from harness.results import ResultsStore

    scenario = load_scenario(req.scenario)  # refused here, before anything builds or boots
    shard = Shard.parse(req.shard) if req.shard else None
    jobs = jobs_count(req.jobs, scenario.vm.vcpus)
    out = req.out or _default_out(scenario.name, req.resume)
    reps = _repetitions(req, out)
    if reps is not None:
        scenario = with_repetitions(scenario, reps)
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out}: not a folder")
    scenario = with_order(scenario, *_order(req, out))
    if out.exists() and any(out.iterdir()) and not req.resume:
        raise HarnessError(f"{out} already holds results: pass --resume to complete it, or another --out")
    if req.until_decided and shard:
        raise HarnessError("--until-decided decides from every arm's runs: it cannot run one --shard")
    from harness.analysis.adaptive import check_max_reps
    check_max_reps(req.max_reps)   # a bad value is refused even where --until-decided would not read it
    store = ResultsStore(out)
    the_plan = plan(scenario, shard, complete=store.is_complete if req.resume else None)
    if shard and not the_plan.runs:
        raise HarnessError(f"--shard {shard}: this share of the {the_plan.total} planned runs is empty")
    check_room(scenario.vm.memory_mib, scenario.vm.vcpus, jobs, len(the_plan.runs),
               guests=scenario.fleet_size)  # before any build; issue 30: a fleet's guests
    check_host_room(the_plan, jobs)   # issue 29: knobs that differ under --jobs > 1, before any build
    archive = archive_from_environment()
    artifacts = build_all(scenario.stacks, needs=needs_of(scenario.arms), archive=archive)  # what its arms name
    the_plan = the_plan.prepared(artifacts)   # the rest of the build: images with the guest files, accelerators
    meta = {**metadata.collect(scenario, artifacts), "repetitions": scenario.repetitions,
            "shard": str(shard) if shard else None, "jobs": jobs,
            # the arms' order within each round, and its seed: the plan can be recomputed from them
            "arm_order": {"order": scenario.order, "seed": the_plan.seed}}
    store.write_metadata(meta)  # before the first run: a crash still leaves it
    shutil.copy(scenario.path, out / layout.SCENARIO)
    from harness.results.scenario_schema import record_json  # the resolved scenario, typed: what analysis reads
    (out / layout.SCENARIO_RECORD).write_text(record_json(scenario))
    print(f"results: {out} ({len(the_plan.runs)} run(s), {scenario.repetitions} rep(s)"
          f"{', shard ' + str(shard) if shard else ''}, --jobs {jobs})", file=sys.stderr)
    try:
        todo = the_plan.todo
        rounds = RoundWatch(scenario, [r.run_id for r in todo], out) if output.interactive() else None
        with output.progress(len(todo), scenario.name) as bar:
            def ended(run_id: str, ok: bool) -> None:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{run_id} {'ok' if ok else 'FAILED'}")
                if rounds is not None:
                    rounds.ended(run_id, bar)
            failed = run_plan(the_plan, store, jobs=jobs, on_run_end=ended)
        if req.until_decided:
            failed += _until_decided(req, scenario, artifacts, store, jobs)
    finally:
        store.write_metadata(metadata.finished(meta, out))
    print_report(out)
    if failed:
        print(f"balloon-harness: {len(failed)} run(s) failed: {', '.join(failed)} "
              f"(see {out}/runs/<run>/error.txt)", file=sys.stderr)
    return analysis.after_run(req.after, out, 1 if failed else 0)


class RoundWatch:
    """A first table as soon as every arm has run once, refined after each later round of
    repetitions (issue 22: a first answer in minutes); the final table as before. Only on a
    terminal: a CI log gets the final table alone. Called from the runner's worker threads."""

    def __init__(self, scenario, todo: list[str], out: Path):
        self.out = out
        self.reps = scenario.repetitions
        self.arms = [a.name for a in scenario.arms]
        self.left = set(todo)
        self.shown = 0
        self.lock = threading.Lock()

    def ended(self, run_id: str, bar) -> None:
        from harness.analysis.report import interim_text
        with self.lock:
            self.left.discard(run_id)
            done = self._rounds_done()
            if done <= self.shown or done >= self.reps or not self.left:
                return
            self.shown = done
            try:
                text = interim_text(self.out, done, self.reps)
            except (HarnessError, OSError, ValueError) as e:   # a table so far is a courtesy
                text = f"(no table so far: {e})"
            output.write_above(bar, text)

    def _rounds_done(self) -> int:
        """Repetitions every arm has finished (run or failed), counted from the first."""
        rounds = 0
        for rep in range(1, self.reps + 1):
            if any(layout.run_id(arm, rep) in self.left for arm in self.arms):
                break
            rounds = rep
        return rounds


def _until_decided(req: RunRequest, scenario, artifacts, store, jobs: int) -> list[str]:
    """More repetitions for the arms whose comparisons are open; the runs that failed.

    Each round is a plan of its own, built by the same :func:`harness.experiment.plan.plan`
    (one call per round: the added runs only), prepared from the artifacts already built
    and run as it is."""
    from harness.analysis.adaptive import until_decided
    from harness.experiment.plan import plan
    from harness.experiment.runner import run_plan
    from harness.experiment.scenario import with_repetitions
    failed: list[str] = []

    def run_more(more: dict[str, int]) -> None:
        wanted = {layout.run_id(arm, rep) for arm, rep in more.items()}
        extra = plan(with_repetitions(scenario, max(more.values())), only=wanted, complete=store.is_complete)
        failed.extend(run_plan(extra.prepared(artifacts), store, jobs=jobs))

    result = until_decided(store.out, run_more, req.max_reps, log=lambda m: print(m, file=sys.stderr))
    print(result.summary(), file=sys.stderr)
    return failed


def print_report(out: Path, wide: bool = False, explain: bool = False) -> None:
    """Write the report's files (statistics, plots), then print the table, the scenario's
    decided sentences under it and where the rest is; the folder is read once for both."""
    from harness.analysis.claims import decided_sentences
    from harness.analysis.report import report_text, write_report
    from harness.results.folder import open_folder
    folder = open_folder(out)
    files = write_report(folder)
    print(report_text(folder, wide=wide, explain=explain, decided=decided_sentences(folder), files=files))


def archive_from_environment(args: Optional[argparse.Namespace] = None) -> ArchiveOptions:
    """Where the stacks' packages come from: --mirror, --security-mirror, --snapshot STACK=URL
    (``build``), else the environment variables a user may set instead (read here, and only
    here: the build gets the result as a value)."""
    from harness.artifacts.stacks import ArchiveOptions
    archive = ArchiveOptions.from_environment(os.environ)
    if args is None:
        return archive
    snapshots = []
    for item in getattr(args, "snapshot", None) or []:
        name, sep, url = item.partition("=")
        if not sep or not url:
            raise HarnessError(f"--snapshot {item!r}: give STACK=URL, e.g. sid=<snapshot>/archive/debian/<time>")
        snapshots.append((name, url))
    return archive.overridden(mirror=getattr(args, "mirror", None),
                              security_mirror=getattr(args, "security_mirror", None), snapshots=snapshots)


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.artifacts.build import build_all
    archive = archive_from_environment(args)
    if args.scenario:   # only what its arms name: their variants, and the trees they build
        from harness.artifacts.needs import needs_of
        from harness.experiment.scenario import load_scenario
        scenario = load_scenario(args.scenario)
        arts = build_all(scenario.stacks, update=args.update, needs=needs_of(scenario.arms), archive=archive)
        print(f"manifest: {arts.manifest}")
        return 0
    stacks = list(STACKS) if args.all_stacks else (args.stack or None)
    arts = build_all(stacks, update=args.update, archive=archive)
    print(f"manifest: {arts.manifest}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return execute(RunRequest.from_args(Path(args.scenario), args))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    return execute(RunRequest.from_args(scenario_path(RFC_SCENARIO), args))


def _cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not layout.runs_dir(out).is_dir():
        raise HarnessError(f"{out} is not a results folder (no {layout.RUNS}/ inside)")
    print_report(out, wide=args.wide, explain=args.explain)
    return 0


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="results folder (default: results/<scenario>-<timestamp>)")
    p.add_argument("--jobs", default="1",
                   help="guests at once: N or 'auto' (cores / vCPUs); default 1: isolated runs")
    p.add_argument("--reps", type=int, help="repetitions of every arm (overrides the scenario's)")
    p.add_argument("--shard", metavar="K/N",
                   help="run only the K-th of N deterministic shares of the plan (merge them with `merge`)")
    p.add_argument("--resume", action="store_true", help="skip runs already complete in --out")
    p.add_argument("--until-decided", action="store_true",
                   help="after the repetitions, add one at a time to the arms whose comparisons ([[expect]] "
                        "than, else each arm against the first) are still undecided")
    p.add_argument("--max-reps", type=int, default=DEFAULT_MAX_REPS, metavar="N",
                   help=f"with --until-decided: at most N repetitions of an arm (default {DEFAULT_MAX_REPS}, "
                        f"at most {MAX_REPS_LIMIT})")
    p.add_argument("--order", choices=("random", "balanced", "fixed"),
                   help="the arms' order within each round: random (seeded shuffle, the default), balanced "
                        "(rotated by one per round) or fixed (the scenario's); overrides the scenario's `order`")
    p.add_argument("--order-seed", type=int, metavar="N",
                   help="seed of the random order (default: the scenario's order_seed, else derived from the "
                        "scenario file, so every shard computes the same plan); recorded in metadata.json")
    analysis.add_run_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build or fetch guest kernels, images, QEMUs into the cache")
    b.add_argument("--stack", action="append", metavar="NAME",
                   help="a guest stack to build (" + "; ".join(
                       f"{s.name}: {s.description}" + (", the default" if s.name == DEFAULT_STACK else "")
                       for s in STACKS.values()) + "); repeatable")
    b.add_argument("--all-stacks", action="store_true", help="build every guest stack")
    b.add_argument("--scenario", metavar="FILE",
                   help="build only what this scenario's arms need (with the kernel and QEMU trees they name), "
                        "as `run` would: a CI build step that fails before any runner boots")
    b.add_argument("--update", action="store_true",
                   help="resolve the newest versions of the stacks' packages and rewrite stacks.lock")
    b.add_argument("--mirror", metavar="URL",
                   help="Debian main archive for every stack (default: the host's apt sources; "
                        "env BALLOON_HARNESS_MIRROR)")
    b.add_argument("--security-mirror", metavar="URL",
                   help="Debian security archive (default: the host's, else derived from the main one: "
                        ".../debian -> .../debian-security; env BALLOON_HARNESS_SECURITY_MIRROR)")
    b.add_argument("--snapshot", action="append", metavar="STACK=URL",
                   help="pin a stack to a snapshot archive (its main archive address, e.g. "
                        ".../archive/debian/20261101T000000Z); its expired Release is accepted; "
                        "env BALLOON_HARNESS_SNAPSHOT_<STACK>; repeatable")
    b.set_defaults(func=_cmd_build)
    r = sub.add_parser("run", help="run a scenario file")
    r.add_argument("scenario", help="a scenario TOML file (see scenarios/)")
    add_run_options(r)
    r.set_defaults(func=_cmd_run)
    rp = sub.add_parser("reproduce", help="run the RFC's experiment (scenarios/rfc-v1.toml) and print the table")
    add_run_options(rp)
    rp.set_defaults(func=_cmd_reproduce)
    rep = sub.add_parser("report", help="redraw the table and plots of a results folder")
    rep.add_argument("dir", help="results folder")
    rep.add_argument("--wide", action="store_true", help="every headline column (wider than 100 characters)")
    rep.add_argument("--explain", action="store_true",
                     help="under the table, what every column means, the stop-short and --jobs notes, "
                          "and the files written")
    rep.set_defaults(func=_cmd_report)
