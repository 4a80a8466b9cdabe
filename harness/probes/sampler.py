"""Sampling host and guest metrics in the background while a run's steps execute.

The host side (QEMU process ``smaps_rollup``, host ``meminfo`` and ``thp_*``
counters, balloon ``actual`` over QMP) is cheap and sampled at ``host_hz``
(5/s by default) so a balloon's trajectory is visible. The guest side goes over
SSH, which costs a round trip through the emulated NIC, so it is sampled less
often. Every value becomes one tidy row: (seconds, phase, source, metric, value).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from harness.arch import THP_ORDER
from harness.errors import HarnessError
from harness.probes import host
from harness.probes.guest_events import EVENT_MARK, GuestEvents
from harness.procfs import free_blocks_at_least, kernel_cpu_seconds, parse_buddyinfo, parse_meminfo, parse_vmstat
from harness.results.metrics import (
    AHP_KEY,
    GUEST_COUNTERS,
    GUEST_CPU_KEY,
    GUEST_MEMINFO,
    HOST_THP_COUNTERS,
    RSS_KEY,
    SIZE_KEY,
    Reading,
    Series,
)

if TYPE_CHECKING:
    from harness.probes.framemap import FrameMap

Row = tuple[float, str, str, str, float]


def read_host(pid: int, size_mib: Callable[[], float] | None) -> Reading:
    """One host reading: the QEMU process, host-wide THP, and the guest's size as its
    mechanism reports it (balloon ``actual``, virtio-mem ``size``)."""
    r: Reading = {}
    pm = host.process_memory(pid)
    r[RSS_KEY] = pm.rss_kib
    r[AHP_KEY] = pm.anon_huge_kib
    mi = host.meminfo()
    r[("host", "anon_huge_kib")] = mi.get("AnonHugePages", 0)
    r[("host", "mem_free_kib")] = mi.get("MemFree", 0)
    counters = host.thp_counters()
    for name in HOST_THP_COUNTERS:
        r[("host", name)] = counters.get(name, 0)
    if size_mib is not None:
        r[SIZE_KEY] = size_mib()
    return r


# The review designs' balloon drivers count their pages in debugfs (`small N`, `huge M`,
# `order K`); the upstream series (guest-kernel-patches/upstream/) keeps the same lines in a
# directory per device; the stock driver has no such file, and then nothing is recorded.
BALLOON_PAGES = "/sys/kernel/debug/virtio_balloon/pages /sys/kernel/debug/virtio_balloon/*/pages"
_MARK = "--bh-balloon-pages--"


def read_guest(run: Callable[[str], str], probe: Optional[GuestEvents] = None) -> Reading:
    """One guest reading through ``run(command) -> stdout`` (one SSH round trip); with
    ``probe`` (a scenario's ``[probes]``, issue 32) its counters and tracepoint counts too."""
    extra = probe.command() if probe is not None else ""
    out = run(f"cat /proc/meminfo /proc/buddyinfo /proc/vmstat /proc/stat; echo {_MARK}; "
              f"cat {BALLOON_PAGES} 2>/dev/null; {extra + '; ' if extra else ''}true")
    text, _, pages = out.partition(_MARK)
    mi = parse_meminfo(text)
    r: Reading = {("guest", metric): mi.get(key, 0) for key, metric in GUEST_MEMINFO.items()}
    r[("guest", "free_order9_blocks")] = free_blocks_at_least(parse_buddyinfo(text), THP_ORDER)
    vm = parse_vmstat(text)
    for name in GUEST_COUNTERS:
        if name in vm:
            r[("guest", name)] = vm[name]
    cpu = kernel_cpu_seconds(text)
    if cpu is not None:
        r[GUEST_CPU_KEY] = cpu
    for key, value in parse_vmstat(pages.split(EVENT_MARK)[0]).items():
        if key in ("small", "huge", "order"):
            r[("guest", f"balloon_{key}")] = value
    if probe is not None:
        r.update(probe.parse(pages, vm))
    return r


class Sampler:
    """Background sampling of one guest; ``phase`` labels the rows it records."""

    def __init__(self, pid: int, size_mib: Callable[[], float], guest_run: Callable[[str], str],
                 host_hz: float = 5.0, guest_seconds: float = 1.0, t0: float | None = None,
                 frames: Optional[FrameMap] = None, probe: Optional[GuestEvents] = None):
        self.pid = pid
        self.probe = probe       # issue 32: the scenario's guest counters and tracepoints
        self.frames = frames     # the 2 MiB frame map: at every snapshot, host-only during resizes
        self._size_mib = size_mib
        self._guest_run = guest_run
        self.host_period = 1.0 / host_hz
        self.guest_period = guest_seconds
        self.t0 = t0 if t0 is not None else time.monotonic()
        self.phase = "start"
        self.rows: list[Row] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def record(self, reading: Reading, phase: str | None = None, t: float | None = None) -> None:
        t = (time.monotonic() if t is None else t) - self.t0
        phase = phase or self.phase
        with self._lock:
            self.rows.extend((t, phase, src, metric, float(v)) for (src, metric), v in reading.items())

    def snapshot(self) -> Reading:
        """A reading of everything now, recorded and returned (used at step boundaries)."""
        r = read_host(self.pid, self._size_mib)
        r.update(read_guest(self._guest_run, self.probe))
        if self.frames is not None:
            r.update(self.frames.capture(self.phase, time.monotonic() - self.t0))
        self.record(r)
        return r

    def series(self, phase: str, keys: tuple[tuple[str, str], ...] = (RSS_KEY, AHP_KEY)) -> Series:
        """The (seconds, value) points of ``keys`` recorded under ``phase`` (one step's samples)."""
        out: Series = {k: [] for k in keys}
        with self._lock:
            for t, ph, src, metric, value in self.rows:
                if ph == phase and (src, metric) in out:
                    out[(src, metric)].append((t, value))
        return out

    def _loop(self, period: float, read: Callable[[], Reading], name: str) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self.record(read())
            except (HarnessError, OSError, ValueError) as e:  # the guest may be going away: the runner
                # notices that itself; the errors are kept in run.json (sampler_errors)
                self.errors.append(f"{name}: {e}")
                if len(self.errors) > 50:
                    return
            next_t += period
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def start(self) -> Sampler:
        for name, period, read in (
                ("host", self.host_period, lambda: read_host(self.pid, self._size_mib)),
                ("guest", self.guest_period, lambda: read_guest(self._guest_run, self.probe))):
            t = threading.Thread(target=self._loop, args=(period, read, name), daemon=True,
                                 name=f"sampler-{name}-{self.pid}")
            t.start()
            self._threads.append(t)
        if self.frames is not None:
            frames = self.frames

            def during() -> Reading:
                frames.sample_during(self.phase, time.monotonic() - self.t0)
                return {}
            t = threading.Thread(target=self._loop, args=(frames.during_period, during, "frames"), daemon=True,
                                 name=f"sampler-frames-{self.pid}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
