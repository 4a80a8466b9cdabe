"""The host's THP knobs: read them all, set some for a run, put them back after any ending.

The same scenario gives different answers under different knobs: ``defrag`` decides
whether a fault compacts for a huge page, khugepaged (``pages_to_scan``,
``scan_sleep_millisecs``, ``max_ptes_none``) collapses split ranges again, and since
Linux 6.12 the underused-THP shrinker (``shrink_underused``; ``max_ptes_none`` decides
what is underused) splits huge pages under memory pressure. :func:`snapshot` records
every knob the host has (for every run's metadata, set or not); :func:`apply` sets some,
refusing in one line naming the knob when the host lacks it, cannot write it, or would
not take the value, and returns a context manager that restores the old values on any
ending. Each change is journaled first (:mod:`harness.host.journal`), so a SIGKILLed
harness's changes are undone at the next start.

Names are paths under ``/sys/kernel/mm/transparent_hugepage`` with ``.`` for ``/``:
``defrag``, ``khugepaged.max_ptes_none``, ``hugepages-2048kB.enabled`` (a multi-size THP
size's own mode). A TOML table ``[host.thp.khugepaged]`` arrives nested: both work.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from harness.errors import ConfigError
from harness.host.journal import Journal, host_lock, live_entries
from harness.procfs import parse_thp_setting

log = logging.getLogger(__name__)

THP_SYSFS = Path("/sys/kernel/mm/transparent_hugepage")

# The knobs the harness sets and records (any other file there is a reading, not a knob).
NAMED = ("enabled", "defrag", "shmem_enabled", "use_zero_page", "shrink_underused",
         "khugepaged.defrag", "khugepaged.pages_to_scan", "khugepaged.scan_sleep_millisecs",
         "khugepaged.alloc_sleep_millisecs", "khugepaged.max_ptes_none", "khugepaged.max_ptes_swap",
         "khugepaged.max_ptes_shared")
_MTHP = re.compile(r"hugepages-[0-9]+kB\.(enabled|shmem_enabled)")


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"khugepaged": {"max_ptes_none": 0}}`` -> ``{"khugepaged.max_ptes_none": 0}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def knob_path(name: str, root: Optional[Path] = None) -> Path:
    if name not in NAMED and not _MTHP.fullmatch(name):
        raise ConfigError(f"host THP knob {name!r}: not a knob the harness sets "
                          f"(one of {', '.join(NAMED)}, or hugepages-<size>kB.enabled/shmem_enabled)")
    return (root or THP_SYSFS) / name.replace(".", "/")


def _mthp_names(root: Path) -> list[str]:
    return [f"{d.name}.{f}" for d in sorted(root.glob("hugepages-*kB"), key=lambda p: int(p.name[10:-2]))
            for f in ("enabled", "shmem_enabled") if (d / f).is_file()]


def read(name: str, root: Optional[Path] = None) -> str:
    """A knob's value: the bracketed choice of a mode (``madvise``) or the number."""
    return parse_thp_setting(knob_path(name, root).read_text())


def snapshot(root: Optional[Path] = None) -> dict[str, str]:
    """Every knob this host has, by name (for metadata.json of every run; absent knobs are
    left out, so a reader sees what the host had)."""
    base = root or THP_SYSFS
    out = {}
    for name in (*NAMED, *_mthp_names(base)):
        try:
            out[name] = read(name, base)
        except OSError:
            continue
    return out


def _checked_value(name: str, path: Path, value: Any) -> str:
    """The text to write, or a one-line refusal naming the knob."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"host THP knob {name}: this host has no {path} "
                          "(older kernel, or THP not built in)") from None
    except OSError as e:
        raise ConfigError(f"host THP knob {name}: cannot read {path}: {e.strerror}") from None
    if isinstance(value, bool):
        value = int(value)
    word = str(value).strip()
    if "[" in text:
        choices = text.replace("[", "").replace("]", "").split()
        if word not in choices:
            raise ConfigError(f"host THP knob {name}: {word!r} is not one of {', '.join(choices)}")
    elif not re.fullmatch(r"[0-9]+", word):
        raise ConfigError(f"host THP knob {name}: a whole number, got {value!r}")
    return word


def check(settings: Mapping[str, Any], root: Optional[Path] = None, where: str = "host.thp") -> dict[str, str]:
    """Validate ``settings`` against this host without changing anything (for a scenario's
    loader: refused before the build): {name: text to write}. Same one-line refusals as
    :func:`apply`, prefixed with ``where``."""
    base = root or THP_SYSFS
    out = {}
    for name, value in flatten(settings).items():
        try:
            out[name] = _checked_value(name, knob_path(name, base), value)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return out


class Applied:
    """Knobs set by :func:`apply`; ``restore()`` (or leaving the ``with``) puts them back.
    ``before``/``after``: the full snapshots around the change, for metadata."""

    def __init__(self, journal: Journal, root: Path):
        self.journal = journal
        self.root = root
        self.changed: list[dict[str, Any]] = []
        self.before: dict[str, str] = {}
        self.after: dict[str, str] = {}

    def __enter__(self) -> Applied:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> list[str]:
        """Put every changed knob back (newest first); idempotent. Returns what it did."""
        done = []
        with host_lock(self.journal.directory):
            while self.changed:
                entry = self.changed.pop()
                try:
                    Path(entry["path"]).write_text(str(entry["original"]))
                    self.journal.forget(entry)
                    done.append(f"restored {entry['name']} = {entry['original']}")
                except OSError as e:   # left in the journal: the next start tries again
                    log.error("could not restore host THP knob %s to %s: %s", entry["name"], entry["original"], e)
        for line in done:
            log.info("host THP knob %s", line)
        return done


def apply(settings: Mapping[str, Any], root: Optional[Path] = None, journal: Optional[Journal] = None) -> Applied:
    """Set ``settings`` (name -> value) now; use the result as a context manager so the old
    values come back on any ending. Refuses (ConfigError, one line naming the knob) before
    changing anything when a knob is missing, not writable, would not take the value, or is
    held by another running harness; if the kernel refuses a write, what was set is restored."""
    base = root or THP_SYSFS
    flat = flatten(settings)
    journal = journal or Journal()
    plan = []
    for name, value in flat.items():
        path = knob_path(name, base)
        word = _checked_value(name, path, value)
        plan.append((name, path, word))
    applied = Applied(journal, base)
    with host_lock(journal.directory):
        held = {e["name"]: pid for pid, e in live_entries(journal.directory, exclude_pid=journal.pid)
                if e.get("type") == "knob"}
        for name, _, _ in plan:
            if name in held:
                raise ConfigError(f"host THP knob {name}: set by another running balloon-harness (pid "
                                  f"{held[name]}); runs that set host knobs cannot overlap")
        applied.before = snapshot(base)
        for name, path, word in plan:
            original = parse_thp_setting(path.read_text())
            entry = {"type": "knob", "name": name, "path": str(path), "original": original, "value": word}
            journal.record(entry)
            applied.changed.append(entry)
            try:
                path.write_text(word)
                got = parse_thp_setting(path.read_text())
            except OSError as e:
                got, why = None, e.strerror or str(e)
            else:
                why = f"it reads back {got!r}"
            if got != word:
                _undo_partial(applied)
                raise ConfigError(f"host THP knob {name}: could not set {word!r} in {path} ({why})")
        applied.after = snapshot(base)
    if plan:
        log.info("host THP knobs set: %s", ", ".join(f"{n}={w}" for n, _, w in plan))
    return applied


def _undo_partial(applied: Applied) -> None:
    """Called under the lock: put back what an aborted apply changed."""
    while applied.changed:
        entry = applied.changed.pop()
        try:
            Path(entry["path"]).write_text(str(entry["original"]))
            applied.journal.forget(entry)
        except OSError as e:
            log.error("could not restore host THP knob %s: %s", entry["name"], e)
