"""Issue 19 on real trees: Debian's linux-source of the default stack as a user's git tree
with the RFC port as its HEAD commit, and the stack's QEMU source with the RFC's QEMU half
as a commit (tests/own_trees.py makes both, once, in the cache).

`make test` keeps what takes seconds: a fragment that turns off a required symbol fails at
the configuration step (no compile), and, on a cache that has built the tree's kernel
before, one boot of it (no module loaded, the driver built in). The builds themselves
(minutes of compile on two cores) are in `make test-slow`: from an empty cache a scenario
with both kinds of tree arms runs the RFC's arms, and a second run builds nothing; a tree
that does not compile fails with the compiler's last lines and the log's path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import VIRTIO_FEATURES_COMMAND, balloon_features_in
from own_trees import git, linux_tree, qemu_tree
from toml_text import RFC_TIMING, preamble, rfc_arms, rfc_steps, step

from harness.artifacts.kernel_tree import cached_kernel_tree, configure
from harness.artifacts.trees import KernelTree
from harness.errors import BuildError

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def linux() -> Path:
    return linux_tree()


def _clean(tree: Path) -> str:
    return git(tree, "status", "--porcelain")


def test_a_fragment_turning_off_a_required_symbol_fails_before_the_compile(linux, tmp_path):
    mine = tmp_path / "no-balloon.config"
    mine.write_text("# my lab's fragment\nCONFIG_VIRTIO_BALLOON=n\nCONFIG_KSM=y\n")
    log = tmp_path / "build.log"
    start = time.monotonic()
    with pytest.raises(BuildError) as e:
        configure(linux, tmp_path / "obj", (mine,), log)
    seconds = time.monotonic() - start
    message = str(e.value)
    assert f"CONFIG_VIRTIO_BALLOON is off: turned off by {mine}" in message, message
    assert str(log) in message and "lacks what the harness needs" in message
    assert not (tmp_path / "obj" / "vmlinux").exists()   # refused at the configuration, nothing compiled
    assert _clean(linux) == "", "the user's tree was written"
    print(f"refused after {seconds:.1f}s of configuration")


@pytest.mark.vm
def test_a_cached_source_kernel_boots_with_its_driver_built_in_and_loads_no_module(linux, tmp_path):
    """One boot of the tree's kernel (the RFC port built in) on the host's QEMU, when this
    cache has built it (`make test-slow` does); the image carries no modules."""
    from harness.artifacts.initramfs import build_image
    from harness.artifacts.qemu import stock_qemu
    from harness.guest import Guest
    from harness.vm import MachineSpec

    kernel = cached_kernel_tree(KernelTree(source=linux))
    if kernel is None:
        pytest.skip("this cache has not built the test Linux tree's kernel (minutes of compile): "
                    "`make test-slow` builds it")
    image = build_image(kernel, None, "built-in")
    spec = MachineSpec.for_image(image, qemu=stock_qemu(), memory_mib=512, accel="tcg")
    with Guest(spec, run_dir=tmp_path / "vm") as guest:
        release = guest.ssh.run("uname -r").stdout.strip()
        drivers = guest.ssh.run("ls /sys/bus/virtio/drivers").stdout.split()
        memcg = guest.ssh.run("cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
        kpageflags = guest.ssh.run("test -r /proc/kpageflags && echo yes").stdout.strip()
        modules = guest.ssh.run("ls /lib/modules | wc -l").stdout.strip()
        console = guest.machine.console_log.read_text(errors="replace")
    assert release == kernel.release
    assert {"virtio_balloon", "virtio_net", "virtio_mem"} <= set(drivers), drivers
    assert "memory" in memcg and kpageflags == "yes" and modules == "0"
    assert "insmod" not in console and "FAILED" not in console, console[-2000:]


# --- the slow suite: real builds -----------------------------------------------------------

def rfc_arms_text(linux: Path, qemu: Path) -> str:
    """The RFC's experiment on a kernel and a QEMU built from trees, with the negotiated
    features listed first."""
    return (preamble("own-trees", memory_mib=1024, vm={"accel": "tcg"}, timing=RFC_TIMING)
            + step("run", "features", command=VIRTIO_FEATURES_COMMAND) + rfc_steps()
            + rfc_arms(module=None, kernel={"source": str(linux)}, qemu={"source": str(qemu)}))


def _run(scenario: Path, out: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.vm
def test_tree_arms_run_the_rfc_from_an_empty_cache_and_a_second_run_builds_nothing(linux, tmp_path):
    qemu = qemu_tree()
    scenario = tmp_path / "own-trees.toml"
    scenario.write_text(rfc_arms_text(linux, qemu))
    env = {**os.environ, "BALLOON_HARNESS_CACHE": str(tmp_path / "cache")}   # empty
    start = time.monotonic()
    first = _run(scenario, tmp_path / "first", env, timeout=3 * 3600)
    cold = time.monotonic() - start
    assert first.returncode == 0, first.stderr[-6000:]
    assert "build the kernel of" in first.stderr and "configure QEMU" in first.stderr
    meta = json.loads((tmp_path / "first" / "metadata.json").read_text())
    trees = meta["own_trees"]
    kernel_info = next(v for k, v in trees.items() if ": kernel " in k)
    qemu_info = next(v for k, v in trees.items() if ": qemu " in k)
    assert kernel_info["identity"]["commit"] == git(linux, "rev-parse", "HEAD").strip()
    assert kernel_info["identity"]["dirty"] is False and qemu_info["identity"]["dirty"] is False
    assert kernel_info["compiler"].startswith("gcc") and qemu_info["qemu_version"].startswith("QEMU emulator")
    for arm in ("baseline", "thp-order"):
        run = json.loads(next((tmp_path / "first" / "runs").glob(f"{arm}*/run.json")).read_text())
        assert run["status"] == "complete" and run["module"] == "built-in" and run["module_sha256"]
        console = next((tmp_path / "first" / "runs").glob(f"{arm}*/vm/console.log")).read_text(errors="replace")
        assert "insmod" not in console
        # the tree's RFC port negotiates bit 23 with the tree's QEMU when thp-order is on
        features = (tmp_path / "first" / "runs" / run["run_id"] / "steps" / "features.log").read_text()
        balloon = balloon_features_in(features)
        assert balloon[23] == ("1" if arm == "thp-order" else "0"), (arm, balloon)
    assert _clean(linux) == "" and _clean(qemu) == "", "a user's tree was written"

    start = time.monotonic()
    second = _run(scenario, tmp_path / "second", env, timeout=3600)
    warm = time.monotonic() - start
    assert second.returncode == 0, second.stderr[-6000:]
    assert "build the kernel of" not in second.stderr and "configure QEMU" not in second.stderr
    assert re.search(r"kernel of .*: cached", second.stderr) and re.search(r"QEMU of .*: cached", second.stderr)
    print(f"from an empty cache {cold:.0f}s (builds and 2 runs); again {warm:.0f}s (2 runs, nothing built)")


def _broken_ref(tree: Path) -> str:
    """A branch whose init/main.c does not compile, made with git's plumbing (the work tree
    and the index stay as they are)."""
    blob = subprocess.run(["git", "-C", str(tree), "hash-object", "-w", "--stdin"], input=(
        tree / "init" / "main.c").read_text() + "\nthis is not C;\n", capture_output=True, text=True,
        check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(tree / ".git" / "index-broken")}
    subprocess.run(["git", "-C", str(tree), "read-tree", "HEAD"], env=env, check=True)
    subprocess.run(["git", "-C", str(tree), "update-index", "--cacheinfo", f"100644,{blob},init/main.c"],
                   env=env, check=True)
    tree_id = subprocess.run(["git", "-C", str(tree), "write-tree"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
    (tree / ".git" / "index-broken").unlink()
    commit = git(tree, "commit-tree", tree_id, "-p", "HEAD", "-m", "broken: init/main.c does not compile").strip()
    git(tree, "update-ref", "refs/heads/broken", commit)
    return "broken"


@pytest.mark.slow
def test_a_tree_that_does_not_compile_names_the_error_and_the_log(linux, tmp_path, monkeypatch):
    from harness.artifacts.kernel_tree import build_kernel_tree

    ref = _broken_ref(linux)
    monkeypatch.setenv("BALLOON_HARNESS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuildError) as e:
        build_kernel_tree(KernelTree(source=linux, ref=ref))
    message = str(e.value)
    # the compiler's own diagnostic, though make -j went on with other files after it
    assert re.search(r"init/main\.c:\d+:\d+: error: ", message), message[-3000:]
    log = re.search(r"--- last lines of (\S+) ---", message)
    assert log and Path(log.group(1)).is_file() and "this is not C" in Path(log.group(1)).read_text(errors="replace")
    by_hand = re.search(r"re-run by hand: (.*)", message)
    assert by_hand and f"worktree add /tmp/bh-src {ref}" in by_hand.group(1)
    assert Path(log.group(1)).with_suffix(".config").is_file()   # the configuration the command names
    assert not list((tmp_path / "cache" / "kernel-tree").glob("*/bzImage")), "a failed build left an entry"
    assert _clean(linux) == ""
