"""A small TOML writer for the property tests: generated scenario tables back to the text a
user would write (inline tables throughout, every key quoted), so the loader is tried on
text, as from a file."""

from __future__ import annotations

import math
from typing import Any, Optional


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


# ---- the scenarios the tests write: one preamble, arms and steps from here ------------------

QUICK_TIMING = {"settle_seconds": 3, "step_pause_seconds": 0.5}   # a short real-guest run
RFC_TIMING = {"settle_seconds": 20}                                 # the RFC's own settling


def table(name: str, keys: dict[str, Any]) -> str:
    """``[name]`` and its ``key = value`` lines (keys written bare, as a user would)."""
    return f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in keys.items()) if keys else ""


def preamble(name: str, repetitions: int = 1, memory_mib: int = 512, timing: Optional[dict[str, Any]] = None,
             files: Optional[dict[str, Any]] = None, vm: Optional[dict[str, Any]] = None, top: str = "") -> str:
    """The head every test scenario starts with: its name and repetitions, ``top`` (more
    top-level keys, as text), the guest's own files, a ``memory_mib`` guest (``vm``: more
    of its keys) and the timing (default :data:`QUICK_TIMING`)."""
    head = f'\nname = "{name}"\nrepetitions = {repetitions}\n{top}'
    if files:
        head += "[guest]\nfiles = " + value({g: str(h) for g, h in files.items()}) + "\n"
    return (head + table("vm", {"memory_mib": memory_mib, **(vm or {})})
            + table("timing", QUICK_TIMING if timing is None else timing))


def step(kind: str, label: Optional[str] = None, **keys: Any) -> str:
    """One ``[[steps]]`` table."""
    return "[[steps]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in
                                    {"kind": kind, **({"label": label} if label else {}), **keys}.items())


def arm(name: str, qemu: Any = "stock", module: Optional[str] = "stock", **keys: Any) -> str:
    """One ``[[arms]]`` table (stock by default; ``module=None`` leaves the key out)."""
    fields = {"name": name, "qemu": qemu, **({"module": module} if module is not None else {}), **keys}
    return "[[arms]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in fields.items())


def stock_arms(*names: str) -> str:
    return "".join(arm(n) for n in names)


def rfc_steps(usemem: str = "usemem --punch-holes -s -1 800m", kind: str = "background") -> str:
    """The RFC's experiment: usemem punching holes in 800 MiB of a 1 GiB guest, then the
    balloon to 624 MiB."""
    wait = {"ready": "punch holes done", "holds_mib": 360} if kind == "background" else {}
    return (step(kind, "usemem", command=usemem, **wait, timeout=900)
            + step("balloon", "balloon 624", target_mib=624))


def rfc_arms(**keys: Any) -> str:
    """The RFC's two arms: the patched QEMU with thp-order off (baseline) and on."""
    return (arm("baseline", device={"thp-order": "off"}, **keys)
            + arm("thp-order", device={"thp-order": "on"}, **keys))


def two_stock_arms(name: str) -> str:
    """The smallest valid scenario the command-line tests run: a 256 MiB guest, one balloon
    step, two stock arms (refusals are tried on it before anything builds or boots)."""
    return (f'name = "{name}"\n' + table("vm", {"memory_mib": 256}) + step("balloon", target_mib=200)
            + stock_arms("a", "b"))


def small_stock_run(name: str, arms: tuple[str, str]) -> str:
    """The short real-guest scenario the until-decided and calibrate tests boot: a 512 MiB
    guest, usemem punching holes in 200 MiB, a balloon to 400 MiB, two stock arms."""
    return (preamble(name) + step("run", "usemem", command="usemem --punch-holes 200m")
            + step("balloon", "balloon 400", target_mib=400) + stock_arms(*arms))


def after_balloon_steps(observe_seconds: float = 120, sample_hz: float = 1.0, **retouch: Any) -> str:
    """After a balloon step (docs/recovery.md): deflate back to full, retouch (usemem over
    what the deflate gave back, unless ``retouch`` says otherwise), observe."""
    return (step("deflate", "deflate") + step("retouch", "retouch", **retouch)
            + step("observe", "observe", seconds=observe_seconds, sample_hz=sample_hz))
