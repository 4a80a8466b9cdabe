"""``balloon-harness``: build, run scenarios, reproduce the RFC, report, check the host.

Expected failures print one line (``balloon-harness: error: ...``), not a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from harness import cli_analysis, cli_review
from harness.errors import HarnessError
from harness.resources import scenario_path

RFC_SCENARIO = "rfc-v1.toml"  # shipped with the package: harness.resources.scenario_path
RESULTS = Path("results")


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.artifacts import STACKS, build_all
    stacks = list(STACKS) if args.all_stacks else (args.stack or None)
    arts = build_all(stacks, update=args.update)
    print(f"manifest: {arts.manifest}")
    return 0


def _default_out(name: str, resume: bool) -> Path:
    """A new timestamped folder, or with --resume the newest one of this scenario."""
    if resume:
        existing = sorted(RESULTS.glob(f"{name}-2*"))
        if existing:
            return existing[-1]
    return RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _jobs(value: str, vcpus: int) -> int:
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


def _repetitions(args: argparse.Namespace, out: Path) -> int | None:
    """--reps, else (with --resume) the count the folder was started with, else the scenario's."""
    if args.reps is not None:
        return int(args.reps)
    if args.resume and (out / "metadata.json").exists():
        import json
        return json.loads((out / "metadata.json").read_text()).get("repetitions")
    return None


def _run(scenario_path: Path, args: argparse.Namespace) -> int:
    from harness.artifacts import build_all
    from harness.experiment import metadata
    from harness.experiment.runner import Shard, plan, run_scenario
    from harness.experiment.scenario import load_scenario, with_repetitions
    from harness.results import ResultsStore

    scenario = load_scenario(scenario_path)  # refused here, before anything builds or boots
    shard = Shard.parse(args.shard) if args.shard else None
    jobs = _jobs(args.jobs, scenario.vm.vcpus)
    out = Path(args.out) if args.out else _default_out(scenario.name, args.resume)
    reps = _repetitions(args, out)
    if reps is not None:
        scenario = with_repetitions(scenario, reps)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise HarnessError(f"{out} already holds results: pass --resume to complete it, or another --out")
    if shard and not plan(scenario, shard):
        raise HarnessError(f"--shard {shard}: this share of the {len(plan(scenario))} planned runs is empty")
    artifacts = build_all(scenario.stacks)
    store = ResultsStore(out)
    meta = {**metadata.collect(scenario, artifacts), "repetitions": scenario.repetitions,
            "shard": str(shard) if shard else None, "jobs": jobs}
    store.write_metadata(meta)  # before the first run: a crash still leaves it
    shutil.copy(scenario.path, out / "scenario.toml")
    print(f"results: {out} ({len(plan(scenario, shard))} run(s), {scenario.repetitions} rep(s)"
          f"{', shard ' + str(shard) if shard else ''}, --jobs {jobs})", file=sys.stderr)
    try:
        failed = run_scenario(scenario, artifacts, store, jobs=jobs, resume=args.resume, shard=shard)
    finally:
        store.write_metadata(metadata.finished(meta, out))
    _report(out)
    if failed:
        print(f"balloon-harness: {len(failed)} run(s) failed: {', '.join(failed)} "
              f"(see {out}/runs/<run>/error.txt)", file=sys.stderr)
    rc = 1 if failed else 0
    return cli_analysis.after_run(args, out, rc)


def _report(out: Path) -> None:
    from harness.report import print_report
    print_report(out)


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(Path(args.scenario), args)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    return _run(scenario_path(RFC_SCENARIO), args)


def _cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / "runs").is_dir():
        raise HarnessError(f"{out} is not a results folder (no runs/ inside)")
    _report(out)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from harness.doctor import run_doctor
    return run_doctor(Path(args.scenario) if args.scenario else scenario_path(RFC_SCENARIO))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="results folder (default: results/<scenario>-<timestamp>)")
    p.add_argument("--jobs", default="1",
                   help="guests at once: N or 'auto' (cores / vCPUs); default 1: isolated runs")
    p.add_argument("--reps", type=int, help="repetitions of every arm (overrides the scenario's)")
    p.add_argument("--shard", metavar="K/N",
                   help="run only the K-th of N deterministic shares of the plan (merge them with `merge`)")
    p.add_argument("--resume", action="store_true", help="skip runs already complete in --out")
    cli_analysis.add_run_options(p)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="balloon-harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or fetch guest kernels, images, QEMUs into the cache")
    b.add_argument("--stack", action="append", metavar="NAME",
                   help="a guest stack to build (bookworm: Linux 6.1 + QEMU 7.2, the default; trixie: "
                        "Linux 6.12 + QEMU 10.0); repeatable")
    b.add_argument("--all-stacks", action="store_true", help="build every guest stack")
    b.add_argument("--update", action="store_true",
                   help="resolve the newest versions of the stacks' packages and rewrite stacks.lock")
    b.set_defaults(func=_cmd_build)
    r = sub.add_parser("run", help="run a scenario file")
    r.add_argument("scenario", help="a scenario TOML file (see scenarios/)")
    _add_run_options(r)
    r.set_defaults(func=_cmd_run)
    rp = sub.add_parser("reproduce", help="run the RFC's experiment (scenarios/rfc-v1.toml) and print the table")
    _add_run_options(rp)
    rp.set_defaults(func=_cmd_reproduce)
    rep = sub.add_parser("report", help="redraw the table and plots of a results folder")
    rep.add_argument("dir")
    rep.set_defaults(func=_cmd_report)
    d = sub.add_parser("doctor", help="check this host: KVM, THP, memory, cache, disk")
    d.add_argument("--scenario", help="check memory against this scenario (default: rfc-v1)")
    d.set_defaults(func=_cmd_doctor)
    cli_analysis.register(sub)
    cli_review.register(sub)
    return p


def install_process_handlers() -> None:
    """Process-wide hooks, owned by the program rather than the library: SIGTERM unwinds
    like Ctrl-C (every ``with Guest``/``Machine`` block stops its QEMU), and an atexit hook
    stops any machine still live. Only in the main thread (signal's own rule)."""
    import atexit
    import signal
    import threading

    from harness.vm.machine import stop_all_live

    atexit.register(stop_all_live)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _sigterm(signum, frame):
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, _sigterm)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    install_process_handlers()
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"balloon-harness: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("balloon-harness: interrupted; finished runs are on disk (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
