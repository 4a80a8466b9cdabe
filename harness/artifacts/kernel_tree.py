"""A guest kernel built from a Linux tree of the user's own, with the harness's minimal configuration.

Debian's cloud kernel carries virtio as modules and everything else a distribution needs;
a kernel developer's tree is built here with only what the harness's guests use, all of it
built in (``images/guest-kernel.config``, printed by ``balloon-harness kernel-config``).
That fragment states requirements by meaning, each resolved to the symbols the tree's own
Kconfig defines (:mod:`harness.artifacts.kconfig`: Linux 7.2 renamed the balloon's), a tree
with no spelling of one refused before anything runs; then ``make allnoconfig`` with the
resolved fragment and the user's own fragments after it (``KCONFIG_ALLCONFIG``: the later
fragment wins), then every symbol the harness needs is checked (one a fragment turned off is
named, with the fragment), then ``bzImage``.

The build is out of tree (``make O=``): the user's tree is only read. A ``ref`` is exported
from git into the cache first (:func:`harness.artifacts.trees.export`). The result is cached
by the tree's content (:func:`harness.artifacts.trees.identify`), the configuration text and
the compiler: a second run with the same tree builds nothing, one commit later builds again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.artifacts import cache
from harness.artifacts.kconfig import (
    Requirement,
    Resolved,
    default_resolution,
    kconfig_symbols,
    parse_requirements,
    render,
    resolve,
)
from harness.artifacts.kernel import GuestKernel
from harness.artifacts.steps import run_step, say
from harness.artifacts.trees import KernelTree, TreeIdentity, export, identify, require_tree
from harness.errors import BuildError, ConfigError, MissingDependency
from harness.resources import data_dir

FRAGMENT_NAME = "guest-kernel.config"
ARCH = "x86_64"
IMAGE = Path("arch/x86/boot/bzImage")
# Host tools a kernel build needs beyond a C toolchain (objtool: libelf; kconfig: flex, bison).
BUILD_TOOLS = {"make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc"}
# The build's own stamps fixed, so one tree and compiler give one bzImage on any runner.
REPRODUCIBLE = {"KBUILD_BUILD_USER": "balloon-harness", "KBUILD_BUILD_HOST": "balloon-harness",
                "KBUILD_BUILD_TIMESTAMP": "1970-01-01"}
_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def fragment_path() -> Path:
    return data_dir("images") / FRAGMENT_NAME


def fragment_text() -> str:
    """The harness's configuration fragment (what ``kernel-config`` prints)."""
    return fragment_path().read_text()


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_X`` -> value of a ``.config`` or fragment (``n`` for ``# ... is not set``)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        m = _LINE.match(line)
        if m:
            values[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            values[m.group(1)] = "n"
    return values


def requirements() -> tuple[list[str], list[Requirement]]:
    """The fragment's header and its requirements (``# need:`` lines and their spellings)."""
    return parse_requirements(fragment_text(), str(fragment_path()))


def resolution_for(src: Path | None) -> list[Resolved]:
    """Each requirement with the spelling the Linux tree at ``src`` has (refused, naming the
    requirement and the symbols tried, when it has none); ``None``: the default stack's."""
    _, reqs = requirements()
    if src is None:
        return default_resolution(reqs)
    return resolve(reqs, kconfig_symbols(src), str(src))


def fragment_for(src: Path) -> str:
    """The fragment resolved for the Linux tree at ``src`` (``kernel-config --tree``)."""
    header, _ = requirements()
    return render(header, resolution_for(src), str(src))


def required_symbols(resolved: list[Resolved] | None = None) -> list[str]:
    """The symbols the harness's guests need built in: every ``=y`` of the resolved fragment
    (``None``: of the default stack's kernel, the fragment's first spellings)."""
    return [sym for r in (resolved if resolved is not None else resolution_for(None))
            for sym, value in r.spelling if value == "y"]


def merged_fragment(fragments: tuple[Path, ...], base: str | None = None) -> str:
    """The harness's fragment (``base``: resolved for a tree; else the file as it is), then each
    of the user's in order (a later value wins)."""
    parts = [fragment_text() if base is None else base]
    for f in fragments:
        try:
            parts.append(f"# --- {f}\n{Path(f).read_text()}")
        except OSError as e:
            raise ConfigError(f"kernel config fragment {f}: {e.strerror or e}") from None
    return "\n".join(p if p.endswith("\n") else p + "\n" for p in parts)


def missing_required(config: dict[str, str], fragments: tuple[Path, ...],
                     resolved: list[Resolved] | None = None) -> list[str]:
    """One line per required symbol the final ``.config`` does not have built in, saying why
    when a user fragment set it, and what it is needed for (empty: all there). With
    ``resolved`` (the tree's own spellings) every symbol is known to exist in the tree."""
    problems = []
    for r in (resolved if resolved is not None else resolution_for(None)):
        for sym, value in r.spelling:
            if value != "y":
                continue
            got = config.get(sym, "n")
            if got == "y":
                continue
            why = ("its dependencies are off" if resolved is not None
                   else "its dependencies are off, or this kernel has no such symbol")
            for f in reversed(fragments):
                setting = parse_config(Path(f).read_text()).get(sym)
                if setting is not None and setting != "y":
                    why = f"turned off by {f} ({sym}={setting})"
                    break
            problems.append(f"{sym} is {'=' + got if got != 'n' else 'off'}: {why} (needed for: {r.requirement.need})")
    return problems


def compiler_version() -> str:
    """The first line of ``gcc --version`` (part of the cache key: a new compiler rebuilds)."""
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise MissingDependency("building a kernel tree needs gcc: sudo apt-get install -y gcc") from None
    return out.splitlines()[0].strip() if out else "unknown"


def _require_tools() -> None:
    missing = [pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None]
    if not Path("/usr/include/libelf.h").exists() and not Path("/usr/include/gelf.h").exists():
        missing.append("libelf-dev")
    if missing:
        raise MissingDependency(f"building a kernel tree needs: sudo apt-get install -y {' '.join(missing)} "
                                f"(or `make bootstrap`)")


def require_linux_tree(path: Path) -> Path:
    return require_tree(path, "kernel source", "Kbuild", "Linux")


@dataclass(frozen=True)
class SourceKernel(GuestKernel):
    """A kernel built from a tree: one ``bzImage`` with every module the harness loads built
    in, so its image ships no modules and loads none (:attr:`ships_modules`)."""

    tree: Optional[KernelTree] = None
    identity: Optional[TreeIdentity] = None
    compiler: str = ""
    info: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def vmlinuz(self) -> Path:
        return self.root / "bzImage"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def ships_modules(self) -> bool:
        return False

    def image_key(self) -> list[str]:
        return ["built-in"]   # one base image serves every source-built kernel

    def module_path(self, name: str) -> Path:
        raise KeyError(f"{name} is built into the kernel of {self.package}: it has no modules")

    def builtin_modules(self) -> set[str]:
        return set()

    def load_order(self, names: list[str]) -> list[Path]:
        return []   # everything the harness loads is built in (checked when it was configured)


def configure(src: Path, obj: Path, fragments: tuple[Path, ...], log: Path) -> dict[str, str]:
    """``make allnoconfig`` with the fragment resolved for the tree at ``src`` and the user's
    after it, into ``obj``; refuses a tree whose Kconfig has no spelling of a requirement
    (before running anything), and a configuration that lacks a required symbol, naming each.
    Seconds: a bad fragment or tree fails before the build."""
    resolved = resolution_for(src)
    header, _ = requirements()
    obj.mkdir(parents=True, exist_ok=True)
    merged = obj.parent / "fragment.config"
    merged.write_text(merged_fragment(fragments, render(header, resolved, str(src))))
    run_step(f"configure the kernel (allnoconfig + {merged.name})",
             ["make", "-C", src, f"O={obj}", f"ARCH={ARCH}", f"KCONFIG_ALLCONFIG={merged}", "allnoconfig"], log)
    config = parse_config((obj / ".config").read_text())
    problems = missing_required(config, fragments, resolved)
    if problems:
        raise BuildError(f"the kernel configuration of {src} lacks what the harness needs "
                         f"(log: {log}):\n  " + "\n  ".join(problems))
    return config


def _check_clean(src: Path) -> None:
    """Kbuild refuses an out-of-tree build from a tree built in place; say so before it does."""
    for leftover in (".config", "include/config"):
        if (src / leftover).exists():
            raise BuildError(f"{src} has been built in place ({leftover} exists): an out-of-tree build "
                             f"refuses it; run `make mrproper` there, or give a `ref` (built from git)")


def _inputs(tree: KernelTree) -> tuple[Path, TreeIdentity, dict]:
    """The tree's folder, identity and cache key inputs: content, configuration, compiler."""
    src = require_linux_tree(tree.source)
    for f in tree.config:
        if not Path(f).is_file():
            raise ConfigError(f"kernel config fragment {f}: no such file")
    identity = identify(src, tree.ref)
    text = merged_fragment(tree.config)
    inputs = {"tree": identity.key, "config": hashlib.sha256(text.encode()).hexdigest(), "cc": compiler_version(),
              "arch": ARCH, "layout": 1}
    return src, identity, inputs


def _kernel(tree: KernelTree, identity: TreeIdentity, art: cache.Artifact) -> SourceKernel:
    built = json.loads((art.path / "build.json").read_text())
    cc = art.inputs["cc"]
    return SourceKernel(package=f"linux-tree:{tree.describe()}", version=identity.commit or identity.content,
                        release=built["release"], root=art.path, tree=tree, identity=identity, compiler=cc,
                        info={"tree": tree.describe(), "identity": identity.as_dict(), "compiler": cc,
                              "fragments": [str(f) for f in tree.config], "release": built["release"],
                              "cache_key": art.key})


def cached_kernel_tree(tree: KernelTree) -> Optional[SourceKernel]:
    """The kernel of ``tree`` if this cache has built it (None: it would be built)."""
    _, identity, inputs = _inputs(tree)
    art = cache.lookup("kernel-tree", inputs)
    return _kernel(tree, identity, art) if art else None


def _by_hand(src: Path, ref: Optional[str], log: Path) -> str:
    """How to repeat a failed build in a folder of one's own (the harness's is removed)."""
    at = f"git -C {src} worktree add /tmp/bh-src {ref} && " if ref else ""
    tree = "/tmp/bh-src" if ref else str(src)
    return (f"re-run by hand: {at}make -C {tree} O=/tmp/bh-obj ARCH={ARCH} "
            f"KCONFIG_ALLCONFIG={log.with_suffix('.config')} allnoconfig && "
            f"make -C {tree} O=/tmp/bh-obj ARCH={ARCH} -j{os.cpu_count() or 2} bzImage")


def build_kernel_tree(tree: KernelTree) -> SourceKernel:
    """The kernel of ``tree`` with the harness's configuration, from the cache or built."""
    src, identity, inputs = _inputs(tree)
    cc = inputs["cc"]

    def build(out: Path, log: Path) -> None:
        if identity.ref is None:
            _check_clean(src)
        _require_tools()
        source = src
        if identity.ref is not None:
            say(f"exporting {identity.describe()} from git")
            source = export(identity, out / "src")
        obj = out / "obj"
        configure(source, obj, tree.config, log)
        # kept beside the log: the build folder goes when the build fails, the recipe stays
        (log.with_suffix(".config")).write_text((out / "fragment.config").read_text())
        jobs = os.cpu_count() or 2
        try:
            run_step(f"build the kernel of {tree.describe()} (bzImage, make -j{jobs})",
                     ["make", "-C", source, f"O={obj}", f"ARCH={ARCH}", f"-j{jobs}", "bzImage"], log,
                     env={**os.environ, **REPRODUCIBLE})
        except BuildError as e:
            raise BuildError(str(e).split("\nre-run by hand:")[0] + "\n" + _by_hand(src, tree.ref, log)) from None
        if identity.ref is None and identify(src).key != identity.key:
            raise BuildError(f"{src} changed while it was being built: built again at the next run")
        shutil.copy2(obj / IMAGE, out / "bzImage")
        shutil.copy2(obj / ".config", out / "config")
        release = (obj / "include" / "config" / "kernel.release").read_text().strip()
        (out / "build.json").write_text(json.dumps({"release": release, "identity": identity.as_dict(),
                                                    "compiler": cc, "fragments": [str(f) for f in tree.config]},
                                                   indent=2) + "\n")
        shutil.rmtree(obj)
        if source != src:
            shutil.rmtree(source)

    art = cache.ensure("kernel-tree", inputs, build)
    say(f"kernel of {identity.describe()}: {'built' if art.fresh else 'cached'} ({art.path / 'bzImage'})")
    return _kernel(tree, identity, art)
