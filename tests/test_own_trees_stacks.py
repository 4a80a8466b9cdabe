"""Issue 27: your own tree of every stack's kernel (Linux 6.1, 6.12, 7.2), not only the 2022 one.

`make test` keeps the configuration step (no compile) on the three stacks' own Linux
sources: Debian's linux-source of each stack, from the stack's private apt, as a git tree
with the stack's RFC port committed (tests/own_trees.py, cached by package version and
patches). Each must resolve every requirement of the harness's fragment to symbols its
Kconfig defines and come out of `make allnoconfig` with every one of them `=y`. Cold (an
empty cache): a download of about 150 MB and an unpack and commit of about 1.4 GB per tree,
40 to 80 s each here; warm: the configuration alone, seconds per tree.

The slow suite runs the RFC on a 7.2 tree (the issue's scenario: `stack = "sid"`, `qemu =
"patched"`, thp-order off and on) from an empty cache: the kernel compile, the sid QEMU,
both arms to their table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from own_trees import git, linux_tree
from toml_text import RFC_TIMING, preamble, rfc_arms, rfc_steps, value

from harness.artifacts.kconfig import kconfig_symbols
from harness.artifacts.kernel_tree import (
    configure,
    fragment_for,
    parse_config,
    required_symbols,
    resolution_for,
)

pytestmark = pytest.mark.build

STACK_LINUX = {"bookworm": "6.1", "trixie": "6.12", "sid": "7.2"}
# what each kernel calls the balloon core with page migration (the rename)
BALLOON_CORE = {"bookworm": {"CONFIG_MEMORY_BALLOON", "CONFIG_BALLOON_COMPACTION"},
                "trixie": {"CONFIG_MEMORY_BALLOON", "CONFIG_BALLOON_COMPACTION"},
                "sid": {"CONFIG_BALLOON", "CONFIG_BALLOON_MIGRATION"}}


@pytest.fixture(scope="module", params=sorted(STACK_LINUX))
def stack_tree(request) -> tuple[str, Path]:
    start = time.monotonic()
    tree = linux_tree(request.param)
    print(f"{request.param}: test tree {tree} ready in {time.monotonic() - start:.1f}s")
    return request.param, tree


def test_the_test_tree_is_debians_linux_source_with_the_stacks_rfc_port_committed(stack_tree):
    """The .gitignore trap: Debian's linux-source ignores everything at its top (`/*`), so a
    plain `git add -A` commits nothing; the tree maker's commit holds the whole tarball."""
    stack, tree = stack_tree
    assert git(tree, "status", "--porcelain") == ""
    tracked = git(tree, "ls-files").split()
    assert {"Makefile", "Kconfig", "Kbuild", "mm/Kconfig", "drivers/virtio/virtio_balloon.c"} <= set(tracked)
    assert len(tracked) > 60_000, len(tracked)
    subjects = git(tree, "log", "--format=%s").splitlines()
    assert len(subjects) == 2 and "THP_ORDER" in subjects[0] and STACK_LINUX[stack] in subjects[1], subjects
    assert git(tree, "show", "-s", "--format=%s", "HEAD").startswith("virtio_balloon: port")
    (tree / "new-top-level-file").write_text("x\n")     # like an upstream checkout: it shows
    try:
        assert git(tree, "status", "--porcelain").strip() == "?? new-top-level-file"
    finally:
        (tree / "new-top-level-file").unlink()


def test_every_requirement_resolves_to_this_kernels_symbols(stack_tree):
    stack, tree = stack_tree
    defined = kconfig_symbols(tree)
    resolved = resolution_for(tree)
    required = set(required_symbols(resolved))
    assert BALLOON_CORE[stack] <= required, sorted(required)
    assert all(sym.removeprefix("CONFIG_") in defined for sym in required)
    text = fragment_for(tree)
    assert f"# resolved for the Kconfig of {tree}" in text
    assert {k for k, v in parse_config(text).items() if v == "y"} == required
    if stack == "bookworm":   # the default stack's: what `kernel-config` alone prints
        assert required_symbols(resolved) == required_symbols()


def test_the_configuration_step_passes_on_this_stacks_linux(stack_tree, tmp_path):
    """`make allnoconfig` with the resolved fragment (no compile): every required symbol `=y`."""
    stack, tree = stack_tree
    log = tmp_path / "configure.log"
    start = time.monotonic()
    config = configure(tree, tmp_path / "obj", (), log)
    seconds = time.monotonic() - start
    # what configure resolved and gave Kconfig (no user fragment here)
    required = [k for k, v in parse_config((tmp_path / "fragment.config").read_text()).items() if v == "y"]
    assert BALLOON_CORE[stack] <= set(required) and len(required) > 50, required
    assert [sym for sym in required if config.get(sym) != "y"] == []
    assert config.get("CONFIG_DEVMEM", "n") == "n"
    assert not (tmp_path / "obj" / "vmlinux").exists()
    assert git(tree, "status", "--porcelain") == "", "the tree was written"
    print(f"{stack} (Linux {STACK_LINUX[stack]}): configured in {seconds:.1f}s")


def test_a_7_2_tree_lacking_the_balloon_core_is_refused_naming_it_before_make_runs(tmp_path, capsys):
    """A scratch copy of the real 7.2 tree's Kconfig files with `config BALLOON` and `config
    BALLOON_MIGRATION` deleted: neither spelling is there, so the tree is refused naming the
    requirement and both spellings tried, before Kconfig or make runs."""
    import shutil

    from harness.artifacts.kconfig import kconfig_files
    from harness.cli.main import main
    from harness.errors import BuildError

    tree = linux_tree("sid")
    scratch = tmp_path / "linux"
    for path in kconfig_files(tree):
        dest = scratch / path.relative_to(tree)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    shutil.copyfile(tree / "Kbuild", scratch / "Kbuild")
    kconfig = scratch / "mm" / "Kconfig"
    text = kconfig.read_text()
    for entry in ("config BALLOON\n\tbool\n", "config BALLOON_MIGRATION\n"):
        assert entry in text, entry
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("config "):
            skipping = line.split()[1] in ("BALLOON", "BALLOON_MIGRATION")
        elif line and not line[0].isspace():
            skipping = False
        if not skipping:
            kept.append(line)
    kconfig.write_text("\n".join(kept) + "\n")
    tried = ("need the balloon core, with migration of ballooned pages (compaction moves them): tried "
             "CONFIG_MEMORY_BALLOON + CONFIG_BALLOON_COMPACTION (none defined); CONFIG_BALLOON + "
             "CONFIG_BALLOON_MIGRATION (none defined)")
    log = tmp_path / "configure.log"
    with pytest.raises(BuildError) as e:
        configure(scratch, tmp_path / "obj", (), log)
    assert tried in str(e.value) and f"the Kconfig of {scratch}" in str(e.value), str(e.value)
    assert str(e.value).count("\n  need ") == 1, str(e.value)     # everything else is there
    assert not log.exists(), "make ran"
    assert main(["kernel-config", "--tree", str(scratch)]) == 1
    assert tried in capsys.readouterr().err


# --- the slow suite: the RFC on a 7.2 tree ----------------------------------------------------

def rfc_on_7_2_text(linux: Path) -> str:
    """The RFC port committed on Debian's Linux 7.2 as a user's tree, sid's patched QEMU."""
    return (preamble("own-tree-7.2", memory_mib=1024, vm={"vcpus": 1, "accel": "tcg", "guest_thp": "always"},
                     timing={**RFC_TIMING, "balloon_timeout_seconds": 300},
                     top='description = "the RFC port committed on Debian\'s Linux 7.2 as a user\'s tree, sid\'s '
                         'patched QEMU"\nstack = "sid"\n' + f"kernel = {value({'source': str(linux)})}\n")
            + rfc_steps() + rfc_arms(qemu="patched", module=None))


@pytest.mark.slow
@pytest.mark.vm
def test_the_rfc_on_a_7_2_tree_runs_from_an_empty_cache_and_shows_its_effect(tmp_path):
    """The issue's run: Debian sid's linux-source-7.2 as a git tree with the sid RFC port
    committed (`git am`), `kernel = { source = TREE }`, `stack = "sid"`, `qemu = "patched"`,
    thp-order off and on, from an empty cache (the kernel compile, sid's QEMU). Without the
    feature the guest's scattered 4 KiB balloon pages break host huge pages (> 1.3 MiB of host
    THP lost per ballooned MiB); with it the port inflates in 2 MiB pages (< 1.0). Measured
    here (load 7 to 15): 28 min from an empty cache (the kernel 25 min beside QEMU's 18),
    off 1.43, on 0.00 (stopped at 860 MiB). OWN_TREE_72_CACHE=DIR runs it on that cache instead
    (a second run: 54 s, nothing built)."""
    from harness.results import load_results

    linux = linux_tree("sid")
    scenario = tmp_path / "own-tree-7.2.toml"
    scenario.write_text(rfc_on_7_2_text(linux))
    env = {**os.environ, "BALLOON_HARNESS_CACHE": str(os.environ.get("OWN_TREE_72_CACHE") or tmp_path / "cache")}
    out = tmp_path / "out"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out)],
                          capture_output=True, text=True, timeout=3 * 3600, env=env)
    seconds = time.monotonic() - start
    (tmp_path / "run.stderr").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "build the kernel of" in proc.stderr or "cached" in proc.stderr
    res = load_results(out)
    rows = res.summary[res.summary["kind"] == "balloon"].set_index("arm")
    off, on = rows.loc["baseline"], rows.loc["thp-order"]
    figures = {arm: (row["thp_lost_per_ballooned_mib"], row["ballooned_mib"], row["reached"])
               for arm, row in (("off", off), ("on", on))}
    where = "the cache " + os.environ["OWN_TREE_72_CACHE"] if os.environ.get("OWN_TREE_72_CACHE") else "an empty cache"
    print(f"7.2 own tree, from {where} in {seconds:.0f}s: " + "; ".join(
        f"thp-order {arm}: {r:.2f} MiB host THP lost per ballooned MiB, {b:.0f} MiB ballooned, reached {ok}"
        for arm, (r, b, ok) in figures.items()))
    print(proc.stdout)
    assert off["thp_lost_per_ballooned_mib"] > 1.3, figures
    assert on["thp_lost_per_ballooned_mib"] < 1.0, figures
    # On 7.2 the on arm often stops short (860 MiB here, flagged `!` in the table: free 2 MiB
    # blocks run out under usemem's holes), but what it ballooned, in 2 MiB pages, must be real
    # memory for its ratio to mean anything: at least 32 huge pages.
    assert off["reached"] and on["ballooned_mib"] >= 64, figures
    assert git(linux, "status", "--porcelain") == "", "the tree was written"
