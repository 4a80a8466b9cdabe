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
TRIGGER = "hist:keys=common_pid"
EVENT_MARK = "--bh-trace--"
_HITS = re.compile(r"^@@(\S+)\s+(?:Hits:\s*(\d+))?\s*$", re.MULTILINE)


@dataclass
class GuestEvents:
    """The counters and tracepoints armed in one guest: what each sample reads, and what is absent."""

    vmstat: tuple[str, ...] = ()
    events: tuple[str, ...] = ()          # "subsystem:event", each with its trigger in place
    absent: dict[str, str] = field(default_factory=dict)   # name -> why it is not recorded
    kernel: str = ""

    def command(self) -> str:
        """The shell text the sampler appends to its round trip: one ``@@sub/event Hits: N``
        line per armed tracepoint (the vmstat counters come from the sampler's /proc/vmstat)."""
        if not self.events:
            return ""
        paths = " ".join(e.replace(":", "/") for e in self.events)
        return (f"echo {EVENT_MARK}; cd {TRACEFS}/events && for e in {paths}; do "
                f"printf '@@%s ' $e; grep -m1 'Hits:' $e/hist || echo; done; cd /")

    def parse(self, text: str, vmstat: dict[str, int]) -> Reading:
        """One sample's values (``text``: the round trip's output; ``vmstat``: its /proc/vmstat)."""
        r: Reading = {(GUEST_VMSTAT_SOURCE, name): float(vmstat[name]) for name in self.vmstat if name in vmstat}
        _, _, traced = text.partition(EVENT_MARK)
        for path, hits in _HITS.findall(traced):
            if hits:
                r[(GUEST_TRACE_SOURCE, path.replace("/", ":", 1))] = float(hits)
        return r

    def info(self) -> dict[str, Any]:
        """What run.json records under ``probes``."""
        return {"kernel": self.kernel, "vmstat": list(self.vmstat), "trace": list(self.events),
                "trigger": TRIGGER, "absent": dict(self.absent)}


def _events_wanted(trace: tuple[str, ...], listing: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """The tracepoints ``trace`` names, ``subsystem:*`` expanded from the guest's ``listing``
    (subsystem -> its events, absent when the subsystem is not there), and those absent."""
    wanted: list[str] = []
    absent: dict[str, str] = {}
    for name in trace:
        sub, event = name.split(":", 1)
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
            f"echo '{TRIGGER}' >> {e.replace(':', '/')}/trigger 2>/dev/null || echo '@@fail {e}'" for e in wanted)
            + "; true")
        failed = set(re.findall(r"^@@fail (\S+)$", set_out, re.MULTILINE))
        for e in failed:
            probes.absent[e] = "the hist trigger could not be set (a kernel without CONFIG_HIST_TRIGGERS?)"
        probes.events = tuple(e for e in wanted if e not in failed)
    if probes.absent:
        log.info("guest probes absent on Linux %s: %s", kernel,
                 "; ".join(f"{k}: {v}" for k, v in probes.absent.items()))
    return probes
