"""A user's source tree (a Linux or QEMU checkout): what it is, by content, and a copy of it.

Kernel and QEMU developers test their own tree, at HEAD or at a ref, often with edits not
yet committed. A build of it is cached by what the tree holds, never by its path or mtime:

- a git work tree: the tree object of the ref (``git rev-parse REF^{tree}``: the same
  content under another commit message or another clone is the same build), plus, without
  a ref, a hash of the uncommitted changes (``git diff HEAD --binary``), of the untracked,
  not ignored files and of submodules moved from their recorded commit; any of those makes
  the tree *dirty*, and the metadata says so. (A ref is exported with ``git archive``,
  which leaves submodules out: build a tree with submodules at its checked-out state.)
- a plain directory (an unpacked tarball): a hash of every file's path, mode and content.

The user's tree is only read: :func:`export` copies that same content (the ref's, or the
work tree's tracked and untracked files) into a folder of the cache for a build that must
write into its source (QEMU's configure, a ref that is not checked out).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.errors import BuildError, ConfigError

# An arm's ``kernel = { source = DIR, config = [FRAGMENT...], ref = REF }`` and ``qemu = {
# source = DIR, ref = REF }``: declared with the other scenario keys (the scenario schema).
from harness.results.scenario_schema import KernelTree, QemuTree  # noqa: F401


@dataclass(frozen=True)
class TreeIdentity:
    """What a tree holds, as a cache key can use it."""

    path: str
    kind: str                    # "git" or "dir"
    content: str                 # git: the tree object; dir: the content hash
    commit: Optional[str] = None     # git: the commit the ref (or HEAD) names
    ref: Optional[str] = None
    changes: Optional[str] = None    # git, no ref: hash of the diff and untracked files
    dirty: bool = False

    @property
    def key(self) -> dict[str, Optional[str]]:
        """The part of a cache key that says what was built (not where it was)."""
        return {"kind": self.kind, "content": self.content, "changes": self.changes}

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "content": self.content, "commit": self.commit,
                "ref": self.ref, "changes": self.changes, "dirty": self.dirty}

    def describe(self) -> str:
        what = f"{self.commit[:12]}" if self.commit else f"content {self.content[:12]}"
        return f"{self.path} ({what}{', dirty: uncommitted changes' if self.dirty else ''})"


def _git(tree: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=not binary,
                          stdin=subprocess.DEVNULL)


def is_git_top(tree: Path) -> bool:
    """Whether ``tree`` is the top of a git work tree (not a folder inside another repository)."""
    if not (tree / ".git").exists() or shutil.which("git") is None:
        return False
    top = _git(tree, "rev-parse", "--show-toplevel")
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == tree.resolve()


def _untracked(tree: Path) -> list[str]:
    out = _git(tree, "ls-files", "--others", "--exclude-standard", "-z")
    return sorted(p for p in out.stdout.split("\0") if p)


def _hash_files(root: Path, rels: list[str], h: Any) -> None:
    for rel in rels:
        p = root / rel
        h.update(rel.encode() + b"\0")
        if p.is_symlink():
            h.update(b"l" + os.readlink(p).encode())
        elif p.is_file():
            h.update(b"x" if os.access(p, os.X_OK) else b"f")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")


def _dir_files(root: Path) -> list[str]:
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")   # a repository git cannot read here
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rels.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(rels)


def require_tree(path: Path, what: str, marker: str, kind: str) -> Path:
    """``path`` resolved, refused unless it is a folder holding ``marker`` (Linux: ``Kbuild``,
    QEMU: ``configure``) at its top: a typo is named before anything builds."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{what} {p}: no such folder")
    if not p.is_dir():
        raise ConfigError(f"{what} {p}: not a folder (a source tree is a folder)")
    if not (p / marker).is_file():
        raise ConfigError(f"{what} {p}: not a {kind} source tree (it has no {marker} at its top)")
    return p.resolve()


def identify(path: Path, ref: Optional[str] = None) -> TreeIdentity:
    """The identity of the tree at ``path`` (at ``ref`` when given: a git tree only)."""
    path = Path(path).resolve()
    if is_git_top(path):
        rev = ref or "HEAD"
        commit = _git(path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if commit.returncode != 0:
            raise ConfigError(f"{path}: git ref {rev!r} names no commit")
        content = _git(path, "rev-parse", f"{rev}^{{tree}}").stdout.strip()
        if ref is not None:
            return TreeIdentity(str(path), "git", content, commit.stdout.strip(), ref)
        diff = _git(path, "diff", "HEAD", "--binary", binary=True)
        if diff.returncode != 0:
            raise BuildError(f"{path}: git diff HEAD failed: {diff.stderr.decode(errors='replace').strip()}")
        untracked = _untracked(path)
        # submodules (QEMU's meson, keycodemapdb...): their checked-out commits and whether
        # their work trees have changes ('+' or a '-dirty' describe in the status)
        modules = _git(path, "submodule", "status", "--recursive").stdout if (path / ".gitmodules").exists() else ""
        moved = any(line[:1] in "+-U" for line in modules.splitlines())
        changes = None
        if diff.stdout or untracked or moved:
            h = hashlib.sha256(diff.stdout)
            h.update(modules.encode())
            _hash_files(path, untracked, h)
            changes = h.hexdigest()
        return TreeIdentity(str(path), "git", content, commit.stdout.strip(), None, changes, changes is not None)
    if ref is not None:
        raise ConfigError(f"{path}: a ref ({ref!r}) needs a git work tree, and this folder is not one")
    h = hashlib.sha256()
    _hash_files(path, _dir_files(path), h)
    return TreeIdentity(str(path), "dir", h.hexdigest())


def _tar_into(producer: list[str], dest: Path, cwd: Path) -> None:
    """``producer`` (run in ``cwd``) writes a tar archive to stdout; it is unpacked into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    src = subprocess.Popen(producer, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
    assert src.stdout is not None and src.stderr is not None
    unpack = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=src.stdout, capture_output=True)
    src.stdout.close()
    err = src.stderr.read().decode(errors="replace").strip()
    if src.wait() != 0 or unpack.returncode != 0:
        raise BuildError(f"copying {cwd} into {dest} failed: {err} {unpack.stderr.decode(errors='replace').strip()}")


def export(identity: TreeIdentity, dest: Path) -> Path:
    """The tree's content, as :func:`identify` saw it, copied into ``dest`` (the user's tree
    is read, never written: no checkout, no stash)."""
    src = Path(identity.path)
    if identity.kind == "git" and identity.ref is not None:
        _tar_into(["git", "archive", "--format=tar", identity.commit or identity.ref], dest, src)
    elif identity.kind == "git":  # the work tree: tracked files as they are now, and untracked ones
        tracked = _git(src, "ls-files", "--cached", "--recurse-submodules", "-z")   # with submodules' files
        untracked = _git(src, "ls-files", "--others", "--exclude-standard", "-z")
        names = [n for n in (tracked.stdout + "\0" + untracked.stdout).split("\0")
                 if n and os.path.lexists(src / n) and not os.path.isdir(src / n)]
        dest.mkdir(parents=True, exist_ok=True)
        files = dest.parent / f".{dest.name}.files"
        files.write_bytes("\0".join(names).encode())
        try:
            _tar_into(["tar", "--null", "--no-recursion", "-T", str(files), "-cf", "-"], dest, src)
        finally:
            files.unlink(missing_ok=True)
    else:
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    return dest
