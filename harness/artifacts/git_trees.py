"""Debian's Linux and QEMU sources as git trees: a kernel or QEMU developer's checkout, made
from a stack's pinned packages and kept in the cache (``test-trees/``).

A Linux tree: Debian's ``linux-source`` of a stack (bookworm's 6.1, trixie's 6.12, sid's
7.2) unpacked into a git repository, the stack's RFC port (``guest-kernel-patches/``,
``trixie/``, ``sid/``) applied on top as a commit (``git am``): its ``HEAD^`` is Debian's
source. A QEMU tree: the stack's QEMU source (Debian's patches applied) as a git repository,
a patch folder's series on top (the RFC's QEMU half for the default stack; none for the
upstream series' base). Each is made once per input (package version, patches) and read
as a user's checkout: the tests build from them, ``balloon-harness upstream-trees``
(:mod:`harness.artifacts.upstream_trees`) clones them. Nothing writes into them.

Debian's linux-source tarball carries a top-level ``.gitignore`` that ignores everything at
the top (``/*``, for Debian's packaging), so ``git init && git add -A`` in it adds nothing:
:func:`git_tree_of_linux_source` cuts that part of the file and adds with ``git add -f``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from harness.artifacts import cache, debian
from harness.artifacts.patches import QEMU_PATCHES
from harness.artifacts.qemu import fetch_source, source_tree
from harness.artifacts.stacks import DEFAULT_STACK, Pins, get_stack, pins_for, read_lock
from harness.artifacts.steps import run_step
from harness.errors import BuildError

logger = logging.getLogger(__name__)

GIT = ["git", "-c", "user.name=A Kernel Developer", "-c", "user.email=dev@example.org",
       "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"]


def patch_files(folder: Path) -> list[Path]:
    """The series of a patch folder: its ``0*.patch`` files in order."""
    return sorted(folder.glob("0*.patch"))


_patches = patch_files   # the name tests/own_trees.py had


def _git_repo(tree: Path, message: str, patches: list[Path], log: Path, quiet: bool = True) -> None:
    """``tree`` as a git repository: its files one commit (``message``), ``patches`` on top.
    ``quiet=False``: the add and the commit say so and beat while they run (a Linux tree's
    80,000 files take a minute)."""
    run_step(f"git init {tree.name}", [*GIT, "init", "-q", "-b", "main", tree], log, quiet=True)
    # -f: a tarball's files are the tracked files, whatever its .gitignore says (Debian's
    # linux-source ignores its whole top level; upstream force-adds a few ignored files too)
    run_step(f"git add {tree.name}'s files", [*GIT, "-C", tree, "add", "-f", "-A"], log, quiet=quiet)
    run_step("git commit", [*GIT, "-C", tree, "commit", "-q", "-m", message], log, quiet=quiet)
    if patches:
        run_step("git am the RFC port", [*GIT, "-C", tree, "am", "-q", *patches], log, quiet=True)


DEBIAN_IGNORE = "#\n# Debian packaging"


def cut_debian_ignore(tree: Path) -> None:
    """Drop the Debian packaging part of a linux-source tree's top ``.gitignore`` (it ignores
    everything at the top level: ``/*``), so the tree's git behaves like an upstream checkout
    (a new top-level file shows as untracked). Whatever the file says, :func:`_git_repo` adds
    with ``-f``."""
    ignore = tree / ".gitignore"
    if not ignore.is_file():
        return
    text = ignore.read_text()
    if DEBIAN_IGNORE in text:
        ignore.write_text(text[:text.index(DEBIAN_IGNORE)])


def git_tree_of_linux_source(deb: Path, out: Path, message: str, patches: list[Path], log: Path) -> Path:
    """``out/linux``: the tarball of a ``linux-source-*`` package as a git tree, ``patches``
    committed on top with ``git am``."""
    debian.extract(deb, out / "x", log)
    tarball = next((out / "x" / "usr" / "src").glob("linux-source-*.tar.*"))
    tree = out / "linux"
    tree.mkdir()
    run_step(f"unpack {tarball.name}", ["tar", "-xf", tarball, "-C", tree, "--strip-components=1"], log)
    shutil.rmtree(out / "x")
    cut_debian_ignore(tree)
    _git_repo(tree, message, patches, log, quiet=False)
    return tree


def _pins(stack_name: str) -> Pins:
    """The stack's pinned versions from ``stacks.lock``, without opening its private apt (an
    empty cache's apt would update its lists from the archive first); resolved through the
    archive only when the lock has no entry for the stack."""
    lock = read_lock()
    return lock[stack_name] if stack_name in lock else pins_for(get_stack(stack_name))[0]


def _linux_inputs(stack_name: str) -> dict:
    stack = get_stack(stack_name)
    pins = _pins(stack_name)
    return {"package": stack.linux_source, "version": pins.linux_source_version,
            "patches": [cache.file_sha256(p) for p in patch_files(stack.guest_patch_dir)], "layout": 2}


def linux_tree(stack_name: str = DEFAULT_STACK) -> Path:
    """A stack's Linux source (Debian's linux-source at the pinned version) as a git tree with
    the stack's RFC port as its HEAD commit. Cold: a download of about 150 MB, an unpack of
    about 1.4 GB and a commit of about 80,000 files (a minute or two each); warm: a lookup."""
    stack = get_stack(stack_name)
    pins, apt = pins_for(stack)
    patches = patch_files(stack.guest_patch_dir)

    def build(out: Path, log: Path) -> None:
        deb = apt.download(stack.linux_source, pins.linux_source_version, out / "deb")
        git_tree_of_linux_source(deb, out, f"Linux {pins.linux_source_version} (Debian's {stack.linux_source})",
                                 patches, log)
        shutil.rmtree(out / "deb")

    return cache.ensure("test-trees", {"linux": _linux_inputs(stack_name)}, build, mutable=True).path / "linux"


def cached_linux_tree(stack_name: str) -> Optional[Path]:
    """:func:`linux_tree` of ``stack_name`` if the cache has it already, else None (nothing is
    downloaded or built): for tests that only read the tree and may skip without it."""
    art = cache.lookup("test-trees", {"linux": _linux_inputs(stack_name)})
    return art.path / "linux" if art else None


def linux_source_tree(stack_name: str) -> Path:
    """A git tree whose root commit is Debian's linux-source of the stack, for a clone that
    only wants that commit (the upstream series' base): :func:`linux_tree` if the cache has
    it, else any intact tree of the same package and version whatever RFC port it carries (a
    changed port makes a new entry, and its base is the same import), else :func:`linux_tree`
    made now. Saves a 150 MB download and a 1.4 GB unpack each time the port changes."""
    exact = cached_linux_tree(stack_name)
    if exact is not None:
        return exact
    wanted = {k: v for k, v in _linux_inputs(stack_name).items() if k != "patches"}
    entries = sorted(cache.cache_root().glob(f"test-trees/*/{cache.INPUTS_FILE}"),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for inputs_file in entries:
        try:
            inputs = json.loads(inputs_file.read_text())
        except (OSError, ValueError):
            continue
        linux = inputs.get("linux") if isinstance(inputs, dict) else None
        if isinstance(linux, dict) and {k: v for k, v in linux.items() if k != "patches"} == wanted:
            art = cache.lookup("test-trees", inputs)
            if art is not None:
                logger.info("Debian's %s %s: from the cache's tree %s (another RFC port on top; the same base)",
                         wanted["package"], wanted["version"], art.path / "linux")
                return art.path / "linux"
    return linux_tree(stack_name)


def root_commit(tree: Path, ref: str = "HEAD") -> str:
    """The one root commit under ``ref``: in these trees, the import of Debian's source."""
    roots = git(tree, "rev-list", "--max-parents=0", ref).split()
    if len(roots) != 1:
        raise BuildError(f"{tree}: {ref} has {len(roots)} root commits, not the one import of Debian's source")
    return roots[0]


def qemu_tree(stack_name: str = DEFAULT_STACK, patch_dir: Optional[Path] = QEMU_PATCHES) -> Path:
    """A stack's QEMU source (Debian's, its patches applied) as a git tree, the series of
    ``patch_dir`` committed on top (default: the RFC's QEMU half, which fits the default
    stack's QEMU 7.2; None: Debian's source alone, HEAD is the import). Cold: the source
    package's download if not cached, a copy and a commit of about 10,000 files (seconds)."""
    pins, apt = pins_for(get_stack(stack_name))
    patches = patch_files(patch_dir) if patch_dir is not None else []
    inputs = {"source": pins.qemu_source_version, "patches": [cache.file_sha256(p) for p in patches], "layout": 1}

    def build(out: Path, log: Path) -> None:
        src = source_tree(fetch_source(pins.qemu_source_version, apt.source))
        tree = out / "qemu"
        logger.info("QEMU %s: importing %s as a git tree into the cache (log: %s)", pins.qemu_source_version, src, log)
        shutil.copytree(src, tree, symlinks=True, ignore=shutil.ignore_patterns(".pc"))
        _git_repo(tree, f"QEMU {pins.qemu_source_version} (Debian's source)", patches, log)

    return cache.ensure("test-trees", {"qemu": inputs}, build, mutable=True).path / "qemu"


def cached_qemu_source(stack_name: str) -> Optional[Path]:
    """The stack's QEMU source tree (Debian's patches applied) if the cache has it, else None."""
    pins = _pins(stack_name)
    art = cache.lookup("qemu-source", {"package": "qemu", "version": pins.qemu_source_version})
    return source_tree(art) if art else None


def git(tree: Path, *args: str) -> str:
    """``git -C tree ARGS``'s stdout (a failure raises CalledProcessError)."""
    return subprocess.run([*GIT, "-C", str(tree), *args], capture_output=True, text=True, check=True).stdout
