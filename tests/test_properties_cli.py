"""The command line under generated arguments (hypothesis): every command line is either
accepted (it reaches the build, stubbed: nothing is built) or refused with one line
naming the argument, never a traceback. The options: shards, --jobs, --alpha, --reps,
--max-reps, --last, and folder arguments (missing, a file, empty, holding results).

Property tests of the parser itself: argparse's refusals end with one ``error:`` line after
the usage; the harness's own ones are one ``balloon-harness: error:`` line. Profiles:
tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import BuildInFastTest
from hypothesis import given
from hypothesis import strategies as st
from toml_text import two_stock_arms

from harness.cli import main

SCENARIO = two_stock_arms("props")


@pytest.fixture(scope="module")
def place():
    """A folder to run in (the default results/ lands there), a scenario, and folders of each
    kind. The build is stubbed by conftest's no_build_in_fast_tests: reaching it is acceptance."""
    root = Path(tempfile.mkdtemp(prefix="bh-props-cli-"))
    (root / "scenario.toml").write_text(SCENARIO)
    (root / "a-file").write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "holds" / "runs").mkdir(parents=True)
    (root / "holds" / "metadata.json").write_text("{}\n")
    cwd = os.getcwd()
    os.chdir(root)
    # one parser for every example: building it (argparse's gettext look-ups) cost more than
    # the command line it judges; parse_args leaves it as it was, so the judgement is the same
    with pytest.MonkeyPatch.context() as mp:
        cli_main = sys.modules["harness.cli.main"]   # the module (harness.cli.main is also its function's name)
        mp.setattr(cli_main, "make_parser", functools.cache(cli_main.make_parser))
        yield root
    os.chdir(cwd)
    shutil.rmtree(root, ignore_errors=True)


_COUNT = itertools.count()
NUMBERISH = st.one_of(st.integers(-5, 20).map(str), st.integers().map(str), st.sampled_from(
    ["auto", "", " 2 ", "1.5", "nan", "inf", "-inf", "1e9", "0x10", "3_0", "٣", "²", "-0", "1/2", "0/0", "2/1",
     "1/0", "3/2", "1 / 2", "/", "a/b", "-1/2", "1//2"]), st.floats().map(str), st.text(max_size=6))
FOLDER = st.sampled_from(["fresh", "empty", "a-file", "holds", "missing/deep", "", ".", "..", "../x"])
FLAGS = ["--resume", "--until-decided", "--check", "--wide", "--force", "--report-only", "-q", "-v"]
VALUED = ["--jobs", "--reps", "--max-reps", "--shard", "--alpha", "--last"]
FOLDERED = ["--out", "--history", "--against-history", "--junit", "--markdown"]


def _folder(name: str) -> str:
    return f"fresh-{next(_COUNT)}" if name == "fresh" else name


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(["run"] * 8 + ["reproduce", "check", "check", "compare", "compare", "history",
                                                  "merge", "merge", "report", "review", "kernel-config", "bogus"]))
    argv = [command]
    if command == "run":
        argv.append(draw(st.sampled_from(["scenario.toml", "scenario.toml", "missing.toml", "a-file", "empty"])))
    elif command in ("check", "history", "report"):
        argv.append(_folder(draw(FOLDER)))
    elif command == "compare":
        argv += [_folder(draw(FOLDER)), _folder(draw(FOLDER)) + draw(st.sampled_from(["", ":a", ":"]))]
    elif command == "merge":
        argv += [f"merged-{next(_COUNT)}", *[_folder(f) for f in draw(st.lists(FOLDER, max_size=3))]]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            argv.append(draw(st.sampled_from(FLAGS)))
        elif kind == 1:
            argv += [draw(st.sampled_from(VALUED)), draw(NUMBERISH)]
        else:
            argv += [draw(st.sampled_from(FOLDERED)), _folder(draw(FOLDER))]
    return argv


def _judge(argv: list[str]) -> None:
    err_io, out_io = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err_io), contextlib.redirect_stdout(out_io):
            rc = main(argv)
    except BuildInFastTest:   # past every refusal: the build would start here
        return
    except SystemExit as e:   # argparse: usage, then one "error:" line
        err = err_io.getvalue()
        assert e.code in (0, 2), (argv, e.code, err)
        if e.code == 2:
            assert err.rstrip().splitlines()[-1].startswith("balloon-harness") and "error:" in err, (argv, err)
        assert "Traceback" not in err
        return
    err = err_io.getvalue()
    assert isinstance(rc, int) and "Traceback" not in err, (argv, err)
    if rc != 0:
        errors = [line for line in err.splitlines() if "error:" in line]
        assert errors and all(line.startswith("balloon-harness") for line in errors), (argv, err)


@given(command_lines() | st.lists(st.text(max_size=12), max_size=6))
def test_any_command_line_is_accepted_or_refused_in_one_line(place, argv):
    """Generated command lines (mostly `run`, every option and folder kind), and any words."""
    _judge(argv)
    assert not list(place.parent.glob("results")), "a run wrote beside its folder"
