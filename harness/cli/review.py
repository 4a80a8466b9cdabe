"""``balloon-harness review``: run the review's scenarios into one folder, then write the report.

Running reuses :func:`harness.cli.runs.execute` scenario by scenario with ``--resume``
semantics: the finished runs of ``DIR/<scenario>``
are skipped, so ``review --out DIR`` completes an interrupted review, and an earlier
results folder copied to ``DIR/review-designs`` is reused rather than rerun.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.cli import runs
from harness.errors import HarnessError
from harness.resources import scenario_path
from harness.review.tables import REVIEW_SCENARIOS

RESULTS = Path("results")


def register(subparsers: Any) -> None:
    """Add ``review`` to the ``balloon-harness`` subcommands."""
    r = subparsers.add_parser(
        "review", help="run the review's scenarios and answer the RFC's review point by point",
        description="Runs " + ", ".join(REVIEW_SCENARIOS) + " into DIR/<scenario> (finished runs are "
                    "skipped), then writes DIR/review.md, DIR/review.html and DIR/plots/*.png: each review "
                    "point's question, tables, plots and a one-line answer computed from the data.")
    r.add_argument("--out", help="review folder (default: results/review-<timestamp>)")
    r.add_argument("--reps", type=int, help="repetitions of every arm (overrides the scenarios')")
    r.add_argument("--jobs", default="1", help="guests at once: N or 'auto' (cores / vCPUs); default 1")
    r.add_argument("--report-only", action="store_true", help="run nothing: write the report from DIR")
    r.add_argument("--scenario", nargs="+", metavar="NAME",
                   help="run only these of the review's scenarios (file name or stem); the report reads all")
    r.set_defaults(func=_cmd_review)


def selected(names: list[str] | None) -> list[str]:
    """The scenario file names to run; unknown names are refused (a typo must not run nothing)."""
    if not names:
        return list(REVIEW_SCENARIOS)
    wanted = [n if n.endswith(".toml") else f"{n}.toml" for n in names]
    unknown = [n for n in wanted if n not in REVIEW_SCENARIOS]
    if unknown:
        raise HarnessError(f"--scenario {', '.join(unknown)}: the review runs {', '.join(REVIEW_SCENARIOS)}")
    return wanted


def run_request(path: Path, out: Path, args: argparse.Namespace) -> runs.RunRequest:
    """``run --resume`` of one review scenario into ``out``, with the review's --reps and --jobs."""
    return runs.RunRequest(scenario=path, out=out, jobs=args.jobs, reps=args.reps, resume=True)


def run_scenarios(out: Path, args: argparse.Namespace) -> int:
    """Run each selected scenario into ``out/<stem>``; the worst exit code.

    A scenario that fails (runs that failed, a build error) does not stop the others: its
    finished runs still go into the report, which says how many are missing.
    """
    code = 0
    for name in selected(args.scenario):
        path = scenario_path(name)
        if not path.is_file():
            print(f"balloon-harness: review: {name} is not shipped with this harness; skipped", file=sys.stderr)
            continue
        folder = out / Path(name).stem
        print(f"review: {name} -> {folder}", file=sys.stderr)
        try:
            rc = runs.execute(run_request(path, folder, args))
        except HarnessError as e:
            print(f"balloon-harness: error: {name}: {e}", file=sys.stderr)
            rc = 1
        code = max(code, rc)
    return code


def _cmd_review(args: argparse.Namespace) -> int:
    from harness.review.document import write_review
    out = Path(args.out) if args.out else RESULTS / f"review-{time.strftime('%Y%m%d-%H%M%S')}"
    code = 0
    if not args.report_only:
        code = run_scenarios(out, args)
    elif not out.is_dir():
        raise HarnessError(f"{out}: no such review folder (--report-only reads an existing one)")
    review = write_review(out)
    print(f"review: {review.markdown}")
    print(f"review: {review.html}")
    for s in review.sections:
        print(f"{s.point.title}: {s.answer}")
    return code
