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

Checked before anything boots like the rest of the scenario, by the same schema
(:class:`harness.results.scenario_schema.Expectation`, once): a wrong arm, step, metric,
operator or key is refused as ``{file}: expect[i].{key}: {reason}``. A results folder's
expectations are its recorded scenario's, already checked (:func:`expectations_of`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from harness.errors import ConfigError
from harness.results import scenario_schema as schema
from harness.results.folder import ResultsFolder
from harness.results.scenario_schema import (  # noqa: F401  (the names the analysis uses)
    EXPECT_METRICS,
    OPS,
    TESTS,
    Expectation,
    figure_name,
)

KEYS = tuple(Expectation.model_fields)


def holds(op: str, a: float, b: float) -> bool:
    """``a op b``; False when either side is NaN."""
    if math.isnan(a) or math.isnan(b):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


_LIST = TypeAdapter(tuple[Expectation, ...])


def parse_expectations(path: str | Path, raw_list: Any, arm_names: Sequence[str],
                       step_labels: Sequence[str]) -> tuple[Expectation, ...]:
    """Validate a list of ``[[expect]]`` tables alone (the scenario's are checked with it);
    raises :class:`ConfigError` naming file, key, reason."""
    if raw_list is None:
        return ()
    if not isinstance(raw_list, list):
        raise ConfigError(f"{path}: expect: must be a list of tables ([[expect]]), "
                          f"got {type(raw_list).__name__}")
    try:
        out = _LIST.validate_python(raw_list, strict=False)
    except ValidationError as e:
        raise ConfigError(schema.refusal(path, e).replace(f"{path}: [", f"{path}: expect[", 1)) from None
    try:
        schema.check_expectations(out, list(arm_names), list(step_labels))
    except PydanticCustomError as e:
        raise ConfigError(f"{path}: expect{(e.context or {}).get('key', '')}: {e.message()}") from None
    return out


def expectations_of(folder: ResultsFolder) -> tuple[Expectation, ...]:
    """The ``[[expect]]`` tables of the folder's scenario, as its record holds them (checked
    when the scenario loaded, or when an old folder's scenario.toml was read)."""
    return folder.scenario.expectations


def parse_primary(path: str | Path, raw: Any) -> tuple[str, ...]:
    """Validate a scenario's top-level ``primary`` (the figures that decide a comparison);
    the default (:data:`harness.results.metrics.DEFAULT_PRIMARY`) when it is absent."""
    try:
        return schema._primary(raw)
    except PydanticCustomError as e:
        raise ConfigError(f"{path}: primary: {e.message()}") from None


def primary_of(folder: ResultsFolder) -> tuple[str, ...]:
    """The figures that decide a comparison of ``folder``'s runs: its scenario's ``primary``,
    else the default."""
    return folder.scenario.primary
