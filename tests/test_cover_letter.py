"""``cover-letter``: the results section of a cover letter from results folders (no VM).

Structure, not numbers: every arm is in its stack's table; the table's medians are
``summary_stats``'s and the decisions are ``compare``'s on the same folder (the same cells,
formatted the same way); every line fits the width and is ASCII; stalls, failed runs and
OOM kills are counted from what the runs recorded; a folder that is not one, or has no
finished run, is refused in one line. The folders: the committed old folder
(tests/data/results-before-schema) and synthetic ones (tests/synthetic.py), one per stack.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from synthetic import BALLOON_STEP, ArmSpec, make_results

from harness.analysis.claims import decided_sentences
from harness.analysis.compare import PRIMARY, compare
from harness.analysis.cover_letter import WIDTH, cover_letter
from harness.analysis.groups import REACHED_FRACTION, fmt_metric, summary_stats
from harness.cli import main
from harness.errors import HarnessError
from harness.render.numbers import fmt_p
from harness.results.folder import open_folder
from harness.results.metrics import METRICS

OLD_FOLDER = Path(__file__).parent / "data" / "results-before-schema"


def _fits(text: str, width: int = WIDTH) -> None:
    assert text.isascii(), [line for line in text.splitlines() if not line.isascii()]
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long
    assert "\x1b" not in text and "\t" not in text


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _section(text: str, head: str) -> list[str]:
    """The lines after the first line starting with ``head``, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(line)
    return out


def _decision_rows(text: str, arm: str, base: str) -> dict[str, list[str]]:
    """The decision table of ``arm`` against ``base``: figure -> its cells."""
    block = _section(text, f"{arm} against {base}")
    return {c[0]: c for c in map(_cells, block) if len(c) == 7 and not c[0].startswith(("-", "figure"))}


def _short(metric: str) -> str:
    return "reached" if metric == REACHED_FRACTION else METRICS[metric].short


def assert_decisions_are_compares(text: str, folder_a: Path, base: str, folder_b: Path, arm: str,
                                  label: str = "", base_label: str = "") -> None:
    """Every deciding row of ``compare A:base B:arm`` is in the letter, cell for cell."""
    c = compare(f"{folder_a}:{base}", f"{folder_b}:{arm}")
    rows = _decision_rows(text, label or arm, base_label or base)
    primary = c.rows[c.rows["role"] == PRIMARY]
    assert len(primary) and len(rows) == len(primary), (rows, primary)
    for r in primary.itertuples():
        cells = rows[_short(r.metric)]
        assert cells[1:4] == [fmt_metric(r.metric, r.median_a), fmt_metric(r.metric, r.median_b),
                              fmt_metric(r.metric, r.shift)], (cells, r)
        assert cells[5:] == [fmt_p(r.p_adjusted), r.verdict], (cells, r)


def _blocks(lines: list[str]) -> list[list[str]]:
    """The side-by-side tables of one step: each from its "figure" header to a blank line."""
    out: list[list[str]] = []
    i = 0
    while i < len(lines) and lines[i].strip().startswith("figure"):
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        out.append(block)
        i += 1
    return out


def assert_table_is_summary_stats(text: str, folder: Path, labels: dict[str, str]) -> None:
    """At the balloon step: each arm's column holds summary_stats' median of each figure and
    its reached k/n."""
    f = open_folder(folder)
    st = summary_stats(f.summary, f.scenario.arms, f.scenario.steps)
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line == f"at step {BALLOON_STEP!r}:"]
    seen = set()
    for start in starts:
        for block in _blocks(lines[start + 1:]):
            header = _cells(block[0])
            rows = {c[0]: c for c in map(_cells, block[2:])}
            for arm, label in labels.items():
                if label not in header:
                    continue
                col = header.index(label)
                here = st[(st["arm"] == arm) & (st["step"] == BALLOON_STEP)]
                assert rows["reached"][col] == f"{int(here.iloc[0]['reached_k'])}/{int(here.iloc[0]['reached_n'])}"
                assert rows["runs (n)"][col] == str(int(here.iloc[0]["runs"]))
                for m in ("thp_lost_per_returned_mib", "returned_fraction", "settle_seconds"):
                    median = here[here["metric"] == m].iloc[0]["median"]
                    assert rows[METRICS[m].header][col].split()[0].rstrip("!") == fmt_metric(m, median), (arm, m)
                seen.add(arm)
    assert seen == set(labels), (seen, labels)


@pytest.fixture
def old_folder(tmp_path):
    out = tmp_path / "results-before-schema"
    shutil.copytree(OLD_FOLDER, out)
    return out


def test_old_folder_table_decisions_and_provenance(old_folder):
    text = cover_letter([old_folder])
    _fits(text)
    assert_table_is_summary_stats(text, old_folder, {"baseline": "baseline", "thp-order": "thp-order"})
    assert_decisions_are_compares(text, old_folder, "baseline", old_folder, "thp-order")
    # the commands that repeat it, at the harness commit the folder recorded
    meta = json.loads((old_folder / "metadata.json").read_text())
    assert f"$ git checkout {meta['harness_revision'][:12]}" in text
    assert "$ balloon-harness run scenarios/old-folder.toml --reps 3" in text
    assert f"$ balloon-harness cover-letter {old_folder.name}" in text
    # the host and the builds it recorded
    assert f"CPU {meta['host']['cpu']}, {meta['host']['cpus']} CPUs; host Linux {meta['host']['kernel']}" in text
    assert f"module patched: sha256 {meta['guest_modules']['patched']['sha256'][:12]}" in text
    for head in ("Decisions", "Stacks", "Host"):
        assert f"\n{head}\n" in text


def test_the_scenarios_claims_are_checks_sentences(old_folder):
    """The scenario's [[expect]] claims as check judges them, the same sentences."""
    text = cover_letter([old_folder])
    sentences = decided_sentences(open_folder(old_folder), WIDTH)
    assert sentences and "\n".join(sentences) in text


def test_baseline_option_picks_the_arm_the_others_are_decided_against(old_folder):
    text = cover_letter([old_folder], baselines=["thp-order"])
    assert_decisions_are_compares(text, old_folder, "thp-order", old_folder, "baseline")
    assert "baseline against thp-order" in text and "thp-order against baseline" not in text
    assert "--baseline thp-order" in text     # the command that writes it again says so
    with pytest.raises(HarnessError, match=r"--baseline nope: no such arm .*baseline, thp-order"):
        cover_letter([old_folder], baselines=["nope"])


@pytest.mark.parametrize("width", [60, 100])
def test_width(old_folder, width):
    text = cover_letter([old_folder], width=width)
    _fits(text, width)
    assert f"--width {width}" in text
    with pytest.raises(HarnessError, match="--width 40"):
        cover_letter([old_folder], width=40)


@pytest.fixture(scope="module")
def per_stack(tmp_path_factory):
    """Two folders of the same scenario, one per stack (as floor-stacks on 6.12 and 7.2)."""
    d = tmp_path_factory.mktemp("stacks")
    a = make_results(d / "trixie", reps=5, seed=3, name="floor",
                     arms={"4k": ArmSpec(ratio=2.0, stack="trixie"), "contig": ArmSpec(ratio=1.05, stack="trixie")})
    b = make_results(d / "sid", reps=5, seed=4, name="floor",
                     arms={"4k": ArmSpec(ratio=2.1, stack="sid"), "contig": ArmSpec(ratio=1.1, stack="sid")})
    return a, b


def test_folders_one_per_stack_make_one_section(per_stack):
    a, b = per_stack
    text = cover_letter([a, b])
    _fits(text)
    # a table per stack; the arms of both folders, told apart by the folder's number
    assert re.search(r"^Stack trixie\b", text, re.M) and re.search(r"^Stack sid\b", text, re.M)
    assert_table_is_summary_stats(text, a, {"4k": "4k [1]", "contig": "contig [1]"})
    assert_table_is_summary_stats(text, b, {"4k": "4k [2]", "contig": "contig [2]"})
    # each arm decided against the baseline of its own stack and folder, as compare decides
    assert_decisions_are_compares(text, a, "4k", a, "contig", "contig [1]", "4k [1] (trixie)")
    assert_decisions_are_compares(text, b, "4k", b, "contig", "contig [2]", "4k [2] (sid)")
    assert "against 4k [2] (trixie)" not in text and "against 4k [1] (sid)" not in text
    for folder in (a, b):
        assert f"folder {folder.name}: 10 finished runs (5 per arm), 0 failed" in text
    assert f"$ balloon-harness cover-letter {a.name} {b.name}" in text


def test_stalls_failed_runs_and_oom_kills_are_counted(tmp_path):
    out = make_results(tmp_path / "r", reps=3, seed=5, failed=("thp-order-r2",))
    (out / "runs" / "thp-order-r2" / "error.txt").write_text(
        "GuestCommandError: usemem ended\nthe guest's OOM killer acted:\n[  12.3] Out of memory: Killed process 99\n")
    for rep, stall in ((1, "virtio_balloon: failed to allocate a block"), (3, None)):
        p = out / "runs" / f"thp-order-r{rep}" / "run.json"
        info = json.loads(p.read_text())
        info["moves"] = {BALLOON_STEP: {"outcome": "settled" if stall else "reached", "stall": stall}}
        p.write_text(json.dumps(info))
    text = cover_letter([out])
    _fits(text)
    rows = {c[0]: c for c in map(_cells, _section(text, f"at step {BALLOON_STEP!r}:"))}
    header = rows["figure"]
    assert rows["stalled moves"][header.index("thp-order")] == "1/2"
    assert rows["stalled moves"][header.index("baseline")] == "-"     # no moves recorded: nothing said
    assert "failed runs (OOM kills among them): thp-order 1 (1)" in text
    assert "2 failed" not in text and "1 failed" in text


def test_refusals_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    only_failed = make_results(tmp_path / "failed", reps=1, seed=6, failed=("baseline-r1", "thp-order-r1"))
    for path, why in ((tmp_path / "nothing", "no such results folder"), (tmp_path, "is not a results folder"),
                      (empty, "no finished runs: nothing to put"), (only_failed, r"no finished runs \(2 failed\)")):
        assert main(["cover-letter", str(path)]) == 1
        err = capsys.readouterr().err
        assert re.search(why, err) and err.count("\n") == 1, err


def test_cli_writes_the_text_it_prints(old_folder, tmp_path, capsys):
    assert main(["cover-letter", str(old_folder)]) == 0
    printed = capsys.readouterr().out
    target = tmp_path / "letter" / "results.txt"
    assert main(["cover-letter", str(old_folder), "--out", str(target)]) == 0
    assert target.read_text(encoding="ascii") == printed == cover_letter([old_folder])
    assert str(target) in capsys.readouterr().err


def test_one_folder_of_two_stacks_is_decided_per_stack(tmp_path):
    """floor-stacks' shape: the arms of both stacks in one folder; without --baseline each
    stack's first arm is its baseline, and no arm is decided against another stack's."""
    out = make_results(tmp_path / "floor", reps=4, seed=7, name="floor-stacks", arms={
        "4k-6.12": ArmSpec(ratio=2.0, stack="trixie"), "contig-6.12": ArmSpec(ratio=1.05, stack="trixie"),
        "4k-7.2": ArmSpec(ratio=2.1, stack="sid"), "contig-7.2": ArmSpec(ratio=1.1, stack="sid")})
    text = cover_letter([out])
    _fits(text)
    assert_decisions_are_compares(text, out, "4k-6.12", out, "contig-6.12", base_label="4k-6.12 (trixie)")
    assert_decisions_are_compares(text, out, "4k-7.2", out, "contig-7.2", base_label="4k-7.2 (sid)")
    assert len(re.findall(r"^\S+ against ", text, re.M)) == 2
    assert_table_is_summary_stats(text, out, {a: a for a in ("4k-6.12", "contig-6.12", "4k-7.2", "contig-7.2")})
    named = cover_letter([out], baselines=["4k-6.12", "4k-7.2"])
    assert named.split("To reproduce")[0] == text.split("To reproduce")[0]


def test_a_stack_built_from_the_users_trees_is_named_by_its_trees(tmp_path):
    """A guest kernel and QEMU built from the user's trees (metadata's ``own_trees``) are what
    the letter names for that stack: the tree, its commit and its state, not the Debian
    versions the stack pins (those never ran)."""
    out = make_results(tmp_path / "series", reps=3, seed=3, name="upstream-series", arms={
        "4k": ArmSpec(ratio=2.0, stack="sid"), "blocks": ArmSpec(ratio=1.0, stack="sid")})
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    commit, qsha = "0123456789ab" + "c" * 28, "f" * 64
    meta["own_trees"] = {
        "sid: kernel /src/linux@upstream": {"release": "7.2.13", "tree": "/src/linux@upstream",
                                            "identity": {"commit": commit, "dirty": True, "kind": "git"}},
        "sid: qemu /src/qemu": {"identity": {"commit": "9" * 40, "dirty": False, "kind": "git"},
                                "qemu_version": "QEMU emulator version 10.2.2", "sha256": qsha}}
    meta_path.write_text(json.dumps(meta))
    text = cover_letter([out])
    _fits(text)
    stacks = " ".join(" ".join(_section(text, "Stacks")).split())
    assert "sid: guest Linux 7.2.13 built from the tree /src/linux@upstream at 0123456789ab, " \
           "with uncommitted changes" in stacks, stacks
    assert "QEMU built from the tree /src/qemu at 999999999999" in stacks, stacks
    assert "QEMU source" not in stacks, stacks
    debian = open_folder(out).metadata.get("guest_kernel", {}).get("version")
    if debian:
        assert debian not in stacks, stacks
