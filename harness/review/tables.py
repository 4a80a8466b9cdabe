"""What the review's tables are made of: the scenarios it runs, the columns it derives (the
summary columns' headers are the metrics' own) and the :class:`Table` a point reads. Plain
data, read by :mod:`.evidence`, :mod:`.points` and :mod:`.document`.
"""

from __future__ import annotations

from dataclasses import dataclass

# The scenarios the review runs, in order (shipped scenario files, see harness.resources).
REVIEW_SCENARIOS = ["review-designs.toml", "mechanisms.toml", "mechanisms-phases.toml"]
DESIGNS = "review-designs"
MECHANISMS = "mechanisms"
PHASES = "mechanisms-phases"
# A pseudo step: one row per run with the sums of its steps (footprint = integral over the run).
WHOLE_RUN = "whole run"
# The step whose host THP a run's later steps are compared with (the workload filled memory).
FILL_STEP = "usemem"
DAVID = "David Hildenbrand, review of RFC v1 (12 Mar 2020)"


@dataclass(frozen=True)
class Column:
    """A column the review derives itself (not a summary column): its table header (units
    included), unit and meaning. Summary columns take all three from their one declaration,
    :data:`harness.results.metrics.METRICS` (``header``, ``unit``, ``meaning``)."""

    header: str
    unit: str = ""
    meaning: str = ""


DERIVED: dict[str, Column] = {
    "thp_back_fraction": Column(
        f"THP vs {FILL_STEP}", "ratio",
        f"QEMU AnonHugePages after the step / after the run's '{FILL_STEP}' step: 1.0 = the host has all "
        "its huge pages back"),
    "thp_regained_kib": Column("THP regained kB", "kB",
                               "qemu_ahp_after - qemu_ahp_before over the step (negative: huge pages lost)"),
}


@dataclass(frozen=True)
class Table:
    """One table of a section: the step of one scenario folder, the arms and the columns."""

    scenario: str                  # folder stem under the review folder, e.g. "review-designs"
    step: str                      # step label, or WHOLE_RUN for per-run sums
    arms: tuple[str, ...]
    columns: tuple[str, ...]
    caption: str = ""
