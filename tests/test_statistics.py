"""Statistics and the report on synthetic summaries (no VM): medians, spreads, reached k/n,
order of arms and steps, atomic writes, and a ratio never shown as a win when the arm
stopped short."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from synthetic import ArmSpec, make_results

from harness.analysis.groups import STATS_COLUMNS, summary_stats, write_summary_stats
from harness.analysis.report import SHORT_FLAG, format_table, headline_table, legend, report_text, write_report
from harness.results.metrics import SUMMARY_COLUMNS


def _rows(arm: str, ratios: list[float], reached: list, shrink: list[float] | None = None,
          step: str = "balloon 624") -> list[dict]:
    shrink = shrink or [1.0] * len(ratios)
    rows = []
    for rep, (r, ok, sh) in enumerate(zip(ratios, reached, shrink), 1):
        base = {c: math.nan for c in SUMMARY_COLUMNS}
        base.update(run_id=f"{arm}-r{rep}", arm=arm, rep=rep, accel="kvm")
        rows.append({**base, "step": "usemem", "kind": "run", "reached": None, "step_seconds": 5.0})
        rows.append({**base, "step": step, "kind": "balloon", "reached": ok, "shrink_fraction": sh,
                     "thp_lost_per_ballooned_mib": r, "actual_mib": 624.0, "rss_freed_kib": 400_000.0 * sh})
    return rows


def test_medians_quartiles_and_reached_per_arm_and_step():
    ratios = [1.0, 2.0, 3.0, 4.0, 100.0]        # one outlier: the median must not move
    s = pd.DataFrame(_rows("a", ratios, [True, True, False, True, None]), columns=SUMMARY_COLUMNS)
    st = summary_stats(s)
    assert list(st.columns) == STATS_COLUMNS
    r = st[(st["step"] == "balloon 624") & (st["metric"] == "thp_lost_per_ballooned_mib")].iloc[0]
    assert r["n"] == 5 and r["median"] == np.median(ratios)
    assert r["q1"] == np.quantile(ratios, 0.25) and r["q3"] == np.quantile(ratios, 0.75)
    assert (r["min"], r["max"]) == (min(ratios), max(ratios))
    # reached: True/False count, None (no verdict) does not
    assert (r["reached_k"], r["reached_n"]) == (3, 4) and r["reached_fraction"] == 3 / 4
    run = st[(st["step"] == "usemem")].iloc[0]
    assert run["reached_n"] == 0 and math.isnan(run["reached_fraction"])


def test_nan_is_not_measured_not_zero():
    s = pd.DataFrame(_rows("a", [1.0, math.nan, 3.0], [True, False, True]), columns=SUMMARY_COLUMNS)
    r = summary_stats(s).query("metric == 'thp_lost_per_ballooned_mib'").iloc[0]
    assert r["n"] == 2 and r["median"] == 2.0 and r["runs"] == 3


def test_arms_in_scenario_order_and_steps_in_run_order():
    rows = _rows("zeta", [1, 2], [True, True], step="b-second") + _rows("alpha", [1, 2], [True, True], step="b-second")
    s = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    st = summary_stats(s, arm_order=["zeta", "alpha"])
    assert list(dict.fromkeys(st["arm"])) == ["zeta", "alpha"]
    assert list(dict.fromkeys(st["step"])) == ["usemem", "b-second"]  # run order, not alphabetical
    assert list(dict.fromkeys(summary_stats(s, arm_order=["alpha", "zeta"])["arm"])) == ["alpha", "zeta"]


def test_write_summary_stats_csv_and_parquet_atomically(tmp_path):
    s = pd.DataFrame(_rows("a", [1, 2, 3], [True, True, True]), columns=SUMMARY_COLUMNS)
    paths = write_summary_stats(tmp_path, s)
    assert {p.name for p in paths} == {"summary_stats.csv", "summary_stats.parquet"}
    csv, pq = pd.read_csv(tmp_path / "summary_stats.csv"), pd.read_parquet(tmp_path / "summary_stats.parquet")
    assert len(csv) == len(pq) == len(summary_stats(s)) and list(pq.columns) == STATS_COLUMNS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_empty_summary_gives_empty_tidy_frame():
    assert list(summary_stats(pd.DataFrame(columns=SUMMARY_COLUMNS)).columns) == STATS_COLUMNS


def _ratio_cell(table, arm):
    col = table.header.index("THP lost/MiB")
    return next(r[col] for r in table.rows if r[0] == arm and r[1] == "balloon 624")


def test_ratio_of_an_arm_that_stopped_short_is_flagged():
    rows = (_rows("full", [2.0, 2.1, 2.2], [True, True, True]) +
            _rows("short", [1.0, 1.1, 1.2], [False, False, False], shrink=[0.6, 0.7, 0.65]) +
            _rows("one-missed", [1.0, 1.1, 1.2], [True, False, True]))
    table = headline_table(pd.DataFrame(rows, columns=SUMMARY_COLUMNS))
    assert not _ratio_cell(table, "full").endswith(SHORT_FLAG)
    assert _ratio_cell(table, "short").endswith(SHORT_FLAG)
    assert _ratio_cell(table, "one-missed").endswith(SHORT_FLAG)   # reached 2/3 is stopping short too
    assert {a for a, _ in table.flagged} == {"short", "one-missed"}
    reached = table.header.index("reached")
    assert [r[reached] for r in table.rows if r[1] == "balloon 624"] == ["3/3", "0/3", "2/3"]
    # the memory actually returned stands beside the ratio, always
    assert "shrink" in table.header and "RSS freed kB" in table.header
    assert "stopping short" in legend(table)


def test_spread_is_range_for_few_runs_and_iqr_for_five_or_more():
    few = headline_table(pd.DataFrame(_rows("a", [1.0, 2.0, 3.0], [True] * 3), columns=SUMMARY_COLUMNS))
    many = headline_table(pd.DataFrame(_rows("a", [1.0, 2.0, 3.0, 4.0, 5.0], [True] * 5), columns=SUMMARY_COLUMNS))
    assert _ratio_cell(few, "a") == "2.00 (1.00..3.00)"
    assert _ratio_cell(many, "a") == "3.00 [2.00..4.00]"


def test_no_rfc_columns_without_reference(tmp_path):
    s = pd.DataFrame(_rows("a", [1.0, 2.0], [True, True]), columns=SUMMARY_COLUMNS)
    plain = headline_table(s, reference={})
    assert not any("RFC" in h for h in plain.header) and "RFC" not in legend(plain)
    ref = headline_table(s, reference={"a": {"host_ahp_before_kib": 976896, "host_ahp_after_kib": 153600}})
    assert "RFC before kB" in ref.header and "976896" in format_table(ref)


def test_print_report_table_legend_stats_and_per_run_plots(tmp_path, capsys):
    out = make_results(tmp_path / "r", reps=3, arms={"baseline": ArmSpec(ratio=2.0),
                                                    "thp-order": ArmSpec(ratio=1.1, shrink=0.7)})
    print(report_text(out, wide=True, explain=True, files=write_report(out)))
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split()[0] == "arm"
    assert [l.split()[0] for l in lines[2:6]] == ["baseline", "baseline", "thp-order", "thp-order"]
    assert "RFC" not in text                              # the synthetic scenario has no [reference]
    assert "ratio earned by stopping short" in text and "thp-order balloon 624" in text
    assert "ballooned_mib / requested_mib" in text        # explanations come from harness.metrics
    assert (out / "summary_stats.csv").exists() and (out / "summary_stats.parquet").exists()
    for png in ("host_memory_over_time.png", "summary_bars.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_keeps_rfc_figures_for_a_scenario_with_reference(tmp_path):
    out = make_results(tmp_path / "r", reps=2, reference={"baseline": {"host_ahp_before_kib": 976896,
                                                                       "host_ahp_after_kib": 153600}})
    text = report_text(out, wide=True, explain=True)
    assert "976896" in text and "RFC before kB" in text
    # the text alone writes nothing: the statistics and plots are write_report's
    assert not (out / "plots").exists() and not list(out.glob("summary_stats.*"))


def test_no_runs_give_empty_tables_with_their_columns():
    s = pd.DataFrame(columns=SUMMARY_COLUMNS)
    table = headline_table(s)
    assert table.rows == [] and table.header[:4] == ["arm", "step", "n", "reached"]
    stats = summary_stats(s)
    assert stats.empty and list(stats.columns) == STATS_COLUMNS


def test_one_run_is_its_own_median_with_no_spread_shown():
    s = pd.DataFrame(_rows("a", [1.25], [False], shrink=[0.5]), columns=SUMMARY_COLUMNS)
    table = headline_table(s)
    assert len(table.rows) == 1
    row = dict(zip(table.header, table.rows[0]))
    assert (row["arm"], row["step"], row["n"], row["reached"]) == ("a", "balloon 624", "1", "0/1")
    assert row["THP lost/MiB"].startswith("1.25") and ".." not in row["THP lost/MiB"]   # no (a..b) of one run
    assert row["shrink"].startswith("0.50")
    assert table.flagged, "a ratio of a run that stopped short is flagged even alone"
    stats = summary_stats(s)
    one = stats[stats["metric"] == "thp_lost_per_ballooned_mib"].iloc[0]
    assert (one["n"], one["runs"], one["median"], one["min"], one["max"]) == (1, 1, 1.25, 1.25, 1.25)
    assert (one["reached_k"], one["reached_n"], one["reached_fraction"]) == (0, 1, 0.0)
