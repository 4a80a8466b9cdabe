"""A small TOML writer for the property tests: generated scenario tables back to the text a
user would write (inline tables throughout, every key quoted), so the loader is tried on
text, as from a file."""

from __future__ import annotations

import math
from typing import Any


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_string(str(k))} = {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def dumps(table: dict[str, Any]) -> str:
    """A document of ``key = value`` lines."""
    return "".join(f"{_string(k)} = {value(v)}\n" for k, v in table.items())


def two_stock_arms(name: str) -> str:
    """The smallest valid scenario the command-line tests run: a 256 MiB guest, one balloon
    step, two stock arms (refusals are tried on it before anything builds or boots)."""
    return f'''name = "{name}"
[vm]
memory_mib = 256
[[steps]]
kind = "balloon"
target_mib = 200
[[arms]]
name = "a"
qemu = "stock"
module = "stock"
[[arms]]
name = "b"
qemu = "stock"
module = "stock"
'''


def small_stock_run(name: str, arms: tuple[str, str]) -> str:
    """The short real-guest scenario the until-decided and calibrate tests boot: a 512 MiB
    guest, usemem punching holes in 200 MiB, a balloon to 400 MiB, two stock arms."""
    first, second = arms
    return f'''
name = "{name}"
repetitions = 1
[vm]
memory_mib = 512
[timing]
settle_seconds = 3
step_pause_seconds = 0.5
[[steps]]
kind = "run"
label = "usemem"
command = "usemem --punch-holes 200m"
[[steps]]
kind = "balloon"
label = "balloon 400"
target_mib = 400
[[arms]]
name = "{first}"
qemu = "stock"
module = "stock"
[[arms]]
name = "{second}"
qemu = "stock"
module = "stock"
'''
