"""Adaptive repetitions (``run --until-decided``): more runs only where a comparison is
still open.

The questions are the scenario's relative ``[[expect]]`` tables (arm against ``than``,
step, metric, alpha) or, without any, each arm against the first on every resize step
for the THP ratio. After each round, every question is decided through
:func:`harness.analysis.decide.decide`; the arms of the questions that are still
``undecided`` or ``n too small`` get one more repetition each (arms alternate: round k
runs repetition k of every open arm), until every question is decided or an arm has had
``max_reps`` attempts. A question with no data on a side (e.g. a ratio that is NaN in every
run) is not open: more runs of the same kind will not give it data.

Why: with a fixed count, 3 repetitions cannot decide anything at alpha 0.05 and 10 spend
runs on comparisons that were clear after 4. The runs are ordinary runs in the same
folder (``arm-r<rep>``), so ``report``, ``compare`` and ``check`` read them as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.analysis.decide import N_TOO_SMALL, UNDECIDED, Decision, decide
from harness.analysis.defaults import DEFAULT_ALPHA, DEFAULT_MAX_REPS
from harness.analysis.expectations import expectations_of
from harness.analysis.groups import run_values
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

    def decide(self, folder: ResultsFolder) -> Decision:
        s = folder.summary
        if s.empty:
            return decide(self.metric, np.array([]), np.array([]), self.alpha)
        rows = s[s["step"] == self.step]
        mine = run_values(rows[rows["arm"] == self.arm], self.metric)
        theirs = run_values(rows[rows["arm"] == self.other], self.metric)
        return decide(self.metric, theirs, mine, self.alpha)

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


@dataclass
class Round:
    decisions: list[tuple[Question, Decision]]
    ran: dict[str, int]                     # arm -> the repetition run after this round (empty: stop)


@dataclass
class Adaptive:
    """What ``--until-decided`` did: its rounds, and the runs it spent per arm."""

    rounds: list[Round] = field(default_factory=list)
    spent: dict[str, int] = field(default_factory=dict)     # arm -> repetitions attempted at the end
    max_reps: int = DEFAULT_MAX_REPS

    @property
    def final(self) -> list[tuple[Question, Decision]]:
        return self.rounds[-1].decisions if self.rounds else []

    @property
    def open(self) -> list[tuple[Question, Decision]]:
        return [(q, d) for q, d in self.final if d.verdict in OPEN]

    def summary(self) -> str:
        """Lines for the terminal: every question's decision, then what was spent."""
        runs = sum(self.spent.values())
        fixed = self.max_reps * len(self.spent)
        lines = [f"until decided: {q}: {d.sentence()}" for q, d in self.final]
        lines.append(f"until decided: {runs} run(s) spent ({', '.join(f'{a} {n}' for a, n in self.spent.items())}) "
                     f"against {fixed} for --reps {self.max_reps} on every arm; "
                     f"{len(self.final) - len(self.open)}/{len(self.final)} question(s) decided"
                     + (f", open at the limit: {', '.join(str(q) for q, _ in self.open)}" if self.open else ""))
        return "\n".join(lines)


def until_decided(path: Path, run_more: Callable[[dict[str, int]], None], max_reps: int = DEFAULT_MAX_REPS,
                  log: Callable[[str], None] = lambda _: None) -> Adaptive:
    """Decide, run one more repetition of every open arm (``run_more({arm: rep})``), repeat."""
    result = Adaptive(max_reps=max_reps)
    while True:
        folder = open_folder(path)
        decisions = [(q, q.decide(folder)) for q in questions(folder)]
        attempted = attempted_reps(path)
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
        run_more(more)
