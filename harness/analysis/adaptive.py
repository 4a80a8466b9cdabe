"""Adaptive repetitions (``run --until-decided``): more runs only where a comparison is
still open, with a stopping rule whose false-alarm rate stays at alpha.

The questions are the scenario's relative ``[[expect]]`` tables (arm against ``than``,
step, metric, alpha) or, without any, each arm against the first on every resize step
for the THP ratio. After each round, every open question is decided through
:func:`harness.analysis.decide.decide` at its boundary's threshold
(:mod:`harness.analysis.sequential`); the arms of the questions that are still
``undecided`` or ``n too small`` get one more repetition each (arms alternate: round k
runs repetition k of every open arm), until every question is decided or an arm has had
``max_reps`` attempts. A question with no data on a side (e.g. a ratio that is NaN in every
run) is not open: more runs of the same kind will not give it data.

Error control: looking after every round at the same alpha and stopping at the first
"yes" called equal arms different in 10.7 % (max 10) to 15.0 % (max 20) of A/A trials.
Now (1) the family's alpha is split between the questions (Bonferroni: 3 arms, 2 questions,
0.025 each), (2) each question's share is spread over its looks by a Pocock-type boundary
fixed before the first look (a constant p threshold, simulated once under the null for
looks at n = first..max_reps runs per arm), and (3) a decided question is frozen: its
decision is the one made at the look that decided it, never re-tested.

Why: with a fixed count, 3 repetitions cannot decide anything at alpha 0.05 and 10 spend
runs on comparisons that were clear after 5. The runs are ordinary runs in the same
folder (``arm-r<rep>``), so ``report``, ``compare`` and ``check`` read them as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.analysis.decide import N_TOO_SMALL, UNDECIDED, Decision, decide
from harness.analysis.defaults import DEFAULT_ALPHA, DEFAULT_MAX_REPS, MAX_REPS_LIMIT
from harness.analysis.expectations import expectations_of
from harness.analysis.groups import run_values
from harness.analysis.sequential import Boundary, family_share, pocock_boundary
from harness.errors import HarnessError
from harness.results import layout
from harness.results.folder import ResultsFolder, open_folder
from harness.results.metrics import MOVE_KINDS

DEFAULT_QUESTION_METRIC = "thp_lost_per_ballooned_mib"
OPEN = (UNDECIDED, N_TOO_SMALL)


@dataclass(frozen=True)
class Question:
    """One comparison the runs must decide: ``arm`` against ``other`` at ``step`` on ``metric``."""

    arm: str
    other: str
    step: str
    metric: str
    alpha: float = DEFAULT_ALPHA

    def values(self, folder: ResultsFolder) -> tuple[np.ndarray, np.ndarray]:
        """(other's runs, arm's runs) of the metric at the step."""
        s = folder.summary
        if s.empty:
            return np.array([]), np.array([])
        rows = s[s["step"] == self.step]
        return (run_values(rows[rows["arm"] == self.other], self.metric),
                run_values(rows[rows["arm"] == self.arm], self.metric))

    def decide(self, folder: ResultsFolder, alpha: float | None = None) -> Decision:
        """The decision at ``alpha`` (default: the question's own, a single fixed look)."""
        theirs, mine = self.values(folder)
        return decide(self.metric, theirs, mine, alpha=self.alpha if alpha is None else alpha)

    def __str__(self) -> str:
        return f"{self.arm} vs {self.other} at {self.step!r}: {self.metric}"


def questions(folder: ResultsFolder) -> list[Question]:
    """The folder scenario's relative expectations, else each arm against the first on every
    resize step for the THP ratio."""
    relative = [e for e in expectations_of(folder) if e.relative and e.test != "none"]
    if relative:
        return [Question(e.arm, e.than or "", e.step, e.metric, e.alpha) for e in relative]
    arms, steps = folder.order()
    s = folder.summary
    moves = set(s[s["kind"].isin(MOVE_KINDS)]["step"]) if not s.empty and "kind" in s.columns else set()
    return [Question(a, arms[0], st, DEFAULT_QUESTION_METRIC) for st in steps if st in moves for a in arms[1:]]


def attempted_reps(path: Path) -> dict[str, int]:
    """arm -> the highest repetition attempted (finished or failed) in results folder ``path``."""
    out: dict[str, int] = {}
    runs = layout.runs_dir(path)
    for d in runs.iterdir() if runs.is_dir() else ():
        parsed = layout.parse_run_id(d.name)
        if parsed and d.is_dir():
            out[parsed[0]] = max(out.get(parsed[0], 0), parsed[1])
    return out


def attempted_in(folder: ResultsFolder) -> dict[str, int]:
    """arm -> the highest repetition finished or failed in ``folder`` (as :func:`attempted_reps`,
    from the opened folder)."""
    out: dict[str, int] = {}
    ids = [str(r.get("run_id", "")) for r in folder.runs] + list(folder.failed)
    for parsed in (layout.parse_run_id(i) for i in ids):
        if parsed:
            out[parsed[0]] = max(out.get(parsed[0], 0), parsed[1])
    return out


@dataclass
class Round:
    decisions: list[tuple[Question, Decision]]
    ran: dict[str, int]                     # arm -> the repetition run after this round (empty: stop)


@dataclass
class Adaptive:
    """What ``--until-decided`` did: its rounds, the boundary of each question, the runs spent."""

    rounds: list[Round] = field(default_factory=list)
    spent: dict[str, int] = field(default_factory=dict)     # arm -> repetitions attempted at the end
    max_reps: int = DEFAULT_MAX_REPS
    boundaries: dict[Question, Boundary] = field(default_factory=dict)
    decided_at: dict[Question, int] = field(default_factory=dict)    # question -> runs per arm when frozen

    @property
    def final(self) -> list[tuple[Question, Decision]]:
        return self.rounds[-1].decisions if self.rounds else []

    @property
    def open(self) -> list[tuple[Question, Decision]]:
        return [(q, d) for q, d in self.final if d.verdict in OPEN]

    def boundary_text(self) -> str:
        """The boundary each question was decided against (one line per distinct boundary)."""
        lines: dict[str, list[str]] = {}
        for q, b in self.boundaries.items():
            lines.setdefault(b.describe(), []).append(str(q))
        n = len(self.boundaries)
        head = (f"until decided: stopping boundary: family alpha split over {n} question(s) (Bonferroni), "
                f"each spread over its looks; a decided question is frozen")
        return "\n".join([head, *[f"until decided:   {text} [{'; '.join(qs)}]" for text, qs in lines.items()]])

    def summary(self) -> str:
        """Lines for the terminal: the boundary, every question's decision, then what was spent."""
        runs = sum(self.spent.values())
        fixed = self.max_reps * len(self.spent)
        lines = [self.boundary_text()] if self.boundaries else []
        for q, d in self.final:
            at = f" (frozen at n = {self.decided_at[q]} per arm, p < {d.alpha:.3g})" if q in self.decided_at else ""
            lines.append(f"until decided: {q}: {d.sentence()}{at}")
        lines.append(f"until decided: {runs} run(s) spent ({', '.join(f'{a} {n}' for a, n in self.spent.items())}) "
                     f"against {fixed} for --reps {self.max_reps} on every arm; "
                     f"{len(self.final) - len(self.open)}/{len(self.final)} question(s) decided"
                     + (f", open at the limit: {', '.join(str(q) for q, _ in self.open)}" if self.open else ""))
        return "\n".join(lines)


def check_max_reps(max_reps: int) -> None:
    """--max-reps within [2, MAX_REPS_LIMIT]: a rank test needs two runs a side; past the limit
    a night on this kind of host does not hold the runs (30 per arm at 30-40 s under TCG is
    15-20 min per arm), and a question still open there needs a better-designed experiment
    (fewer noisy steps, a larger effect) more than more runs."""
    if not isinstance(max_reps, int) or not 2 <= max_reps <= MAX_REPS_LIMIT:
        raise HarnessError(f"--max-reps {max_reps}: between 2 (a rank test needs two runs a side) and "
                           f"{MAX_REPS_LIMIT} (a night's runs per arm; the boundary is simulated up to it)")


def boundaries_for(qs: list[Question], folder: ResultsFolder, max_reps: int) -> dict[Question, Boundary]:
    """Each question's boundary, fixed at the first look: its share of alpha, looks from the
    runs per arm it has now (the smaller side) to ``max_reps``."""
    out = {}
    for q in qs:
        theirs, mine = q.values(folder)
        first = min(theirs.size, mine.size)
        out[q] = pocock_boundary(family_share(q.alpha, len(qs)), max(2, first), max_reps)
    return out


def until_decided(path: Path, run_more: Callable[[dict[str, int]], None], max_reps: int = DEFAULT_MAX_REPS,
                  log: Callable[[str], None] = lambda _: None,
                  reader: Callable[[Path], ResultsFolder] = open_folder) -> Adaptive:
    """Decide, run one more repetition of every open arm (``run_more({arm: rep})``), repeat.

    ``reader`` opens the folder after each round (benchmarks/calibration.py hands it folders
    held in memory, to run thousands of trials). Raises :class:`HarnessError` when a round adds
    no finished run (every run it asked for
    failed to build or boot): asking again would loop on the same failure.
    """
    check_max_reps(max_reps)
    result = Adaptive(max_reps=max_reps)
    frozen: dict[Question, Decision] = {}
    qs: list[Question] | None = None
    while True:
        folder = reader(path)
        if qs is None:              # the questions of the first look: fixed, as their boundaries are
            qs = questions(folder)
        if not result.boundaries and qs:
            result.boundaries = boundaries_for(qs, folder, max_reps)
            log(result.boundary_text())
        decisions = []
        for q in qs:
            if q not in frozen:
                b = result.boundaries.get(q) or boundaries_for([q], folder, max_reps)[q]
                result.boundaries.setdefault(q, b)
                theirs, mine = q.values(folder)
                d = decide(q.metric, theirs, mine, alpha=b.threshold_at(min(theirs.size, mine.size)))
                if d.decided:
                    frozen[q] = d
                    result.decided_at[q] = min(theirs.size, mine.size)
            decisions.append((q, frozen.get(q, d)))
        attempted = attempted_in(folder)
        open_arms = list(dict.fromkeys(a for q, d in decisions if d.verdict in OPEN for a in (q.arm, q.other)))
        more = {a: attempted.get(a, 0) + 1 for a in open_arms if attempted.get(a, 0) < max_reps}
        result.rounds.append(Round(decisions, more))
        if not more:
            arms = folder.arm_order()
            result.spent = dict(sorted(attempted.items(), key=lambda kv: (arms.index(kv[0]) if kv[0] in arms
                                                                          else len(arms), kv[0])))
            return result
        log(f"until decided: {len(open_arms)} arm(s) still open ("
            + "; ".join(f"{q}: {d.verdict_text()}" for q, d in decisions if d.verdict in OPEN)
            + f"): repetition {', '.join(f'{a} r{n}' for a, n in more.items())}")
        before = len(folder.runs)
        run_more(more)
        if len(reader(path).runs) <= before:
            asked = ", ".join(layout.run_id(a, n) for a, n in more.items())
            raise HarnessError(f"--until-decided: round {len(result.rounds)} asked for {asked} and none finished "
                               f"(see {layout.runs_dir(path)}/<run>/error.txt): stopping rather than asking again")
