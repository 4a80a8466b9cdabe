"""Guest vmstat counters and tracepoint counts, per guest sample (issue 32; docs/guest-probes.md).

A scenario's ``[probes]`` names the counters (``guest_vmstat``) and tracepoints
(``guest_trace``) it wants. After boot, :func:`arm_probes` checks them against the guest's
kernel in two SSH round trips: the counters against its ``/proc/vmstat``, the tracepoints
against its tracefs, where each one present gets a histogram trigger
(``hist:keys=common_pid``). A trigger counts every hit of the tracepoint without writing
the trace buffer (the event is only soft-enabled), so counting costs no buffer and loses no
event when the buffer would wrap; reading the counts is one ``grep Hits:`` per event in the
sampler's own round trip (:meth:`GuestEvents.command`).

What the kernel lacks (a counter 6.1 does not have, such as ``thp_underused_split_page``;
a tracepoint of a newer kernel; tracefs or hist triggers themselves) is *absent*, with the
reason, in run.json's ``probes`` and the report's table: never a failed run, since the
same scenario runs on Linux 6.1, 6.12 and 7.2.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.procfs import parse_vmstat
from harness.results.metrics import GUEST_TRACE_SOURCE, GUEST_VMSTAT_SOURCE, Reading

log = logging.getLogger(__name__)

TRACEFS = "/sys/kernel/tracing"
TRIGGER = "hist:keys=common_pid"      # a total: every hit, whatever process
EVENT_MARK = "--bh-trace--"
_TOTAL = re.compile(r"^Hits:\s*(\d+)$")
_PER_VALUE = re.compile(r"^\{\s*(\w+):\s*([^\s}]+)\s*\}\s*hitcount:\s*(\d+)$")


def _path(name: str) -> str:
    """``sub:event[:field]`` -> the event's folder under tracefs' events/."""
    return "/".join(name.split(":")[:2])


def trigger(name: str) -> str:
    """The hist trigger of ``sub:event`` (a total) or ``sub:event:field`` (hits per value)."""
    parts = name.split(":")
    return f"hist:keys={parts[2]}" if len(parts) == 3 else TRIGGER


@dataclass
class GuestEvents:
    """The counters and tracepoints armed in one guest: what each sample reads, and what is absent."""

    vmstat: tuple[str, ...] = ()
    events: tuple[str, ...] = ()          # "subsystem:event[:field]", each with its trigger in place
    absent: dict[str, str] = field(default_factory=dict)   # name -> why it is not recorded
    kernel: str = ""
    formats: dict[str, str] = field(default_factory=dict)  # sub:event:field -> the event's print format

    def command(self) -> str:
        """The shell text the sampler appends to its round trip: per armed tracepoint an
        ``@@name`` line, its ``Hits:`` total and, for ``sub:event:field``, its per-value lines
        (the vmstat counters come from the sampler's /proc/vmstat)."""
        if not self.events:
            return ""
        parts = " ".join(f"{e}@{_path(e)}" for e in self.events)
        return (f"echo {EVENT_MARK}; cd {TRACEFS}/events && for e in {parts}; do "
                "echo \"@@${e%%@*}\"; grep -E '^[{]|Hits:' ${e#*@}/hist; done; cd /")

    def parse(self, text: str, vmstat: dict[str, int]) -> Reading:
        """One sample's values (``text``: the round trip's output; ``vmstat``: its /proc/vmstat):
        ``sub:event`` its hits so far, ``sub:event:field=value`` the hits per value."""
        r: Reading = {(GUEST_VMSTAT_SOURCE, name): float(vmstat[name]) for name in self.vmstat if name in vmstat}
        _, _, traced = text.partition(EVENT_MARK)
        current = None
        for line in traced.splitlines():
            line = line.strip()
            if line.startswith("@@"):
                current = line[2:].strip()
                continue
            if current is None:
                continue
            event = ":".join(current.split(":")[:2])
            hits = _TOTAL.match(line)
            if hits:
                r[(GUEST_TRACE_SOURCE, event)] = float(hits.group(1))
                continue
            value = _PER_VALUE.match(line)
            if value and current.count(":") == 2:
                r[(GUEST_TRACE_SOURCE, f"{current}={value.group(2)}")] = float(value.group(3))
        return r

    def info(self) -> dict[str, Any]:
        """What run.json records under ``probes``."""
        return {"kernel": self.kernel, "vmstat": list(self.vmstat), "trace": list(self.events),
                "triggers": {e: trigger(e) for e in self.events}, "absent": dict(self.absent),
                "formats": dict(self.formats)}


def _events_wanted(trace: tuple[str, ...], listing: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """The tracepoints ``trace`` names, ``subsystem:*`` expanded from the guest's ``listing``
    (subsystem -> its events, absent when the subsystem is not there), and those absent."""
    wanted: list[str] = []
    absent: dict[str, str] = {}
    for name in trace:
        sub, event = name.split(":")[:2]
        present = listing.get(sub)
        if present is None:
            absent[name] = f"no tracepoint subsystem {sub!r} in this kernel's tracefs"
        elif event == "*":
            if not present:
                absent[name] = f"tracepoint subsystem {sub!r} has no events"
            wanted += [f"{sub}:{e}" for e in present if f"{sub}:{e}" not in wanted]
        elif event not in present:
            absent[name] = f"no tracepoint {sub}/{event} in this kernel's tracefs"
        elif name not in wanted:
            wanted.append(name)
    # one trigger per event: a per-field one counts the total too, so a plain entry beside it goes
    fielded = {":".join(w.split(":")[:2]) for w in wanted if w.count(":") == 2}
    wanted = [w for w in wanted if not (w.count(":") == 1 and w in fielded)]
    return wanted, absent


def arm_probes(run: Callable[[str], str], vmstat: tuple[str, ...], trace: tuple[str, ...]) -> GuestEvents:
    """Check the scenario's probes against the guest's kernel and put the tracepoints'
    triggers in place (``run(command) -> stdout``: the sampler's SSH). Returns what is
    recorded and what is absent, and why."""
    subs = sorted({t.split(":", 1)[0] for t in trace})
    listing_cmd = "".join(f"echo '@@ {s}'; ls {TRACEFS}/events/{s} 2>/dev/null; " for s in subs)
    out = run(f"uname -r; grep -q ' {TRACEFS} ' /proc/mounts || mount -t tracefs nodev {TRACEFS} 2>&1; "
              f"test -d {TRACEFS}/events && echo tracefs-ok; echo {EVENT_MARK}; cat /proc/vmstat; "
              f"echo {EVENT_MARK}; {listing_cmd}true")
    head, _, rest = out.partition(EVENT_MARK)
    vm_text, _, listing_text = rest.partition(EVENT_MARK)
    kernel = head.splitlines()[0].strip() if head.strip() else ""
    present = parse_vmstat(vm_text)
    probes = GuestEvents(kernel=kernel)
    probes.vmstat = tuple(n for n in vmstat if n in present)
    for n in vmstat:
        if n not in present:
            probes.absent[n] = f"not in /proc/vmstat of Linux {kernel}"
    if not trace:
        return probes
    if "tracefs-ok" not in head:
        reason = f"no tracefs in the guest ({' '.join(head.split()[1:])[:200] or 'mount failed'})"
        probes.absent.update({t: reason for t in trace})
        return probes
    listing: dict[str, list[str]] = {}
    current = None
    for line in listing_text.splitlines():
        if line.startswith("@@ "):
            current = line[3:].strip()
            continue
        if current is not None:
            listing.setdefault(current, [])
            listing[current] += [w for w in line.split() if w not in ("enable", "filter")]
    for sub in list(listing):
        if not listing[sub]:
            del listing[sub]      # ls printed nothing: no such subsystem
    wanted, absent = _events_wanted(trace, listing)
    probes.absent.update(absent)
    if wanted:
        set_out = run("cd " + TRACEFS + "/events && " + "; ".join(
            f"echo '{trigger(e)}' >> {_path(e)}/trigger 2>/dev/null || echo '@@fail {e}'" for e in wanted)
            + "; true")
        failed = set(re.findall(r"^@@fail (\S+)$", set_out, re.MULTILINE))
        # a field's values are numbers in the hist; the event's print format names them
        # (e.g. __print_symbolic(REC->status, { 1, "skipped" }, ...)): kept in run.json
        fielded = [e for e in wanted if e.count(":") == 2 and e not in failed]
        if fielded:
            fmt = run(f"cd {TRACEFS}/events && " + "; ".join(
                f"echo '@@{e}'; grep '^print fmt' {_path(e)}/format" for e in fielded) + "; true")
            for e, text in re.findall(r"^@@(\S+)\n(print fmt:.*)$", fmt, re.MULTILINE):
                probes.formats[e] = text[:2000]
        for e in failed:
            probes.absent[e] = (f"the hist trigger {trigger(e)!r} could not be set (no such field of the event, or "
                                f"a kernel without CONFIG_HIST_TRIGGERS)")
        probes.events = tuple(e for e in wanted if e not in failed)
    if probes.absent:
        log.info("guest probes absent on Linux %s: %s", kernel,
                 "; ".join(f"{k}: {v}" for k, v in probes.absent.items()))
    return probes
