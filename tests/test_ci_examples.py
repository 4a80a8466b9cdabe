"""The CI examples in ci/examples/ stay runnable: both YAML files parse, every
``balloon-harness`` command line they contain names a subcommand and options that exist
(checked against ``--help``), and each merge job's script runs on synthetic shards with the
exit code ``check`` promises (no VM)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from synthetic import make_results

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {"gitlab": REPO / "ci" / "examples" / "gitlab-ci.yml",
            "github": REPO / "ci" / "examples" / "github-actions.yml"}
# A kernel tree's own nightly (issue 19): its kernel at HEAD, built by the harness.
KERNEL_TREE = {"gitlab-kernel-tree": REPO / "ci" / "examples" / "gitlab-kernel-tree.yml"}
PIPELINES = {**EXAMPLES, **KERNEL_TREE}
SCRIPT_KEYS = ("script", "before_script", "after_script", "run")
ALL = [f"{arm}-r{rep}" for rep in (1, 2) for arm in ("baseline", "thp-order")]


def _load(name: str) -> dict:
    return yaml.safe_load(PIPELINES[name].read_text())


def _scripts(node) -> list[str]:
    """Every shell script in a pipeline (GitLab script lists, GitHub run steps)."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in SCRIPT_KEYS:
                found += [v] if isinstance(v, str) else [s for s in v if isinstance(s, str)]
            else:
                found += _scripts(v)
    elif isinstance(node, list):
        for v in node:
            found += _scripts(v)
    return found


def _commands(script: str) -> list[tuple[str, list[str]]]:
    """(subcommand, --options) of each balloon-harness command line in a script."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0]
        if "balloon-harness" not in line:
            continue
        tokens = shlex.split(line)
        i = next(i for i, t in enumerate(tokens) if t.endswith("balloon-harness"))
        rest = []
        for t in tokens[i + 1:]:
            if t in (">", ">>", "|", "&&", "||", ";"):
                break
            rest.append(t)
        out.append((rest[0], [t.split("=", 1)[0] for t in rest[1:] if t.startswith("--")]))
    return out


def _all_commands() -> list[tuple[str, str, list[str]]]:
    return [(name, sub, opts) for name in PIPELINES for s in _scripts(_load(name)) for sub, opts in _commands(s)]


def test_both_pipelines_are_nightly_sharded_merged_checked_and_recorded():
    gitlab, github = _load("gitlab"), _load("github")
    assert any("schedule" in r.get("if", "") for r in gitlab["workflow"]["rules"])
    on = github.get("on", github.get(True))          # YAML 1.1 reads a bare `on` as True
    assert on["schedule"][0]["cron"]
    for name in EXAMPLES:
        cmds = [(sub, opts) for n, sub, opts in _all_commands() if n == name]
        subs = {sub for sub, _ in cmds}
        assert {"run", "merge", "check", "history"} <= subs, (name, subs)
        assert "--shard" in dict(cmds)["run"]
        assert {"--junit", "--markdown", "--history"} <= set(dict(cmds)["check"])
    assert gitlab["shard"]["parallel"] >= 2
    assert len(github["jobs"]["shard"]["strategy"]["matrix"]["shard"]) >= 2


def test_both_pipelines_run_the_slow_suite_nightly():
    """`make test-slow` (the checks `make test` leaves out) runs in a nightly job of each pipeline,
    and the Makefile's target runs the tests marked slow."""
    for name in EXAMPLES:
        lines = [line.split(" #", 1)[0].strip() for s in _scripts(_load(name)) for line in s.splitlines()]
        assert "make test-slow" in lines, name
    target = re.search(r"^test-slow:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert target and '-m slow' in target.group(1)


@pytest.mark.parametrize("name, sub, opts", _all_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_command_line_exists(name, sub, opts, capsys, monkeypatch):
    """`SUB --help` through the CLI's main() in this process: the options the parser has are
    the question, not the interpreter's start (tests/test_cli.py starts `python -m harness`)."""
    monkeypatch.setenv("COLUMNS", "80")     # argparse's wrapping, as in a pipe
    with pytest.raises(SystemExit) as exit_:
        main([sub, "--help"])
    help_text = capsys.readouterr().out
    assert exit_.value.code == 0, help_text
    # the option itself, not a longer one it begins (`--shard` is not `--shard-x`)
    missing = [o for o in opts if not re.search(rf"(^|\s|\[){re.escape(o)}(?=[\s=\],]|$)", help_text, re.M)]
    assert not missing, f"{name}: `balloon-harness {sub}` has no {missing}"


def _merge_script(name: str) -> str:
    """The merge job's shell, with the project's balloon-harness replaced by this interpreter's."""
    if name.startswith("gitlab"):
        parts = [s for s in _load(name)["merge"]["script"] if not s.strip().startswith("make ")]
    else:
        steps = _load(name)["jobs"]["merge"]["steps"]
        parts = [s["run"] for s in steps if "run" in s and "balloon-harness" in s["run"]]
    script = "\n".join(["set -eo pipefail", *parts])
    # the project's own (.venv/bin/...) or a checkout's elsewhere ("$HARNESS"/.venv/bin/...)
    return re.sub(r"\S*\.venv/bin/balloon-harness", lambda m: f"{shlex.quote(sys.executable)} -m harness", script)


def _merge_cases() -> list:
    """Each pipeline's merge job with the exit code it is run for; pipelines whose merge script
    is the same text once it runs this interpreter (the kernel tree's differs from the GitLab
    one only in where the harness is: ``$HARNESS/.venv/bin/``) run it once, the case named
    after all of them. A script that stops being the same runs again on its own."""
    cases: dict[tuple[str, tuple[str, ...], int], list[str]] = {}
    for name, failed, code in (("gitlab", (), 0), ("github", ("thp-order-r2",), 2), ("gitlab-kernel-tree", (), 0)):
        cases.setdefault((_merge_script(name), failed, code), []).append(name)
    # Both are `pipeline`, run by `make test` (8 CPU-s for both, 5 s of a worker's wall time:
    # a tenth of `make test-fast`'s 45 s budget): the GitHub job is the failed run (the exit-2
    # path), the GitLab one runs the same four commands on the same shards from other folders.
    # `make test-fast` still checks each of their command lines against the parser (above) and
    # check's exit codes in-process (tests/test_verdicts.py).
    return [pytest.param(names[0], failed, code, id="+".join(names), marks=pytest.mark.pipeline)
            for (_, failed, code), names in cases.items()]


# Each pipeline once, and each exit code once: the merge job costs four Python starts with
# pandas, scipy and matplotlib (4 CPU-s).
@pytest.mark.parametrize("name, failed, code", _merge_cases())
def test_merge_job_runs_on_synthetic_shards(tmp_path, name, failed, code):
    shard_root = tmp_path if name.startswith("gitlab") else tmp_path / "shards"
    for k, ids in ((1, ALL[0::2]), (2, ALL[1::2])):
        make_results(shard_root / f"shard-{k}", reps=2, run_ids=ids, failed=failed, host=f"host-{k}")
    env = {**os.environ, "HISTORY": str(tmp_path / "history"), "SCENARIO_NAME": "syn", "LAST_NIGHTS": "7",
           "CI_PIPELINE_ID": "42", "GITHUB_RUN_ID": "42", "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", "-c", _merge_script(name)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert (tmp_path / "junit.xml").exists() and (tmp_path / "public" / "summary.md").exists()
    assert list((tmp_path / "public" / "plots").glob("*.png")) and (tmp_path / "public" / "trend.png").exists()
    assert list((tmp_path / "history" / "summary").rglob("*.parquet"))


def test_the_kernel_tree_pipeline_builds_the_tree_at_head_then_runs_shards_merges_checks_publishes(tmp_path):
    """The kernel tree's nightly: a build job builds the scenario's kernel tree (fails before any
    runner boots when it does not compile), N shards run it, the merge job checks against the
    history and publishes JUnit and Markdown; its scenario boots the tree it sits in."""
    from harness.experiment.scenario import load_scenario

    pipeline = _load("gitlab-kernel-tree")
    assert any("schedule" in r.get("if", "") for r in pipeline["workflow"]["rules"])
    assert pipeline["stages"] == ["build", "run", "merge"] and pipeline["shard"]["parallel"] >= 2
    cmds = dict(sub_opts for s in _scripts(pipeline["build"]) for sub_opts in _commands(s))
    assert "--scenario" in cmds["build"]
    cmds = {sub: opts for n, sub, opts in _all_commands() if n == "gitlab-kernel-tree"}
    assert "--shard" in cmds["run"] and {"--junit", "--markdown", "--history"} <= set(cmds["check"])
    assert {"merge", "history"} <= set(cmds)
    # the scenario, copied where the pipeline expects it in a Linux tree, boots that tree
    linux = tmp_path / "linux"
    (linux / ".balloon-harness").mkdir(parents=True)
    (linux / "Kbuild").write_text("obj-y += init/\n")
    scenario = linux / ".balloon-harness" / "nightly.toml"
    scenario.write_text((REPO / "ci" / "examples" / "kernel-tree-nightly.toml").read_text())
    s = load_scenario(scenario)
    assert s.name == pipeline["variables"]["SCENARIO_NAME"]
    assert {a.kernel_tree.source for a in s.arms if a.kernel_tree} == {linux.resolve()}
    assert s.expectations
