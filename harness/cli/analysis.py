"""The analysis subcommands: ``compare``, ``check``, ``history``, ``merge``, ``cover-letter``, and the options
``run``/``reproduce`` take to check and record a run as soon as it ends (``--check``,
``--junit``, ``--markdown``, ``--history``).

``harness.cli.main`` calls :func:`register`; ``run``/``reproduce`` add
:func:`add_run_options` and end with :func:`after_run`, given an :class:`AfterRun` request.

Exit codes follow ``check``: 0 all expectations hold, 1 one failed (or a regression
against the history), 2 infrastructure (runs that failed to produce data; for ``check``
also a folder that is not results or a history that is not one).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.analysis.defaults import ALPHA_MAX, COVER_WIDTH, DEFAULT_ALPHA, DEFAULT_LAST, EXIT_INFRA
from harness.errors import HarnessError

# The analysis modules import pandas and scipy: imported inside the commands (deferred
# heavy dependencies), so that `balloon-harness --help` and `doctor` do not pay for them.


@dataclass(frozen=True)
class AfterRun:
    """What ``run``/``reproduce`` do with the results folder once the runs end."""

    check: bool = False
    junit: Optional[Path] = None
    markdown: Optional[Path] = None
    history: Optional[Path] = None
    last: int = DEFAULT_LAST
    strict: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AfterRun:
        strict = bool(getattr(args, "strict", False))
        return cls(check=bool(args.check or args.junit or args.markdown or strict),
                   junit=Path(args.junit) if args.junit else None,
                   markdown=Path(args.markdown) if args.markdown else None,
                   history=Path(args.history) if args.history else None, last=args.last, strict=strict)


def _positive_last(value: int) -> int:
    if value < 1:
        raise HarnessError(f"--last must be at least 1 night, got {value}")
    return value


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare, format_comparison
    print(format_comparison(compare(args.a, args.b, alpha=args.alpha, force=args.force)))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Any refusal here (not a results folder, bad history, bad expectation) is exit 2:
    CI must not mistake a broken pipeline for a failed expectation (exit 1)."""
    from harness.analysis.check import check_results
    against = args.against_history or args.history
    try:
        if against is None and args.last is not None:
            raise HarnessError("--last needs --against-history DIR (or --history DIR)")
        last = _positive_last(args.last if args.last is not None else DEFAULT_LAST)
        code = check_results(Path(args.dir), junit=args.junit, markdown=args.markdown,
                             against_history=against, last=last, alpha=args.alpha, strict=args.strict)
        if args.history:
            code = max(code, _append(Path(args.dir), Path(args.history)))
        return code
    except HarnessError as e:
        print(f"balloon-harness: error: {e}", file=sys.stderr)
        return EXIT_INFRA


def _append(out: Path, history: Path) -> int:
    """Append ``out`` to the history; 0, or 2 (infrastructure) with one line when refused."""
    from harness.analysis.history_store import append_history
    try:
        added = append_history(out, history)
    except HarnessError as e:
        print(f"balloon-harness: error: history: {e}", file=sys.stderr)
        return EXIT_INFRA
    print(f"history: {added.summary if added else 'nothing to append (no finished run)'}", file=sys.stderr)
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from harness.analysis.history import history_trend
    from harness.analysis.history_render import format_trend, plot_trend
    h = Path(args.dir)
    if not h.exists():
        raise HarnessError(f"{h}: no such history folder")
    trend = history_trend(h, scenario=args.scenario, metric=args.metric, arm=args.arm, step=args.step)
    png = plot_trend(trend, Path(args.png or (h / f"trend-{args.scenario or 'all'}-{args.metric}.png")))
    print(format_trend(trend, png))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from harness.analysis.groups import write_summary_stats
    from harness.results.folder import open_folder
    from harness.results.merge import merge_results
    out = merge_results(Path(args.out), [Path(d) for d in args.dirs], force=args.force)
    merged = open_folder(out)
    write_summary_stats(out, merged.summary, merged.scenario.arms, merged.scenario.steps)
    print(f"merged {len(args.dirs)} shard(s) into {out}: {len(merged.runs)} finished run(s)")
    return 0


def _cmd_cover_letter(args: argparse.Namespace) -> int:
    """The text is the library's (harness.analysis.cover_letter); here it is only written."""
    from harness.analysis.cover_letter import cover_letter
    from harness.files import atomic_write
    text = cover_letter(args.dirs, baselines=args.baseline or (), width=args.width, alpha=args.alpha)
    if args.out:
        atomic_write(Path(args.out), lambda p: p.write_text(text, encoding="ascii"))
        print(f"cover letter: {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers) -> None:
    """Add compare, check, history, merge and cover-letter to the ``balloon-harness`` subcommands."""
    c = subparsers.add_parser(
        "compare", help="compare two results folders, or two arms (DIR:arm), figure by figure",
        description="Median of A and B, change, shift with its interval, p-value and its adjustment for "
                    "every arm, step and headline figure; only the scenario's primary figures decide (Holm), the "
                    "others are described (Benjamini-Hochberg). Refuses different scenarios, builds or --jobs "
                    "unless --force.")
    c.add_argument("a", help="results folder, or DIR:arm")
    c.add_argument("b", help="results folder, or DIR:arm")
    c.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"significance level, in (0, {ALPHA_MAX:g}] (default {DEFAULT_ALPHA:g})")
    c.add_argument("--force", action="store_true", help="compare even different scenarios or builds")
    c.set_defaults(func=_cmd_compare)

    k = subparsers.add_parser(
        "check", help="judge a results folder against its scenario's [[expect]]; exit 0/1/2",
        description="Exit 0: every expectation holds; 1: one failed, or a headline figure is significantly "
                    "worse than the last nights (--against-history); 2: runs failed to produce data.")
    k.add_argument("dir", help="results folder")
    k.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    k.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (links to the plots)")
    k.add_argument("--against-history", metavar="DIR", help="also compare with this history folder")
    k.add_argument("--history", metavar="DIR",
                   help="compare with this history folder (unless --against-history), then append the results to it")
    k.add_argument("--last", type=int, metavar="N", help=f"nights of history to pool (default {DEFAULT_LAST})")
    k.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"significance level against history, in (0, {ALPHA_MAX:g}] (default {DEFAULT_ALPHA:g})")
    k.add_argument("--strict", action="store_true",
                   help="an expectation the runs cannot decide (n too small, interval too wide) fails (exit 1)")
    k.set_defaults(func=_cmd_check)

    h = subparsers.add_parser("history", help="trend of a figure over the nights of a history folder",
                              description="One line per night: median, IQR, min..max, n, and which build "
                                          "hashes changed from the night before; writes a PNG.")
    h.add_argument("dir", help="history folder (written by run --history)")
    h.add_argument("--scenario", help="scenario name (needed when the history holds several)")
    h.add_argument("--metric", default="thp_lost_per_ballooned_mib", help="summary column or reached_fraction")
    h.add_argument("--arm", help="one arm only")
    h.add_argument("--step", help="one step only (default: the balloon steps)")
    h.add_argument("--png", metavar="FILE", help="trend plot (default: DIR/trend-<scenario>-<metric>.png)")
    h.set_defaults(func=_cmd_history)

    m = subparsers.add_parser("merge", help="combine shard results folders into one",
                              description="Refuses shards of different scenarios or builds and a run "
                                          "present twice with different contents.")
    m.add_argument("out", help="new results folder")
    m.add_argument("dirs", nargs="+", metavar="DIR", help="shard results folders")
    m.add_argument("--force", action="store_true", help="merge even different scenarios or builds")
    m.set_defaults(func=_cmd_merge)

    cl = subparsers.add_parser(
        "cover-letter", help="the results section of a patch series' cover letter, from results folders",
        description="Plain ASCII within --width columns: per folder the scenario, its arms and the commands that "
                    "repeat it at the recorded harness commit; per stack a table of the headline figures (median "
                    "and spread, n, reached k/n, stalls, failed runs and OOM kills); each arm against its baseline "
                    "as `compare` decides; the scenario's claims as `check` judges them; stacks, host, and how "
                    "to reproduce. Several folders (one per stack, say) make one section.")
    cl.add_argument("dirs", nargs="+", metavar="RESULTS", help="results folders")
    cl.add_argument("--baseline", action="append", metavar="ARM",
                    help="the arm the others on its stack are decided against (repeat: one per stack; "
                         "default: each folder's first arm on each stack)")
    cl.add_argument("--out", metavar="FILE", help="write the text to FILE (default: standard output)")
    cl.add_argument("--width", type=int, default=COVER_WIDTH, metavar="N",
                    help=f"columns the text fits in (default {COVER_WIDTH}: a mail's quoted lines stay within 80)")
    cl.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                    help=f"significance level of the decisions, in (0, {ALPHA_MAX:g}] (default {DEFAULT_ALPHA:g})")
    cl.set_defaults(func=_cmd_cover_letter)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``run``/``reproduce`` options to check and record the results when the runs end."""
    parser.add_argument("--check", action="store_true",
                        help="judge the results against the scenario's [[expect]]; exit 0/1/2 like `check`")
    parser.add_argument("--junit", metavar="FILE", help="with --check: write a JUnit XML report (implies --check)")
    parser.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (implies --check)")
    parser.add_argument("--history", metavar="DIR",
                        help="append the results to this history folder (with --check: compare first)")
    parser.add_argument("--last", type=int, default=DEFAULT_LAST, metavar="N",
                        help=f"with --check --history: nights of history to compare with (default {DEFAULT_LAST})")
    parser.add_argument("--strict", action="store_true",
                        help="with --check (implied): an expectation the runs cannot decide fails (exit 1)")


def after_run(after: AfterRun, out: Path, rc: int) -> int:
    """Check and record a finished run; returns the command's exit code.

    Without --check: ``rc`` (1 when runs failed). With --check: 2 when runs failed
    (infrastructure), else check's 0 or 1. The history is appended after the check, so
    tonight's runs are not compared with themselves; a history folder that is refused
    makes it 2 with --check (infrastructure), else 1 like any other error.
    """
    check, history = after.check, after.history
    code = rc
    if check:
        from harness.analysis.check import check_results
        try:
            c = check_results(Path(out), junit=after.junit, markdown=after.markdown, against_history=history,
                              last=_positive_last(after.last), strict=after.strict)
        except HarnessError as e:
            print(f"balloon-harness: error: check: {e}", file=sys.stderr)
            c = EXIT_INFRA
        code = EXIT_INFRA if rc != 0 else c
    if history:
        appended = _append(Path(out), Path(history))
        if appended:
            code = EXIT_INFRA if check else (code or 1)
    return code
