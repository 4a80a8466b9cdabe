"""Series.apply(dry_run=True) with real `patch`: a series whose second patch builds on the
first (qemu-patches/designs/fallback: balloon-order, then huge-only) is checked as a whole,
in order, without touching the tree; a patch that does not apply still fails the check."""

from __future__ import annotations

import subprocess

import pytest

from harness.artifacts.patches import Series
from harness.errors import BuildError


def _diff(tmp_path, name: str, before: str, after: str) -> str:
    a, b = tmp_path / f"{name}.a", tmp_path / f"{name}.b"
    a.write_text(before)
    b.write_text(after)
    out = subprocess.run(["diff", "-u", "--label", "a/src/file.c", "--label", "b/src/file.c", a, b],
                         capture_output=True, text=True).stdout
    assert out
    return out


def _series(tmp_path, patches: list[str]) -> Series:
    folder = tmp_path / "series"
    folder.mkdir()
    names = []
    for i, text in enumerate(patches, 1):
        (folder / f"{i:04d}.patch").write_text(text)
        names.append(f"{i:04d}.patch")
    (folder / "series").write_text("\n".join(names) + "\n")
    return Series.load(folder)


def test_a_series_whose_patches_build_on_each_other_checks_without_touching_the_tree(tmp_path):
    v0 = "".join(f"line {i}\n" for i in range(20))
    v1 = v0.replace("line 10\n", "line 10\nfirst\n")
    v2 = v1.replace("first\n", "first\nsecond\n")
    series = _series(tmp_path, [_diff(tmp_path, "p1", v0, v1), _diff(tmp_path, "p2", v1, v2)])
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "file.c").write_text(v0)
    series.apply(tree, tmp_path / "log", dry_run=True)
    assert (tree / "src" / "file.c").read_text() == v0
    series.apply(tree, tmp_path / "log")
    assert (tree / "src" / "file.c").read_text() == v2


def test_a_patch_that_does_not_apply_fails_the_check(tmp_path):
    v0 = "".join(f"line {i}\n" for i in range(20))
    other = v0.replace("line 10\n", "changed\n")
    series = _series(tmp_path, [_diff(tmp_path, "p1", other, other.replace("changed\n", "x\n"))])
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "file.c").write_text(v0)
    with pytest.raises(BuildError):
        series.apply(tree, tmp_path / "log", dry_run=True)
    assert (tree / "src" / "file.c").read_text() == v0
