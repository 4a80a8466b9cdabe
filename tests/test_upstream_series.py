"""The upstream series (issue 32, item 5) is what it claims to be: the Linux 7.2 series in
``guest-kernel-patches/upstream/`` applies with ``git am`` to the sid stack's Linux source
(Debian's linux-source-7.2, the commit under the harness's RFC port), is clean under the
tree's own ``checkpatch.pl --strict`` (the missing Signed-off-by aside: the user adds their
own) and carries no invented sign-off; the QEMU half in ``qemu-patches/upstream/`` applies to
the sid stack's QEMU 10.2.2 source with no checkpatch error.

The sources come from the shared cache and are only read: the tests skip, saying how to
make them, when the cache does not have them (nothing is downloaded here). Each series is
applied to a git import of the files it touches, taken from the base (a few files: about a
second), so the real ``git am`` runs without a checkout of 80,000 files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness.artifacts.git_trees import patch_files
from harness.resources import data_dir
from tests.own_trees import GIT, cached_linux_tree, cached_qemu_source

KERNEL_SERIES = data_dir("guest-kernel-patches") / "upstream"
QEMU_SERIES = data_dir("qemu-patches") / "upstream"
MAKE_TREES = ("make it with `.venv/bin/python -m pytest tests/test_own_trees_stacks.py -k sid` "
              "(the sid stack's trees) or `balloon-harness build --stack sid`")


def touched_files(series: list[Path]) -> list[str]:
    """Every path the series' diffs name (``diff --git a/X b/X``)."""
    names: set[str] = set()
    for patch in series:
        names.update(re.findall(r"^diff --git a/(\S+) b/", patch.read_text(), re.M))
    return sorted(names)


def import_and_am(base_files: dict[str, bytes], series: list[Path], where: Path) -> subprocess.CompletedProcess:
    """A git repository of ``base_files`` (path -> content) at ``where``, then ``git am`` of
    the series on it."""
    where.mkdir()
    for name, content in base_files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(content)
    subprocess.run([*GIT, "init", "-q", "-b", "base", str(where)], check=True)
    subprocess.run([*GIT, "-C", str(where), "add", "-f", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(where), "commit", "-q", "-m", "base"], check=True)
    return subprocess.run([*GIT, "-C", str(where), "am", *map(str, series)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def linux_7_2() -> tuple[Path, str]:
    """The sid stack's Linux tree from the cache and the commit of Debian's source in it."""
    tree = cached_linux_tree("sid")
    if tree is None:
        pytest.skip(f"the sid stack's Linux 7.2 source is not in the cache: {MAKE_TREES}")
    base = subprocess.run([*GIT, "-C", str(tree), "rev-parse", "HEAD^"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subject = subprocess.run([*GIT, "-C", str(tree), "log", "-1", "--format=%s", base],
                             capture_output=True, text=True, check=True).stdout
    assert subject.startswith("Linux 7.2."), f"HEAD^ of {tree} is not Debian's source: {subject!r}"
    return tree, base


def test_kernel_series_has_no_sign_off_and_says_so() -> None:
    series = patch_files(KERNEL_SERIES)
    assert len(series) >= 4, f"no series in {KERNEL_SERIES}"
    for patch in series + patch_files(QEMU_SERIES):
        assert "Signed-off-by:" not in patch.read_text(), f"{patch.name} carries a Signed-off-by"
    readme = (KERNEL_SERIES / "README.md").read_text()
    assert "No Signed-off-by" in readme and "adds their own" in readme


def test_kernel_series_applies_to_the_sid_source(linux_7_2, tmp_path) -> None:
    tree, base = linux_7_2
    series = patch_files(KERNEL_SERIES)
    files = {name: subprocess.run([*GIT, "-C", str(tree), "show", f"{base}:{name}"],
                                  capture_output=True, check=True).stdout
             for name in touched_files(series)}
    am = import_and_am(files, series, tmp_path / "linux")
    assert am.returncode == 0, f"git am failed:\n{am.stdout}\n{am.stderr}"
    log = subprocess.run([*GIT, "-C", str(tmp_path / "linux"), "log", "--format=%s"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert log[-1] == "base" and len(log) == len(series) + 1, log


def test_kernel_series_is_checkpatch_strict_clean(linux_7_2) -> None:
    tree, _base = linux_7_2
    for patch in patch_files(KERNEL_SERIES):
        out = subprocess.run(["perl", str(tree / "scripts" / "checkpatch.pl"), "--strict", "--no-signoff",
                              f"--root={tree}", str(patch)], capture_output=True, text=True)
        assert "total: 0 errors, 0 warnings, 0 checks" in out.stdout, f"{patch.name}:\n{out.stdout}"


def test_qemu_series_applies_to_the_sid_source(tmp_path) -> None:
    src = cached_qemu_source("sid")
    if src is None:
        pytest.skip(f"the sid stack's QEMU 10.2 source is not in the cache: {MAKE_TREES}")
    series = patch_files(QEMU_SERIES)
    assert series, f"no series in {QEMU_SERIES}"
    files = {name: (src / name).read_bytes() for name in touched_files(series)}
    am = import_and_am(files, series, tmp_path / "qemu")
    assert am.returncode == 0, f"git am failed:\n{am.stdout}\n{am.stderr}"
    for patch in series:
        out = subprocess.run(["perl", str(src / "scripts" / "checkpatch.pl"), "--no-signoff", str(patch)],
                             capture_output=True, text=True, cwd=src)
        assert re.search(r"total: 0 errors", out.stdout), f"{patch.name}:\n{out.stdout}"
