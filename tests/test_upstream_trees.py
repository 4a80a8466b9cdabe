"""``balloon-harness upstream-trees`` makes the two git trees scenarios/upstream-series.toml runs
on: ``linux-upstream`` (the kernel series on Debian's linux-source-7.2) and ``qemu-upstream``
(the QEMU series on Debian's QEMU 10.2.2 source), each on a branch ``upstream``.

Real git throughout. The first tests need no cache (a series that does not apply, on a small
repository; destinations that are refused before anything is fetched). The others make both
trees from the cache's sid trees into a temporary directory (a check-out of 80,000 files:
about 15 s) and skip, saying how to make them, when the cache lacks the sid sources (nothing is
downloaded here)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifacts import cache, upstream_trees
from harness.artifacts.git_trees import (
    GIT,
    _linux_inputs,
    cached_linux_tree,
    cached_qemu_source,
    linux_source_tree,
    patch_files,
    root_commit,
)
from harness.artifacts.upstream_trees import (
    BRANCH,
    KERNEL,
    NEXT_COMMAND,
    QEMU,
    apply_series,
    default_dest,
    make_upstream_trees,
)
from harness.cli.main import main
from harness.errors import BuildError, HarnessError
from harness.experiment.scenario import tomllib
from harness.resources import data_dir

MAKE_TREES = ("the cache lacks the sid stack's sources: make them with `balloon-harness upstream-trees` "
              "(downloads Debian's linux-source-7.2 and QEMU 10.2.2) or `.venv/bin/python -m pytest "
              "tests/test_own_trees_stacks.py -k sid` and `balloon-harness build --stack sid`")


def git(tree: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(tree), *args], capture_output=True, text=True, check=True).stdout.strip()


def mail_subject(patch: Path) -> str:
    """The subject a patch file's mail header gives, its ``[PATCH ...]`` prefix dropped."""
    with open(patch, "rb") as f:
        header = email.message_from_binary_file(f, policy=email.policy.default)["Subject"]
    return re.sub(r"^\[[^]]*\]\s*", "", " ".join(str(header).split()))


def small_repo(where: Path) -> Path:
    where.mkdir()
    (where / "a.c").write_text("int a;\n")
    git(where.parent, "init", "-q", "-b", "main", where.name)
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", "base")
    return where


def format_patch(repo: Path, out: Path) -> list[Path]:
    return [Path(p) for p in git(repo, "format-patch", "-o", str(out), "main~2..main").splitlines()]


def test_a_series_that_does_not_apply_is_aborted_and_the_patch_named(tmp_path):
    # two real patches, made by git format-patch; the second one's context is then changed away
    source = small_repo(tmp_path / "source")
    for n, text in ((1, "int a;\nint b;\n"), (2, "int a;\nint b;\nint c;\n")):
        (source / "a.c").write_text(text)
        git(source, "commit", "-q", "-am", f"step {n}")
    patches = format_patch(source, tmp_path / "series")
    target = small_repo(tmp_path / "target")
    (target / "a.c").write_text("int z;\n")
    git(target, "commit", "-q", "-am", "elsewhere")
    before = git(target, "rev-parse", "HEAD")
    log_file = tmp_path / "am.log"
    with pytest.raises(BuildError) as refused:
        apply_series(target, patches, log_file, "target")
    message = str(refused.value)
    assert "\n" not in message
    assert patches[0].name in message and "a.c" in message, message
    assert git(target, "rev-parse", "HEAD") == before                  # the am was aborted ...
    assert not (target / ".git" / "rebase-apply").exists()             # ... not left waiting
    assert "Patch failed at 0001" in log_file.read_text()


def test_a_series_that_applies_is_committed_in_order(tmp_path):
    source = small_repo(tmp_path / "source")
    for n, text in ((1, "int a;\nint b;\n"), (2, "int a;\nint b;\nint c;\n")):
        (source / "a.c").write_text(text)
        git(source, "commit", "-q", "-am", f"step {n}: a long subject " + "x" * 70)
    patches = format_patch(source, tmp_path / "series")
    target = small_repo(tmp_path / "target")
    apply_series(target, patches, tmp_path / "am.log", "target")
    assert git(target, "log", "--reverse", "--format=%s", "main~2..main").splitlines() == \
        [mail_subject(p) for p in patches]
    assert git(target, "rev-parse", "main^{tree}") == git(source, "rev-parse", "main^{tree}")


@pytest.mark.parametrize("occupant", ["file", "plain directory", "git tree without the branch"])
def test_an_existing_destination_that_is_not_a_tree_of_the_series_is_refused_untouched(tmp_path, occupant):
    target = tmp_path / QEMU.name
    if occupant == "file":
        target.write_text("mine\n")
    elif occupant == "plain directory":
        target.mkdir()
        (target / "notes.txt").write_text("mine\n")
    else:
        small_repo(target)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(HarnessError) as refused:
        make_upstream_trees(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and str(target) in message and "--dest" in message, message
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / KERNEL.name).exists()


def test_the_default_destination_is_where_the_scenario_looks():
    scenario_file = data_dir("scenarios") / "upstream-series.toml"
    scenario = tomllib.loads(scenario_file.read_text())
    base = scenario_file.parent
    kernel = (base / scenario["kernel"]["source"]).resolve()
    qemus = {(base / arm["qemu"]["source"]).resolve() for arm in scenario["arms"]}
    assert scenario["kernel"]["ref"] == BRANCH
    assert kernel == default_dest() / KERNEL.name
    assert qemus == {default_dest() / QEMU.name}
    assert NEXT_COMMAND.split()[2] == f"scenarios/{scenario_file.name}"


def test_a_tree_of_the_same_debian_source_under_another_rfc_port_serves_as_the_base(tmp_path, monkeypatch):
    # a cache with one sid Linux tree, made when sid's RFC port was another patch: its key is
    # not the current one, its base (the root commit) is the same source
    monkeypatch.setenv("BALLOON_HARNESS_CACHE", str(tmp_path / "cache"))
    inputs = {"linux": {**_linux_inputs("sid"), "patches": ["an older port"]}}
    entry = tmp_path / "cache" / "test-trees" / cache.input_key(inputs)
    entry.mkdir(parents=True)
    tree = small_repo(entry / "linux")
    (tree / "a.c").write_text("int a; /* the port */\n")
    git(tree, "commit", "-q", "-am", "the RFC port")
    (entry / cache.INPUTS_FILE).write_text(json.dumps(inputs))
    (entry / cache.COMPLETE_MARK).write_text(cache.MUTABLE)
    assert cached_linux_tree("sid") is None                  # not the current key ...
    assert linux_source_tree("sid") == tree                  # ... but found, nothing made
    assert root_commit(tree) == git(tree, "rev-parse", "HEAD^")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Iterator[tuple[Path, list]]:
    """Both trees, made once by the command's library into a temporary directory, removed
    after the module (2 GB of work tree: not left for pytest's rotation of old tmp dirs)."""
    if cached_linux_tree("sid") is None or cached_qemu_source("sid") is None:
        pytest.skip(MAKE_TREES)
    dest = tmp_path_factory.mktemp("dest")
    try:
        yield dest, make_upstream_trees(dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.mark.build
def test_both_branches_carry_their_series_in_order_on_debians_source(made):
    dest, trees = made
    cache_linux = cached_linux_tree("sid")
    assert cache_linux is not None
    for spec, tree in zip((KERNEL, QEMU), trees):
        path = dest / spec.name
        assert tree.path == path and tree.made
        patches = patch_files(spec.series)
        n = len(patches)
        assert git(path, "symbolic-ref", "--short", "HEAD") == BRANCH
        assert git(path, "log", "--reverse", "--format=%s", f"{BRANCH}~{n}..{BRANCH}").splitlines() == \
            [mail_subject(p) for p in patches]
        assert git(path, "rev-parse", BRANCH) == tree.head
        assert git(path, "rev-parse", f"{BRANCH}~{n}") == tree.base
        assert git(path, "status", "--porcelain") == ""
        assert git(path, "remote") == ""                                 # no way back into the cache
        assert not (path / ".git" / "objects" / "info" / "alternates").exists()
    kernel = trees[0]
    # the clone hard-links the cache's objects (one filesystem here): no copy of the 290 MB pack
    def packs(tree: Path) -> set[tuple[int, int]]:
        return {(p.stat().st_dev, p.stat().st_ino) for p in (tree / ".git" / "objects" / "pack").glob("*.pack")}
    cache_packs, clone_packs = packs(cache_linux), packs(dest / KERNEL.name)
    if {dev for dev, _ in cache_packs} == {dev for dev, _ in clone_packs}:
        assert cache_packs & clone_packs, "the clone copied the cache's pack instead of linking it"
    # the kernel series sits on Debian's source: the commit under the cache tree's RFC port
    assert kernel.base == git(cache_linux, "rev-parse", "HEAD^")
    assert git(dest / KERNEL.name, "log", "-1", "--format=%s", kernel.base).startswith("Linux 7.2.13-1 (Debian's")
    assert git(dest / QEMU.name, "log", "-1", "--format=%s", trees[1].base).startswith("QEMU 1:10.2.2")


@pytest.mark.build
def test_a_second_run_keeps_the_trees_and_prints_the_next_command(made, capsys):
    dest, trees = made
    heads = [git(dest / spec.name, "rev-parse", BRANCH) for spec in (KERNEL, QEMU)]
    assert main(["upstream-trees", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert out.count("already there, kept") == 2, out
    assert f"next: {NEXT_COMMAND}" in out
    assert "edit its kernel and qemu source paths" in out      # a --dest the scenario does not name
    assert [git(dest / spec.name, "rev-parse", BRANCH) for spec in (KERNEL, QEMU)] == heads


@pytest.mark.build
def test_a_tree_with_another_commit_on_the_branch_is_refused_and_left_alone(made):
    dest, _trees = made
    qemu = dest / QEMU.name
    git(qemu, "commit", "-q", "--allow-empty", "-m", "my own work")
    mine = git(qemu, "rev-parse", BRANCH)
    try:
        with pytest.raises(HarnessError, match=r"qemu-upstream exists and its branch upstream is not 2 commits"):
            make_upstream_trees(dest)
        assert git(qemu, "rev-parse", BRANCH) == mine
    finally:
        git(qemu, "reset", "-q", "--hard", f"{BRANCH}^")


@pytest.mark.build
def test_a_patch_that_does_not_apply_leaves_no_tree_and_is_named(made, tmp_path, monkeypatch):
    # the QEMU series with the first context line of 0002's first hunk changed; the Linux tree
    # is the one made above (a symbolic link to it: kept as it is)
    dest, _trees = made
    broken = tmp_path / "series"
    broken.mkdir()
    for patch in patch_files(QEMU.series):
        (broken / patch.name).write_bytes(patch.read_bytes())
    second = patch_files(broken)[1]
    lines = second.read_text().split("\n")
    hunk = next(i for i, line in enumerate(lines) if line.startswith("@@"))
    context = next(i for i in range(hunk + 1, len(lines)) if lines[i].startswith(" "))
    lines[context] += " /* not in QEMU's source */"
    second.write_text("\n".join(lines))
    monkeypatch.setattr(upstream_trees, "SPECS", (KERNEL, dataclasses.replace(QEMU, series=broken)))
    elsewhere = tmp_path / "dest"
    elsewhere.mkdir()
    (elsewhere / KERNEL.name).symlink_to(dest / KERNEL.name)
    with pytest.raises(BuildError) as refused:
        make_upstream_trees(elsewhere)
    message = str(refused.value)
    assert "\n" not in message and second.name in message and "git am" in message, message
    assert sorted(p.name for p in elsewhere.iterdir()) == [KERNEL.name]     # no half-made qemu-upstream
