"""Patch series: the ``series`` file of a patch folder, its hashes, and applying it.

The hashes of the patch files are part of every cache key that depends on them,
so a changed patch rebuilds only what it feeds.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.artifacts.cache import file_sha256
from harness.artifacts.steps import run_step
from harness.errors import BuildError
from harness.resources import data_dir

GUEST_PATCHES = data_dir("guest-kernel-patches")
QEMU_PATCHES = data_dir("qemu-patches")


@dataclass(frozen=True)
class Series:
    folder: Path
    patches: tuple[Path, ...]

    @classmethod
    def load(cls, folder: Path) -> Series:
        series = folder / "series"
        if not series.exists():
            raise BuildError(f"no series file in {folder}")
        names = [l.strip() for l in series.read_text().splitlines() if l.strip() and not l.startswith("#")]
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise BuildError(f"{series} lists missing patches: {', '.join(missing)}")
        return cls(folder, tuple(folder / n for n in names))

    def hashes(self) -> dict[str, str]:
        return {p.name: file_sha256(p) for p in self.patches}

    def touched_files(self) -> list[str]:
        """Paths (``a/``-less) the series modifies, from the ``+++ b/...`` lines."""
        files: list[str] = []
        for p in self.patches:
            for m in re.finditer(r"^\+\+\+ b/(\S+)", p.read_text(), re.M):
                if m.group(1) not in files:
                    files.append(m.group(1))
        return files

    def revert(self, tree: Path, log: Path) -> None:
        """Undo :meth:`apply` (``patch -R``, last patch first)."""
        for p in reversed(self.patches):
            run_step(f"revert {p.name}", ["patch", "-p1", "--batch", "-R", "-i", p], log, cwd=tree, quiet=True)

    def apply(self, tree: Path, log: Path, dry_run: bool = False) -> None:
        """``patch -p1`` each patch in order; a failure names the patch and the log.

        ``dry_run`` checks the series without touching ``tree``: it applies the series for
        real to a scratch copy of the files it touches, so that a patch that builds on an
        earlier one of the same series (``patch --dry-run`` of each alone on the pristine
        tree would fail it) is checked against the tree as the earlier ones leave it."""
        if dry_run:
            with tempfile.TemporaryDirectory(prefix="series-check-") as scratch:
                for name in self.touched_files():
                    if (tree / name).exists():
                        (Path(scratch) / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(tree / name, Path(scratch) / name)
                self._apply(Path(scratch), log, "check")
            return
        self._apply(tree, log, "apply")

    def _apply(self, tree: Path, log: Path, verb: str) -> None:
        for p in self.patches:
            run_step(f"{verb} {p.name}", ["patch", "-p1", "--batch", "--forward", "-i", p], log, cwd=tree, quiet=True)


DESIGNS = "designs"


def design_series(folder: Path) -> dict[str, Series]:
    """``<folder>/designs/<name>/series`` for every design (the review's arms), by name."""
    root = folder / DESIGNS
    if not root.is_dir():
        return {}
    return {d.name: Series.load(d) for d in sorted(root.iterdir()) if (d / "series").is_file()}


def design_names(folder: Path) -> list[str]:
    """The names :func:`design_series` would give, without reading every series (what the
    scenario loader needs to check an arm's ``qemu``/``module``; a build loads the series)."""
    root = folder / DESIGNS
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / "series").is_file())
