"""The two git trees the upstream series runs on (``scenarios/upstream-series.toml``):
``linux-upstream`` and ``qemu-upstream`` beside the checkout, each with a branch ``upstream``
that is the series applied with ``git am`` on Debian's source as the sid stack pins it.

- Linux: the cache's git tree of Debian's ``linux-source-7.2``
  (:func:`harness.artifacts.git_trees.linux_source_tree`: the tests' tree, the harness's RFC
  port on top of the import) is cloned, ``upstream`` is branched at its root commit (the
  import of Debian's source) and ``guest-kernel-patches/upstream/0*.patch`` are applied.
- QEMU: the cache's git import of Debian's QEMU 10.2.2 source, debian/patches applied
  (:func:`~harness.artifacts.git_trees.qemu_tree` with no series: one commit), is cloned,
  ``upstream`` is branched at it and ``qemu-patches/upstream/0*.patch`` are applied.

Whatever the cache lacks is made first (the Linux tree: a 150 MB download, a 1.4 GB unpack
and a commit of 80,000 files, a few minutes; QEMU: the source package and an import).

**Why a plain local clone, not ``--shared``.** ``git clone`` of a local path hard-links the
origin's object files (on one filesystem; it copies them across filesystems: the cache's Linux
tree is one 290 MB pack), so the clone costs seconds and no space, and only the check-out of
the work tree (1.4 GB for Linux, about 10 s) is written. The clone is then independent of the
cache: ``--shared`` would leave it reading the cache's object store through
``objects/info/alternates``, and a cache entry rebuilt or removed (a changed RFC port makes a
new Linux tree; a cleaned cache) would break the user's tree. The user's tree cannot corrupt
the cache's either way: git writes new objects as new files (temporary file, then rename) and
never writes into an existing object file or pack (they are read-only, 0444), so the hard
links are only ever read or unlinked (``git gc`` in the clone writes a new pack and drops its
link to the old one); and the clone's ``origin`` remote is removed, so no ``git push`` can
reach the cache's refs.

**Made aside, then moved into place.** Each tree is made in a temporary sibling
(``.linux-upstream.tmp-PID``) and renamed to its name only once its series applied: an
interrupted or failed run leaves no half-made tree. A patch that does not apply aborts the
``git am`` and the error names the patch and git's reason.

**An existing tree is never modified.** If the destination already is exactly what this makes
(a git tree whose branch ``upstream`` is the series' patches, by ``git patch-id``, in order on
Debian's source, by tree object), it is reported as such and kept: running the command again
is harmless. Anything else (another version of the series, the user's own commits on
``upstream``, not a git tree) is refused with one line saying what differs; remove the tree or
pass another destination.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.artifacts import cache
from harness.artifacts.git_trees import GIT, linux_source_tree, patch_files, qemu_tree, root_commit
from harness.artifacts.steps import run_step
from harness.artifacts.trees import is_git_top
from harness.errors import BuildError, ConfigError, HarnessError
from harness.resources import CHECKOUT, data_dir

log = logging.getLogger(__name__)

STACK = "sid"            # the series' base: sid's linux-source-7.2 and QEMU 10.2.2 (stacks.lock)
BRANCH = "upstream"      # the branch the scenario builds (``ref = "upstream"`` for the kernel)
SCENARIO = "upstream-series.toml"
NEXT_COMMAND = f"balloon-harness run scenarios/{SCENARIO} --order fixed"


@dataclass(frozen=True)
class TreeSpec:
    """One of the two trees: its folder name (the scenario's), its series, and whether the
    scenario builds its work tree (QEMU: no ``ref``) or the branch (Linux: ``ref =
    "upstream"``). Its base is the root commit of the cache's tree: the import of Debian's
    source."""

    name: str
    what: str
    series: Path
    builds_work_tree: bool


KERNEL = TreeSpec("linux-upstream", "Linux", data_dir("guest-kernel-patches") / "upstream", False)
QEMU = TreeSpec("qemu-upstream", "QEMU", data_dir("qemu-patches") / "upstream", True)
SPECS = (KERNEL, QEMU)


@dataclass(frozen=True)
class SeriesTree:
    """A tree as the command left it."""

    path: Path
    what: str
    base: str                   # the commit of Debian's source
    head: str                   # the branch ``upstream``
    subjects: tuple[str, ...]   # the series' subjects, in order
    made: bool                  # False: it was there already, exactly this


def default_dest() -> Path:
    """The checkout's parent: ``scenarios/../../linux-upstream`` (the scenario's relative
    paths) lands there. An installed harness has no checkout: it needs ``--dest``."""
    if not (CHECKOUT / "scenarios").is_dir():
        raise ConfigError("the harness is not running from a checkout, so there is no default "
                          "place for the trees: pass --dest DIR (and edit the scenario's paths to match)")
    return CHECKOUT.parent


def _git(tree: Path, *args: str, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run([*GIT, "-C", str(tree), *args], capture_output=True, text=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def _out(tree: Path, *args: str) -> str:
    proc = _git(tree, *args)
    if proc.returncode != 0:
        raise BuildError(f"git -C {tree} {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def subject(patch: Path) -> str:
    """A patch file's subject as ``git am`` commits it (``git mailinfo``: the ``[PATCH n/m]``
    prefix dropped, a folded header joined)."""
    with open(patch, "rb") as mail:
        proc = subprocess.run(["git", "mailinfo", os.devnull, os.devnull], stdin=mail, capture_output=True)
    found = re.search(rb"^Subject: (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise BuildError(f"{patch} is not a mail-formatted patch (git mailinfo finds no subject)")
    return found.group(1).decode(errors="replace")


def _patch_ids(tree: Path, text: str) -> list[str]:
    out = _git(tree, "patch-id", "--stable", stdin=text).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _obviously_not(target: Path, spec: TreeSpec) -> Optional[str]:
    """Why ``target`` cannot be the finished tree, from a look at it alone (None: maybe it is)."""
    if not target.is_dir():
        return "it is not a directory"
    if not is_git_top(target):
        return "it is not a git tree"
    if _git(target, "rev-parse", "--verify", "-q", f"refs/heads/{BRANCH}").returncode != 0:
        return f"it has no branch {BRANCH}"
    return None


def _difference(target: Path, spec: TreeSpec, base_tree: str, patches: list[Path]) -> Optional[str]:
    """What differs between ``target``'s branch ``upstream`` and the series on Debian's
    source (None: nothing)."""
    why = _obviously_not(target, spec)
    if why:
        return why
    n = len(patches)
    got = _git(target, "rev-parse", "-q", "--verify", f"{BRANCH}~{n}^{{tree}}").stdout.strip()
    if got != base_tree:
        return f"its branch {BRANCH} is not {n} commits on Debian's source (tree {base_tree[:12]})"
    commits = _git(target, "log", "--reverse", "-p", "--no-color", "--no-ext-diff", "--format=commit %H",
                   f"{BRANCH}~{n}..{BRANCH}").stdout
    mine = _patch_ids(target, commits)
    theirs = [(_patch_ids(target, p.read_text(errors="replace")) or ["?"])[0] for p in patches]
    for i, patch in enumerate(patches):
        if i >= len(mine) or mine[i] != theirs[i]:
            return f"its branch {BRANCH} differs from the series at {patch.name} (another version of it?)"
    return None


def _user_git(tree: Path) -> list[str]:
    """git as the user has it (their name on the commits ``git am`` makes), with the
    fallback identity of :data:`GIT` only when they have none configured; never signing
    (a prompt for a key would hang the command)."""
    if _git(tree, "config", "user.email").stdout.strip() and _git(tree, "config", "user.name").stdout.strip():
        return ["git", "-c", "commit.gpgsign=false"]
    log.info("no git identity configured (user.name, user.email): the commits git am makes in %s "
             "name %s as committer", tree.name, "A Kernel Developer <dev@example.org>")
    return GIT


def apply_series(tree: Path, patches: list[Path], log_file: Path, shown: str) -> None:
    """``git am`` the patches on ``tree``'s checked-out branch. On failure the am is aborted
    (the branch is back where it was) and :class:`BuildError` names the patch that failed
    and git's reason, in one line."""
    if not patches:
        raise BuildError(f"{shown}: no patches to apply")   # git am would read a mailbox from stdin
    proc = subprocess.run([*_user_git(tree), "-C", str(tree), "am", *map(str, patches)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    with open(log_file, "a") as out:
        out.write(f"\n$ git -C {tree} am {' '.join(p.name for p in patches)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode == 0:
        return
    text = proc.stdout + proc.stderr
    failed = re.search(r"^Patch failed at (\d+) ", text, re.M)
    patch = patches[int(failed.group(1)) - 1] if failed and 0 < int(failed.group(1)) <= len(patches) else None
    reasons = [line.strip() for line in text.splitlines()
               if line.startswith(("error:", "fatal:")) and "could not build fake ancestor" not in line]
    reason = reasons[0] if reasons else (text.strip().splitlines() or ["no output"])[-1]
    _git(tree, "am", "--abort")
    raise BuildError(f"{shown}: git am of {patch if patch else 'the series'} failed: {reason} "
                     f"(the am was aborted; log: {log_file})")


def _occupied(target: Path) -> bool:
    """Whether something is at ``target`` (an empty directory is not: the tree replaces it)."""
    return target.is_symlink() or target.exists() and not (target.is_dir() and not any(target.iterdir()))


def _make(origin: Path, base: str, spec: TreeSpec, patches: list[Path], target: Path, log_file: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        run_step(f"clone {origin} as {target.name}", ["git", "clone", "-q", "--no-checkout", origin, tmp],
                 log_file, quiet=True)
        run_step("remove the clone's origin remote", ["git", "-C", tmp, "remote", "remove", "origin"],
                 log_file, quiet=True)
        run_step(f"check out {spec.what}'s Debian source in {target} (branch {BRANCH})",
                 ["git", "-C", tmp, "checkout", "-q", "-b", BRANCH, base], log_file)
        log.info("git am %d patches of %s on %s", len(patches), spec.series, target.name)
        apply_series(tmp, patches, log_file, str(target))
        try:
            tmp.rename(target)
        except OSError as e:   # another run made it meanwhile (rename refuses a non-empty folder)
            raise HarnessError(f"{target} appeared while this run made it ({e.strerror}): "
                               f"run the command again to check it") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _result(target: Path, spec: TreeSpec, base: str, patches: list[Path], made: bool) -> SeriesTree:
    head = _out(target, "rev-parse", BRANCH)
    subjects = tuple(subject(p) for p in patches)
    return SeriesTree(target, spec.what, base, head, subjects, made)


def _warn_work_tree(target: Path, spec: TreeSpec) -> None:
    """The scenario builds QEMU's work tree as it is: say so when that is not the branch."""
    if not spec.builds_work_tree:
        return
    head = _git(target, "symbolic-ref", "-q", "--short", "HEAD").stdout.strip()
    dirty = _git(target, "status", "--porcelain", "--untracked-files=normal").stdout.strip()
    if head != BRANCH or dirty:
        log.warning("%s: the scenario builds this work tree as it is, and it is %s", target,
                    f"on {head or 'a detached HEAD'}, not {BRANCH}" if head != BRANCH else "changed (git status)")


def make_upstream_trees(dest: Optional[Path] = None, stack: str = STACK) -> list[SeriesTree]:
    """``dest/linux-upstream`` and ``dest/qemu-upstream`` (``dest``: :func:`default_dest`),
    each with the branch ``upstream`` = its series on Debian's source. Existing trees are
    checked, never changed (the module's docstring says why and how)."""
    dest = (dest or default_dest()).expanduser().resolve()
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest} is not a directory")
    targets = [(spec, dest / spec.name) for spec in SPECS]
    series = {spec.name: patch_files(spec.series) for spec in SPECS}
    for spec, target in targets:
        if not series[spec.name]:
            raise BuildError(f"no 0*.patch in {spec.series}: the series is missing from this installation")
        if _occupied(target):
            why = _obviously_not(target, spec)
            if why:
                raise HarnessError(f"{target} exists and {why}: remove it or pass --dest DIR; it is left as it is")
    # what the cache lacks is made here (downloads, unpacks: logged with progress)
    origins = {KERNEL.name: linux_source_tree(stack), QEMU.name: qemu_tree(stack, None)}
    log_file = cache.log_path("upstream-trees", stack)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    results = []
    for spec, target in targets:
        origin, patches = origins[spec.name], series[spec.name]
        base = root_commit(origin)
        if _occupied(target):
            why = _difference(target, spec, _out(origin, "rev-parse", f"{base}^{{tree}}"), patches)
            if why:
                raise HarnessError(f"{target} exists and {why}: remove it or pass --dest DIR; it is left as it is")
            log.info("%s is already the %s series on Debian's source: kept as it is", target, spec.what)
            _warn_work_tree(target, spec)
            results.append(_result(target, spec, _out(target, "rev-parse", f"{BRANCH}~{len(patches)}"),
                                   patches, made=False))
            continue
        _make(origin, base, spec, patches, target, log_file)
        results.append(_result(target, spec, base, patches, made=True))
    return results


def scenario_reaches(dest: Path) -> bool:
    """Whether the scenario's relative paths (``../../linux-upstream`` from ``scenarios/``)
    name the trees in ``dest``."""
    try:
        return dest.resolve() == default_dest().resolve()
    except ConfigError:
        return False
