"""A first table as soon as every arm has run once, refined after each later round, the final
table as before (issue 22, lever 4), shown on a terminal only: on synthetic folders that grow
run by run, as a scenario's folder does."""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

from synthetic import ArmSpec, make_results

from harness.cli import output
from harness.cli.runs import RoundWatch
from harness.results.layout import run_id

ARMS = {"baseline": ArmSpec(ratio=2.0), "thp-order": ArmSpec(ratio=1.0)}
REPS = 3


def _scenario():
    return SimpleNamespace(repetitions=REPS, arms=[SimpleNamespace(name=a) for a in ARMS])


def test_a_table_after_each_round_but_the_last(tmp_path, capsys):
    out = tmp_path / "res"
    plan = [run_id(arm, rep) for rep in range(1, REPS + 1) for arm in ARMS]
    watch = RoundWatch(_scenario(), plan, out)
    printed = []
    for i, rid in enumerate(plan, 1):
        make_results(out, ARMS, reps=REPS, run_ids=plan[:i])   # the folder as the runs land
        watch.ended(rid, None)
        printed.append(capsys.readouterr().out)
    tables = [(rid, text) for rid, text in zip(plan, printed) if text]
    # after the last arm of rep 1 and of rep 2; rep 3 is the final table's (printed by execute)
    assert [rid for rid, _ in tables] == [run_id("thp-order", 1), run_id("thp-order", 2)]
    first, second = (text for _, text in tables)
    assert "every arm 1 of 3 times" in first and "every arm 2 of 3 times" in second
    for text in (first, second):
        assert "baseline" in text and "thp-order" in text
        assert max(len(line) for line in text.splitlines()) <= 100


def test_runs_landing_out_of_order_show_a_round_once_it_is_whole(tmp_path, capsys):
    out = tmp_path / "res"
    plan = [run_id(arm, rep) for rep in range(1, REPS + 1) for arm in ARMS]
    watch = RoundWatch(_scenario(), plan, out)
    order = [run_id("baseline", 1), run_id("baseline", 2), run_id("thp-order", 2), run_id("thp-order", 1)]
    for i, rid in enumerate(order, 1):
        make_results(out, ARMS, reps=REPS, run_ids=order[:i])
        watch.ended(rid, None)
    printed = capsys.readouterr().out
    # rounds 1 and 2 became whole at the same moment: one table, of both
    assert printed.count("so far") == 1 and "every arm 2 of 3 times" in printed


def test_only_a_terminal_gets_tables_so_far(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert output.interactive() is False
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert output.interactive() is True


# Lines that end in or hold a folder's path (longer than 100 columns in a deep tmp_path).
PATH_LINES = ("plot:", "stats:", "accelerator:", "legend:")


def _fits(text: str) -> bool:
    return max(len(line) for line in text.splitlines() if not line.startswith(PATH_LINES)) <= 100


def test_a_folder_run_with_jobs_says_its_host_wide_figures_mix(tmp_path):
    """--jobs 2: the first screen says so in a clause, --explain says why. A --jobs 1 folder
    says neither: the first-screen test below asserts that on its folder (jobs 1), so the
    reports (a second of plots each) are not drawn twice for the same folder."""
    import json

    from harness.analysis.report import report_text
    out = make_results(tmp_path / "jobs2", ARMS, reps=2, fast=True)
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**meta, "jobs": 2}))
    first, explained = report_text(out), report_text(out, explain=True)
    assert "host-wide figures mix the guests" in first     # the first screen says so in a clause
    assert "guests ran 2 at once" in explained              # --explain says why
    assert _fits(first) and _fits(explained)


def test_the_first_screen_is_the_table_and_one_line_saying_where_the_rest_is(tmp_path):
    """Issue 33: the table must not scroll away under a legend. Without --explain the report is
    the table, the decided sentences (none: this scenario states no claim) and one line,
    wrapped to the terminal's 100 columns, naming `report --explain`, the plots and the
    folder; the plots are written all the same. The folder ran with --jobs 1: neither report
    says the host-wide figures mix (the --jobs 2 side is the test above)."""
    import json

    from harness.analysis.report import report_text, write_report
    out = make_results(tmp_path / "r", ARMS, reps=2, fast=True)
    files = write_report(out)
    assert json.loads((out / "metadata.json").read_text())["jobs"] == 1
    table_lines = 2 + 2 * len(ARMS)          # header, rule, one row per arm and step (run, balloon)
    first = report_text(out)
    lines = first.splitlines()
    assert lines[0].split()[0] == "arm"
    where = " ".join(line.strip() for line in lines[table_lines:])
    assert lines[table_lines].startswith("legend: balloon-harness report") and "--explain" in where
    assert f"{out / 'plots'}/" in where.replace(" ", "") or f"{out / 'plots'}/" in where
    assert len(lines) - table_lines == len(textwrap.wrap(where, width=100)) or len(lines) - table_lines <= 4, lines
    assert max(len(line) for line in lines) <= 100
    assert not any(line.startswith(("plot:", "stats:")) for line in lines)
    assert (out / "plots").is_dir() and any((out / "plots").glob("*.png"))
    explained = report_text(out, explain=True, files=files)
    assert "plot:" in explained and "stats:" in explained and "n: runs of the arm" in explained
    assert "host-wide figures mix the guests" not in first and "guests ran 2 at once" not in explained
    assert _fits(explained)
