"""The measurement's definitions on synthetic readings: no VM, no build."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from harness import metrics
from harness.metrics import HEADLINE, METRICS, SUMMARY_COLUMNS, summary_row


@dataclass
class Move:
    reached: bool
    outcome: str
    seconds: float


def reading(actual_mib: float, qemu_ahp_kib: float, rss_kib: float, host_ahp_kib: float = 0.0,
            split_pmd: float = 0.0, guest_anon_kib: float = 500_000.0) -> metrics.Reading:
    return {("balloon", "actual_mib"): actual_mib, ("qemu", "anon_huge_kib"): qemu_ahp_kib,
            ("qemu", "rss_kib"): rss_kib, ("host", "anon_huge_kib"): host_ahp_kib,
            ("host", "thp_split_pmd"): split_pmd, ("guest", "anon_kib"): guest_anon_kib}


IDENT = {"run_id": "a-r1", "arm": "a", "rep": 1, "step": "balloon 624"}


def test_balloon_step_arithmetic_and_units():
    before = reading(1024, 1_000_000, 1_100_000, host_ahp_kib=1_010_000, split_pmd=10)
    after = reading(624, 600_000, 700_000, host_ahp_kib=610_000, split_pmd=210)
    row = summary_row(IDENT, "balloon", 624, before, after, "tcg", 12.5, Move(True, "reached", 3.0))
    assert list(row) == SUMMARY_COLUMNS
    assert row["ballooned_mib"] == 400 and row["requested_mib"] == 400 and row["shrink_fraction"] == 1.0
    assert row["thp_lost_kib"] == 400_000
    # kB lost / 1024 = MiB lost, per MiB ballooned
    assert row["thp_lost_per_ballooned_mib"] == pytest.approx(400_000 / 1024 / 400)
    assert row["rss_freed_kib"] == 400_000
    assert row["thp_split_pmd_delta"] == 200
    assert row["reached"] is True and row["outcome"] == "reached" and row["settle_seconds"] == 3.0
    assert row["guest_anon_after_kib"] == 500_000 and row["accel"] == "tcg"


def test_nothing_ballooned_gives_nan_ratio_not_zero_or_infinity():
    before = reading(1024, 1_000_000, 1_100_000)
    after = reading(1024, 990_000, 1_100_000)
    row = summary_row(IDENT, "balloon", 624, before, after, "tcg", 1.0, Move(False, "settled", 10.0))
    assert row["ballooned_mib"] == 0
    assert math.isnan(row["thp_lost_per_ballooned_mib"])
    assert row["shrink_fraction"] == 0.0 and row["reached"] is False


def test_stopping_short_shows_in_shrink_fraction():
    # The RFC arm that stopped at 902 MiB for a 624 target: a fine-looking ratio, little memory back.
    row = summary_row(IDENT, "balloon", 624, reading(1024, 1_000_000, 1_100_000),
                      reading(902, 991_000, 1_092_000), "tcg", 30.0, Move(False, "settled", 20.0))
    assert row["shrink_fraction"] == pytest.approx(122 / 400)
    assert row["thp_lost_per_ballooned_mib"] < 0.1


def test_deflate_fraction_and_steps_without_a_target():
    row = summary_row(IDENT, "balloon", 1024, reading(600, 0, 0), reading(1024, 0, 0), "kvm", 1.0,
                      Move(True, "reached", 1.0))
    assert row["requested_mib"] == -424 and row["shrink_fraction"] == 1.0
    run = summary_row({**IDENT, "step": "usemem"}, "run", None, reading(1024, 0, 0), reading(1024, 0, 0),
                      "kvm", 5.0)
    assert math.isnan(run["target_mib"]) and math.isnan(run["shrink_fraction"])
    assert run["reached"] is None and math.isnan(run["settle_seconds"])


def test_missing_sources_are_nan():
    row = summary_row(IDENT, "measure", None, {}, {}, "tcg", 0.0)
    assert math.isnan(row["qemu_rss_before_kib"]) and math.isnan(row["thp_lost_per_ballooned_mib"])


def test_every_column_is_defined_and_headlines_say_which_way_is_better():
    assert len(set(SUMMARY_COLUMNS)) == len(SUMMARY_COLUMNS)
    for name in HEADLINE:
        assert METRICS[name].better in ("lower", "higher"), name
        assert METRICS[name].meaning
    for required in ("reached", "shrink_fraction", "rss_freed_kib", "thp_lost_per_ballooned_mib"):
        assert required in HEADLINE


def test_readme_documents_every_summary_column():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [c for c in SUMMARY_COLUMNS if f"`{c}`" not in readme]
    assert not missing, f"README lacks summary columns: {missing} (see metrics.columns_markdown())"
