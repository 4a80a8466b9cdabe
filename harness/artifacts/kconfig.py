"""The guest kernel's requirements by meaning, resolved to the symbols a given Linux tree has.

Kconfig symbols get renamed: Linux 7.2's balloon rework turned 6.1's ``MEMORY_BALLOON`` and
``BALLOON_COMPACTION`` into ``BALLOON`` and ``BALLOON_MIGRATION``. A fragment that names one
kernel's symbols refuses every other kernel, so the harness's fragment
(``images/guest-kernel.config``) states *requirements*: each ``# need: <what>`` line is one,
the ``CONFIG_`` lines after it spell it as Linux 6.1 does (the default stack's kernel), and
each ``# or: CONFIG_A=y CONFIG_B=y`` line is another kernel's spelling. :func:`resolve` takes,
for each requirement, the first spelling whose ``=y`` symbols the tree's Kconfig all defines,
and refuses only a tree that has no spelling of some requirement, naming it and the symbols
it tried.

Which symbols a tree defines is read from its Kconfig files (:func:`kconfig_symbols`): every
``config``/``menuconfig`` entry outside help texts, in every ``Kconfig*`` file of the tree
but the other architectures' (a symbol only arm64 defines is not this x86 guest's). That is
what Kconfig itself parses, without running it: about 0.3 CPU seconds on a Linux 7.2 tree
(0.4 to 0.7 s wall at load 8 here), no compiler.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BuildError, ConfigError

SRCARCH = "x86"
NEED = "# need:"
OR = "# or:"
_ASSIGN = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(\S*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_ENTRY = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*(?:#.*)?$")
_HELP = re.compile(r"^\s*(?:help|---help---)\s*$")

Spelling = tuple[tuple[str, str], ...]   # ((CONFIG_X, "y"), (CONFIG_Y, "n"), ...)


@dataclass(frozen=True)
class Requirement:
    """One thing the guests need (``need``), and the ways kernels spell it, preferred first."""

    need: str
    spellings: tuple[Spelling, ...]
    comments: tuple[str, ...] = ()    # the fragment's comment lines under the ``# need:`` line

    def wanted(self, spelling: Spelling) -> list[str]:
        """The symbols a spelling needs defined (those it turns on; one it turns off may be absent)."""
        return [sym for sym, value in spelling if value != "n"]


@dataclass(frozen=True)
class Resolved:
    """A requirement with the spelling a tree has."""

    requirement: Requirement
    spelling: Spelling

    def lines(self) -> list[str]:
        return [f"{NEED} {self.requirement.need}", *self.requirement.comments,
                *(f"{sym}={value}" for sym, value in self.spelling)]


def _assignments(text: str, where: str) -> Spelling:
    out = []
    for word in text.split():
        m = _ASSIGN.match(word)
        if not m:
            raise ConfigError(f"{where}: {word!r} is not CONFIG_NAME=value")
        out.append((m.group(1), m.group(2)))
    return tuple(out)


def parse_requirements(text: str, where: str = "fragment") -> tuple[list[str], list[Requirement]]:
    """The fragment's header comments and its requirements, in order."""
    header: list[str] = []
    raw: list[tuple[str, list[str], list[list[tuple[str, str]]]]] = []   # need, comments, spellings
    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if line.startswith(NEED):
            raw.append((line[len(NEED):].strip(), [], [[]]))
            continue
        assign = _ASSIGN.match(line) or _UNSET.match(line)
        if not raw:
            if assign:
                raise ConfigError(f"{where}:{n}: {line} belongs to no requirement (a `{NEED} ...` line first)")
            header.append(line)
            continue
        need, comments, spellings = raw[-1]
        if line.startswith(OR):
            spellings.append(list(_assignments(line[len(OR):], f"{where}:{n}")))
        elif assign:
            spellings[0].append((assign.group(1), assign.group(2) if _ASSIGN.match(line) else "n"))
        elif line.strip():
            comments.append(line)
    requirements = []
    for need, comments, spellings in raw:
        if not spellings[0]:
            raise ConfigError(f"{where}: requirement {need!r} sets no symbol")
        requirements.append(Requirement(need, tuple(tuple(s) for s in spellings), tuple(comments)))
    return header, requirements


def kconfig_files(src: Path) -> Iterator[Path]:
    """Every ``Kconfig*`` file of the tree, but the other architectures' and git's."""
    for top, dirs, files in os.walk(src):
        rel = os.path.relpath(top, src)
        if rel == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
        elif rel == "arch":
            dirs[:] = [d for d in dirs if d == SRCARCH]
        for name in files:
            if name.startswith("Kconfig"):
                yield Path(top) / name


def symbols_in(text: str) -> set[str]:
    """The symbols one Kconfig file defines (``config X``/``menuconfig X``), help texts skipped
    (a help text may say "config BALLOON" in prose): a help text ends at the first line indented
    less than its own first line, as in Kconfig's lexer."""
    found: set[str] = set()
    help_indent: int | None = None    # inside a help text: None before its first line is seen
    in_help = False
    for line in text.splitlines():
        if in_help:
            if not line.strip():
                continue
            indent = len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())
            if help_indent is None:
                help_indent = indent
                continue
            if indent >= help_indent:
                continue
            in_help = False
        if _HELP.match(line):
            in_help, help_indent = True, None
            continue
        m = _ENTRY.match(line)
        if m:
            found.add(m.group(1))
    return found


def kconfig_symbols(src: Path) -> frozenset[str]:
    """The symbols the Linux tree at ``src`` defines for x86."""
    found: set[str] = set()
    for path in kconfig_files(Path(src)):
        try:
            found |= symbols_in(path.read_text(errors="replace"))
        except OSError:
            continue    # a dangling symlink or an unreadable file defines nothing
    if not found:
        raise ConfigError(f"{src}: no Kconfig file defines any symbol: not a Linux source tree")
    return frozenset(found)


def _lacking(spelling: Spelling, defined: frozenset[str], req: Requirement) -> list[str]:
    return [sym for sym in req.wanted(spelling) if sym.removeprefix("CONFIG_") not in defined]


def _tried(req: Requirement, defined: frozenset[str]) -> str:
    parts = []
    for spelling in req.spellings:
        names = " + ".join(req.wanted(spelling))
        lacking = _lacking(spelling, defined, req)
        parts.append(f"{names} (no {', '.join(lacking)})" if len(lacking) < len(req.wanted(spelling))
                     else f"{names} (none defined)")
    return "; ".join(parts)


def resolve(requirements: Iterable[Requirement], defined: frozenset[str], where: str) -> list[Resolved]:
    """Each requirement with the first spelling whose ``=y`` symbols ``defined`` has all of.
    Refused (one line per requirement) when some requirement has no such spelling."""
    resolved, problems = [], []
    for req in requirements:
        spelling = next((s for s in req.spellings if not _lacking(s, defined, req)), None)
        if spelling is None:
            problems.append(f"need {req.need}: tried {_tried(req, defined)}")
        else:
            resolved.append(Resolved(req, spelling))
    if problems:
        raise BuildError(f"the Kconfig of {where} has no spelling of what the harness needs (it defines none "
                         f"of the symbols tried, or only some of one spelling):\n  " + "\n  ".join(problems))
    return resolved


def default_resolution(requirements: Iterable[Requirement]) -> list[Resolved]:
    """Each requirement's first spelling: the default stack's kernel (Linux 6.1)."""
    return [Resolved(req, req.spellings[0]) for req in requirements]


def render(header: list[str], resolved: list[Resolved], where: str) -> str:
    """A plain fragment (``make olddefconfig``, ``KCONFIG_ALLCONFIG``) of the resolved spellings."""
    lines = [*header, f"# resolved for the Kconfig of {where}"]
    for r in resolved:
        lines += r.lines()
    return "\n".join(lines) + "\n"
