"""``calibrate``: one arm against an identical copy of itself, and each figure's noise floor.

Runs the A/A scenario of :mod:`harness.experiment.twins` through the usual ``run`` machinery
(build, metadata, interleaved runs in a random order per round), then measures the floors
(:mod:`harness.analysis.calibrate`) and writes them with how they were measured (date,
harness commit, host, the command) to ``OUT/floors.json`` and, with ``--write-floors``, to a
data file to commit (``harness/results/floors.json``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from harness.cli import analysis
from harness.cli.runs import RESULTS, RunRequest, execute
from harness.errors import HarnessError

FLOORS_FILE = "floors.json"


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.experiment.twins import twin_scenario_text
    if args.reps < 2:
        raise HarnessError(f"--reps {args.reps}: at least 2 runs per copy (a spread needs two)")
    text, arm, twin = twin_scenario_text(args.scenario, args.arm)
    out = Path(args.out) if args.out else RESULTS / f"calibrate-{arm}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory(prefix="bh-calibrate-") as tmp:
        scenario = Path(tmp) / f"{Path(args.scenario).stem}-calibrate-{arm}.toml"
        scenario.write_text(text)
        rc = execute(RunRequest(scenario=scenario, out=out, jobs=args.jobs, reps=args.reps, resume=args.resume,
                                order_seed=args.order_seed, after=analysis.AfterRun()))
    return report(out, arm, twin, args, rc)


def report(out: Path, arm: str, twin: str, args: argparse.Namespace, rc: int) -> int:
    """Measure, print and write the floors of the A/A folder ``out``."""
    from harness.analysis.calibrate import calibrate_folder, calibration_record
    from harness.analysis.groups import fmt_metric
    from harness.render.numbers import fmt_p
    from harness.render.text import text_table
    from harness.results.folder import open_folder
    cal = calibrate_folder(out, arm, twin)
    meta = open_folder(out).metadata
    record = calibration_record(
        cal, measured=meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        commit=meta.get("harness_revision", "unknown"), host=meta.get("host", {}),
        scenario=str(args.scenario), reps_per_copy=args.reps, results=str(out),
        command="balloon-harness " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    rows = [[r.step, r.metric, str(r.n), fmt_metric(r.metric, r.median), fmt_metric(r.metric, r.floor),
             fmt_metric(r.metric, r.aa_shift), fmt_p(r.aa_p), r.aa_verdict] for r in cal.rows]
    print(f"\ncalibrate: {arm} against {twin} ({out})")
    print(text_table(["step", "metric", "n", "median", "floor", "A/A shift", "p", "A/A decision"], rows,
                     left=2, last_left=True))
    print(f"floor: {record['definition']}")
    print("floors: " + ", ".join(f"{k} {fmt_metric(k, v)}" for k, v in cal.floors.items()))
    print(f"A/A: {len(cal.false_alarms)} figure(s) called better or worse"
          + (f": {', '.join(record['aa_false_alarms'])}" if cal.false_alarms else ""))
    targets = [out / FLOORS_FILE] + ([Path(args.write_floors)] if args.write_floors else [])
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        print(f"floors written: {t}", file=sys.stderr)
    return rc


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "calibrate", help="run one arm against an identical copy of itself; write each figure's noise floor",
        description="A/A: the arm (default: the scenario's first) and a copy of it, interleaved in a random "
                    "order per round, --reps runs each. Writes OUT/floors.json: per figure the 95th percentile "
                    "of |Hodges-Lehmann shift| between two groups of --reps runs of identical arms (resampled), "
                    "with the date, commit, host and command; and prints the A/A decisions (none should be "
                    "better or worse).")
    c.add_argument("scenario", help="a scenario TOML file")
    c.add_argument("--arm", help="the arm to calibrate (default: the scenario's first)")
    c.add_argument("--reps", type=int, default=5, help="runs of each copy (default 5)")
    c.add_argument("--out", help="results folder (default: results/calibrate-<arm>-<timestamp>)")
    c.add_argument("--jobs", default="1", help="guests at once (default 1: isolated runs)")
    c.add_argument("--resume", action="store_true", help="skip runs already complete in --out")
    c.add_argument("--order-seed", type=int, metavar="N", help="seed of the random order of the copies")
    c.add_argument("--write-floors", metavar="FILE",
                   help="also write the floors there (e.g. harness/results/floors.json, to commit)")
    c.set_defaults(func=_cmd_calibrate)
