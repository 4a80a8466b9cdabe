"""A first table as soon as every arm has run once, refined after each later round, the final
table as before (issue 22, lever 4), shown on a terminal only: on synthetic folders that grow
run by run, as a scenario's folder does."""

from __future__ import annotations

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


def test_a_folder_run_with_jobs_says_its_host_wide_figures_mix(tmp_path):
    import json

    from harness.analysis.report import report_text
    for jobs, says in ((1, False), (2, True)):
        out = make_results(tmp_path / f"jobs{jobs}", ARMS, reps=2, fast=True)
        meta = json.loads((out / "metadata.json").read_text())
        (out / "metadata.json").write_text(json.dumps({**meta, "jobs": jobs}))
        text = report_text(out)
        assert ("guests ran 2 at once" in text) is says
        paths = ("plot:", "stats:", "accelerator:")     # these lines end in a folder's path
        assert max(len(line) for line in text.splitlines() if not line.startswith(paths)) <= 100
