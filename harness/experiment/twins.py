"""An A/A scenario: one arm of a scenario against an identical copy of itself.

``balloon-harness calibrate`` runs it to measure each figure's noise floor (how far two
arms that cannot differ drift apart at a given number of repetitions): the same QEMU,
module, device and steps twice, under two names, interleaved in a random order per round.
The derived scenario is written as TOML (the run copies it into its results folder like any
other), without the original's other arms, expectations or reference numbers.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TWIN_SUFFIX = "-twin"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    """A TOML value: strings as basic strings (JSON's escapes are TOML's), tables inline."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise ConfigError(f"cannot write {type(v).__name__} {v!r} back to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """A scenario's parsed TOML as text: scalars first, then [tables], then [[arrays of tables]]."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]", *[f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items()]]
    for k, v in data.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines += ["", f"[[{_key(k)}]]", *[f"{_key(kk)} = {_value(vv)}" for kk, vv in item.items()]]
    return "\n".join(lines) + "\n"


def twin_scenario_text(path: str | Path, arm: str | None = None) -> tuple[str, str, str]:
    """(TOML text, arm, its twin's name): scenario ``path`` with only ``arm`` (default: the
    first) and a copy of it named ``<arm>-twin``, ``order = "random"``, no expectations."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: scenario file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    arms = [a for a in raw.get("arms", []) if isinstance(a, dict)]
    names = [str(a.get("name")) for a in arms]
    if not arms:
        raise ConfigError(f"{path}: no [[arms]] to calibrate")
    name = arm or names[0]
    if name not in names:
        raise ConfigError(f"{path}: no arm named {name!r} (arms: {', '.join(names)})")
    chosen = arms[names.index(name)]
    twin = {**chosen, "name": name + TWIN_SUFFIX,
            "description": f"an identical copy of {name} (calibrate: A/A)"}
    data = {k: v for k, v in raw.items() if k not in ("arms", "expect", "reference", "order", "order_seed")}
    data["name"] = f"{raw.get('name', path.stem)}-calibrate-{name}"
    data["description"] = f"A/A: {name} against an identical copy, interleaved in a random order per round"
    data["order"] = "random"
    data["arms"] = [chosen, twin]
    return dump_toml(data), name, name + TWIN_SUFFIX
