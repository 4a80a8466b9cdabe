"""Real "user's trees" for the tests and benchmarks of issue 19 (kernel and QEMU built from source).

A kernel developer's tree: Debian's ``linux-source`` of the default stack (Linux 6.1, the
guest kernel's exact version) unpacked into a git repository, with the RFC port of
``guest-kernel-patches/`` applied as a commit (``git am``). A QEMU developer's tree: the
stack's QEMU source (Debian's 7.2, its patches applied) as a git repository with the RFC's
QEMU half as a commit. Both live in the shared cache (``test-trees/``), made once; the
harness treats them exactly as a user's checkout (it never writes into them).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.artifacts import cache, debian
from harness.artifacts.patches import GUEST_PATCHES, QEMU_PATCHES
from harness.artifacts.qemu import fetch_source, source_tree
from harness.artifacts.stacks import DEFAULT_STACK, get_stack, pins_for
from harness.artifacts.steps import run_step

GIT = ["git", "-c", "user.name=A Kernel Developer", "-c", "user.email=dev@example.org",
       "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"]


def _patches(folder: Path) -> list[Path]:
    return sorted(folder.glob("0*.patch"))


def _git_repo(tree: Path, message: str, patches: list[Path], log: Path) -> None:
    run_step(f"git init {tree.name}", [*GIT, "init", "-q", "-b", "main", tree], log, quiet=True)
    run_step("git add", [*GIT, "-C", tree, "add", "-A"], log, quiet=True)
    run_step("git commit", [*GIT, "-C", tree, "commit", "-q", "-m", message], log, quiet=True)
    if patches:
        run_step("git am the RFC port", [*GIT, "-C", tree, "am", "-q", *patches], log, quiet=True)


def linux_tree() -> Path:
    """The default stack's Linux source as a git tree with the RFC port as its HEAD commit."""
    stack = get_stack(DEFAULT_STACK)
    pins, apt = pins_for(stack)
    patches = _patches(GUEST_PATCHES)
    inputs = {"package": stack.linux_source, "version": pins.linux_source_version,
              "patches": [cache.file_sha256(p) for p in patches], "layout": 1}

    def build(out: Path, log: Path) -> None:
        deb = apt.download(stack.linux_source, pins.linux_source_version, out / "deb")
        debian.extract(deb, out / "deb" / "x", log)
        tarball = next((out / "deb" / "x" / "usr" / "src").glob("linux-source-*.tar.*"))
        tree = out / "linux"
        tree.mkdir()
        run_step(f"unpack {tarball.name}", ["tar", "-xf", tarball, "-C", tree, "--strip-components=1"], log)
        shutil.rmtree(out / "deb")
        # Debian's tarball ignores everything at its top level (its packaging's .gitignore);
        # an upstream checkout does not: cut that part.
        ignore = tree / ".gitignore"
        text = ignore.read_text()
        if "# Debian packaging" in text:
            ignore.write_text(text[:text.index("#\n# Debian packaging")])
        _git_repo(tree, f"Linux {pins.linux_source_version} (Debian's {stack.linux_source})", patches, log)

    return cache.ensure("test-trees", {"linux": inputs}, build, mutable=True).path / "linux"


def qemu_tree() -> Path:
    """The default stack's QEMU source as a git tree with the RFC's QEMU half as its HEAD commit."""
    stack = get_stack(DEFAULT_STACK)
    pins, apt = pins_for(stack)
    patches = _patches(QEMU_PATCHES)
    inputs = {"source": pins.qemu_source_version, "patches": [cache.file_sha256(p) for p in patches], "layout": 1}

    def build(out: Path, log: Path) -> None:
        src = source_tree(fetch_source(pins.qemu_source_version, apt.source))
        tree = out / "qemu"
        shutil.copytree(src, tree, symlinks=True, ignore=shutil.ignore_patterns(".pc"))
        _git_repo(tree, f"QEMU {pins.qemu_source_version} (Debian's source)", patches, log)

    return cache.ensure("test-trees", {"qemu": inputs}, build, mutable=True).path / "qemu"


def git(tree: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(tree), *args], capture_output=True, text=True, check=True).stdout
