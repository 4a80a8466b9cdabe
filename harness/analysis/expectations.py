"""Expectations: what a scenario promises about its results, checked after every run.

A nightly job needs a yes/no per promise, not a table someone has to read. A scenario
states its promises as ``[[expect]]`` tables; ``balloon-harness check`` evaluates them
(:mod:`harness.analysis.check`). Two forms:

Absolute: the arm's figure for a step against a number. The figure is the median over the
repetitions (``reached_fraction``: the fraction of runs that reached the target)::

    [[expect]]
    arm = "thp-order"
    step = "balloon 624"
    metric = "reached_fraction"
    op = ">="
    value = 0.8

Relative: the arm against another arm (``than``), same step and metric::

    [[expect]]
    arm = "thp-order"
    step = "balloon 624"
    metric = "thp_lost_per_ballooned_mib"
    op = "<"
    than = "baseline"

Each operator is a claim about the shift of this arm against ``than`` (the Hodges-Lehmann
shift, or for ``reached_fraction`` the difference of the fractions) that the runs must show
at ``alpha``, with the test ``compare`` uses for that kind of figure
(:mod:`harness.analysis.decide`) and the figure's effect floor F:

* ``<`` / ``>``: superiority: the difference is significant (two-sided) and the shift is at
  least F in that direction;
* ``<=`` / ``>=``: non-inferiority: the interval's bound is within F of no change (``<=``:
  the interval's upper end is below +F: "not worse by F or more");
* ``==``: equivalence: the whole interval lies within -F..+F;
* ``!=``: a significant difference of at least F.

An expectation fails only when the runs show the opposite claim (``<``'s opposite is
``>=``, ``<=``'s is ``>``, ``==``'s is ``!=``), and is undecided when they show neither (a
median that is lower by luck with three runs each does not count either way). ``test =
"none"`` compares the medians alone, for scenarios with a single repetition where no test
can decide.

A scenario also names the figures that decide a comparison (top-level ``primary = [...]``,
:func:`parse_primary`); by default THP lost per returned MiB, reached and returned fraction.

Checked before anything boots like the rest of the scenario: a wrong arm, step, metric,
operator or key is refused as ``{file}: expect[i].{key}: {reason}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.analysis.defaults import DEFAULT_ALPHA, alpha_problem
from harness.errors import ConfigError
from harness.results import layout
from harness.results.folder import ResultsFolder
from harness.results.metrics import DEFAULT_PRIMARY, METRICS, NUMERIC_COLUMNS

OPS = ("<", "<=", ">", ">=", "==", "!=")
TESTS = ("mannwhitney", "none")
KEYS = ("arm", "step", "metric", "op", "value", "than", "test", "alpha", "margin", "label")
EXPECT_METRICS = (*NUMERIC_COLUMNS, "reached_fraction")


@dataclass(frozen=True)
class Expectation:
    """One promise about one arm, step and metric (absolute: ``value``; relative: ``than``)."""

    arm: str
    step: str
    metric: str
    op: str
    value: Optional[float] = None
    than: Optional[str] = None
    test: str = "mannwhitney"
    alpha: float = DEFAULT_ALPHA
    label: str = ""
    # The smallest difference that matters for this claim (equivalence, non-inferiority,
    # superiority): the figure's effect floor unless the scenario states its own. An
    # equivalence margin is a statement about what does not matter, so the scenario's author
    # may want it wider than the noise floor a calibration measured.
    margin: Optional[float] = None

    @property
    def relative(self) -> bool:
        return self.than is not None

    @property
    def name(self) -> str:
        """The label, or a description built from the fields."""
        if self.label:
            return self.label
        rhs = self.than if self.relative else f"{self.value:g}"
        return f"{self.arm} {self.step}: {self.metric} {self.op} {rhs}"


def holds(op: str, a: float, b: float) -> bool:
    """``a op b``; False when either side is NaN."""
    if math.isnan(a) or math.isnan(b):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_expectations(path: str | Path, raw_list: Any, arm_names: Sequence[str],
                       step_labels: Sequence[str]) -> tuple[Expectation, ...]:
    """Validate a scenario's ``expect`` list; raises :class:`ConfigError` naming file, key, reason."""
    if raw_list is None:
        return ()
    if not isinstance(raw_list, list):
        raise ConfigError(f"{path}: expect: must be a list of tables ([[expect]]), "
                          f"got {type(raw_list).__name__}")
    arms, steps = list(arm_names), list(step_labels)
    out = []
    for i, raw in enumerate(raw_list):
        where = f"expect[{i}]"

        def fail(key: str, reason: str, _where: str = where):
            raise ConfigError(f"{path}: {_where}.{key}: {reason}" if key else f"{path}: {_where}: {reason}")

        if not isinstance(raw, dict):
            fail("", f"must be a table, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            fail(unknown[0], f"unknown key (known: {', '.join(KEYS)})")
        for key in ("arm", "step", "metric", "op"):
            if key not in raw:
                fail(key, "required key is missing")
            if not isinstance(raw[key], str):
                fail(key, f"must be str, got {type(raw[key]).__name__} {raw[key]!r}")
        if raw["arm"] not in arms:
            fail("arm", f"no arm named {raw['arm']!r} (arms: {', '.join(arms)})")
        if raw["step"] not in steps:
            fail("step", f"no step labelled {raw['step']!r} (steps: {', '.join(steps)})")
        if raw["metric"] not in EXPECT_METRICS:
            hint = " (not a number)" if raw["metric"] in METRICS else ""
            fail("metric", f"unknown metric {raw['metric']!r}{hint}; one of the numeric summary "
                           f"columns or reached_fraction")
        if raw["op"] not in OPS:
            fail("op", f"must be one of {' '.join(OPS)}, got {raw['op']!r}")
        has_value, has_than = "value" in raw, "than" in raw
        if has_value == has_than:
            fail("value", "give exactly one of value (a number) or than (another arm)")
        value = raw.get("value")
        if has_value and not _number(value):
            fail("value", f"must be a number, got {type(value).__name__} {value!r}")
        than = raw.get("than")
        if has_than:
            if not isinstance(than, str):
                fail("than", f"must be str, got {type(than).__name__} {than!r}")
            if than not in arms:
                fail("than", f"no arm named {than!r} (arms: {', '.join(arms)})")
            if than == raw["arm"]:
                fail("than", "must name another arm than arm")
        test = raw.get("test", "mannwhitney")
        if test not in TESTS:
            fail("test", f"must be one of {', '.join(TESTS)}, got {test!r}")
        alpha = raw.get("alpha", DEFAULT_ALPHA)
        problem = alpha_problem(alpha)
        if problem:
            fail("alpha", problem)
        label = raw.get("label", "")
        if not isinstance(label, str):
            fail("label", f"must be str, got {type(label).__name__} {label!r}")
        margin = raw.get("margin")
        if margin is not None:
            if not has_than:
                fail("margin", "only a relative expectation (than = ...) has a margin")
            if not _number(margin) or not 0 <= margin < math.inf:
                fail("margin", f"must be a number >= 0 in the figure's unit, got {margin!r}")
        out.append(Expectation(arm=raw["arm"], step=raw["step"], metric=raw["metric"], op=raw["op"],
                               value=float(value) if has_value else None, than=than if has_than else None,
                               test=test, alpha=float(alpha), label=label,
                               margin=float(margin) if margin is not None else None))
    return tuple(out)


def expectations_of(folder: ResultsFolder) -> tuple[Expectation, ...]:
    """The ``[[expect]]`` tables of the folder's scenario (read without run-time path checks)."""
    info = folder.scenario
    raw = info.raw.get("expect", [])
    if not raw:
        return ()
    steps = list(dict.fromkeys([*info.steps, *(folder.summary["step"] if not folder.summary.empty else [])]))
    path = info.path or (folder.path / layout.METADATA)
    return parse_expectations(path, raw, info.arms, steps)


def figure_name(metric: str) -> str:
    """The name a decision uses for a figure: ``reached`` (a yes/no per run) as reached_fraction."""
    return "reached_fraction" if metric == "reached" else metric


def parse_primary(path: str | Path, raw: Any) -> tuple[str, ...]:
    """Validate a scenario's top-level ``primary`` (the figures that decide a comparison);
    the default (:data:`harness.results.metrics.DEFAULT_PRIMARY`) when it is absent."""
    if raw is None:
        return tuple(figure_name(m) for m in DEFAULT_PRIMARY)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: primary: must be a non-empty list of figure names, got {raw!r}")
    out: list[str] = []
    for m in raw:
        if not isinstance(m, str) or figure_name(m) not in EXPECT_METRICS:
            hint = " (not a number)" if isinstance(m, str) and m in METRICS else ""
            raise ConfigError(f"{path}: primary: unknown figure {m!r}{hint}; one of the numeric summary "
                              f"columns or reached_fraction")
        if figure_name(m) in out:
            raise ConfigError(f"{path}: primary: {m!r} is named twice")
        out.append(figure_name(m))
    return tuple(out)


def primary_of(folder: ResultsFolder) -> tuple[str, ...]:
    """The figures that decide a comparison of ``folder``'s runs: its scenario's ``primary``,
    else the default."""
    path = folder.scenario.path or (folder.path / layout.METADATA)
    return parse_primary(path, folder.scenario.raw.get("primary"))
