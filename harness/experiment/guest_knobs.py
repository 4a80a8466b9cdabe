"""Guest knobs: sysctl and sysfs values an arm writes in its guest before the first step
(issue 32; docs/guest-probes.md).

``[guest] knobs`` and an arm's ``guest_knobs`` map a guest path (under ``/proc/sys``,
``/sys/kernel/mm`` or ``/sys/module/<m>/parameters``; the schema checks the path) to the text
written there. They are written in the scenario's order, in one SSH round trip, right after
boot and the mechanism's attach, and each is read back: run.json's ``guest_knobs`` records
what was asked and what the kernel then says (``always [madvise] never`` for a choice, the
number for a sysctl). A write the kernel refuses fails the run with one line naming the
path, the value and the errno, since every figure after it would describe another setting
than the arm claims.

The host's own knobs are ``host_thp`` (harness.host.knobs); the guest's THP mode at boot is
``[vm] guest_thp`` (a kernel command-line option): a ``guest_knobs`` entry for
``/sys/kernel/mm/transparent_hugepage/enabled`` overrides it after boot.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
from typing import Any, Callable

from harness.errors import GuestStateError

log = logging.getLogger(__name__)

# strerror text -> errno name, as tee prints it ("tee: /proc/sys/vm/x: Invalid argument"; tee,
# not the shell's own redirection: dash's printf says only "I/O error")
_STRERRORS = {os.strerror(code): name for code, name in sorted(errno.errorcode.items(), reverse=True)}
_LINE = re.compile(r"^@@(w|r) (\d+) (\d+) ?(.*)$")


def errno_name(message: str) -> str:
    """The errno name a shell's error message carries (``EINVAL``), else the message itself."""
    for text, name in sorted(_STRERRORS.items(), key=lambda kv: -len(kv[0])):
        if text and text in message:
            return f"{name} ({text})"
    return message.strip() or "unknown error"


def _command(knobs: dict[str, str]) -> str:
    """One shell command: per knob, does it exist, write it (its status and error), read it back."""
    parts = []
    for i, (path, value) in enumerate(knobs.items()):
        p, v = shlex.quote(path), shlex.quote(value)
        parts.append(f"if [ -e {p} ]; then e=$(printf '%s\\n' {v} | tee {p} 2>&1 >/dev/null); echo \"@@w {i} $? $e\"; "
                     f"else echo \"@@w {i} 2 No such file or directory\"; fi; "
                     f"echo \"@@r {i} 0 $(cat {p} 2>/dev/null | head -c 300 | tr '\\n' ' ')\"")
    return "; ".join(parts) + "; true"


def apply(run: Callable[[str], str], knobs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Write ``knobs`` in the guest (``run(command) -> stdout``) and read each back. Returns
    path -> {"requested", "read_back"}; raises GuestStateError (one line: path, value,
    errno) at the first knob the kernel refused."""
    if not knobs:
        return {}
    out = run(_command(knobs))
    paths = list(knobs)
    written: dict[int, tuple[int, str]] = {}
    read: dict[int, str] = {}
    for line in out.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        kind, i, rc, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if kind == "w":
            written[i] = (rc, rest)
        else:
            read[i] = rest.strip()
    record: dict[str, dict[str, Any]] = {}
    for i, path in enumerate(paths):
        rc, message = written.get(i, (-1, "the guest printed no status"))
        if rc != 0:
            raise GuestStateError(f"guest knob {path} = {knobs[path]!r}: the guest kernel refused the write: "
                                  f"{errno_name(message)}")
        record[path] = {"requested": knobs[path], "read_back": read.get(i, "")}
        if not _holds(knobs[path], record[path]["read_back"]):
            log.warning("guest knob %s: wrote %r, reads back %r", path, knobs[path], record[path]["read_back"])
    return record


def _holds(value: str, read_back: str) -> bool:
    """Whether the read-back text shows ``value``: equal, or the [chosen] one of a choice list."""
    return read_back.strip() == value.strip() or f"[{value.strip()}]" in read_back.split()
