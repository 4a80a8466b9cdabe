"""``balloon-harness``: build, run scenarios, reproduce the RFC, report, check the host.

Expected failures print one line (``balloon-harness: error: ...``), not a traceback.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]
RFC_SCENARIO = REPO / "scenarios" / "rfc-v1.toml"
RESULTS = Path("results")


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.artifacts import build_all
    arts = build_all()
    print(f"manifest: {arts.manifest}")
    return 0


def _default_out(name: str, resume: bool) -> Path:
    """A new timestamped folder, or with --resume the newest one of this scenario."""
    if resume:
        existing = sorted(RESULTS.glob(f"{name}-2*"))
        if existing:
            return existing[-1]
    return RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _run(scenario_path: Path, args: argparse.Namespace) -> int:
    from harness.artifacts import build_all
    from harness.experiment import metadata
    from harness.experiment.runner import run_scenario
    from harness.experiment.scenario import load_scenario
    from harness.results import ResultsStore

    scenario = load_scenario(scenario_path)  # refused here, before anything builds or boots
    out = Path(args.out) if args.out else _default_out(scenario.name, args.resume)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise HarnessError(f"{out} already holds results: pass --resume to complete it, or another --out")
    artifacts = build_all()
    store = ResultsStore(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(scenario.path, out / "scenario.toml")
    meta = metadata.collect(scenario, artifacts)
    store.write_metadata(meta)  # before the first run: a crash still leaves it
    print(f"results: {out}", file=sys.stderr)
    try:
        failed = run_scenario(scenario, artifacts, store, jobs=args.jobs, resume=args.resume)
    finally:
        store.write_metadata({**meta, "accelerator": metadata.accelerators(out)})
    _report(out)
    if failed:
        print(f"balloon-harness: {len(failed)} run(s) failed: {', '.join(failed)} "
              f"(see {out}/runs/<run>/error.txt)", file=sys.stderr)
        return 1
    return 0


def _report(out: Path) -> None:
    from harness.experiment.scenario import load_scenario
    from harness.report import format_table, plot_all, step_table
    from harness.results import load_results

    res = load_results(out)
    reference, arms = {}, []
    if (out / "scenario.toml").exists():
        scenario = load_scenario(out / "scenario.toml")
        reference, arms = scenario.reference, [a.name for a in scenario.arms]
    print(format_table(step_table(res.summary, reference, arms)))
    print("\nAHP = AnonHugePages. RFC columns: the RFC's own figures (host /proc/meminfo).")
    print("THP lost / ballooned MiB (QEMU process): 1.00 = only the ballooned memory lost its huge pages;\n"
          "above 1, discards split huge pages the guest still uses; below 1, part of the ballooned\n"
          "memory was never backed by the host. reached = no: the guest stopped short (see actual MiB).")
    accel = sorted(set(res.summary["accel"].dropna())) if not res.summary.empty else []
    print(f"accelerator: {', '.join(accel) or '-'}; runs: {len(res.runs)}; results: {out}")
    for p in plot_all(res.samples, res.summary, out / "plots"):
        print(f"plot: {p}")


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(Path(args.scenario), args)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    return _run(RFC_SCENARIO, args)


def _cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / "runs").is_dir():
        raise HarnessError(f"{out} is not a results folder (no runs/ inside)")
    _report(out)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from harness.doctor import run_doctor
    return run_doctor(Path(args.scenario) if args.scenario else RFC_SCENARIO)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="results folder (default: results/<scenario>-<timestamp>)")
    p.add_argument("--jobs", type=int, default=1, help="guests at once (default 1: isolated runs)")
    p.add_argument("--resume", action="store_true", help="skip runs already complete in --out")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="balloon-harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or fetch guest kernel, images, QEMU into the cache") \
        .set_defaults(func=_cmd_build)
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if getattr(args, "jobs", 1) < 1:
        print("balloon-harness: error: --jobs must be at least 1", file=sys.stderr)
        return 2
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
