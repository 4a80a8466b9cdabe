"""The 2 MiB frame map of one run: per guest-physical frame, what the guest holds there and
how the host backs it, at every step boundary (and, host side only, during resizes).

Why: a process-wide ``AnonHugePages`` says how much huge-page backing a design lost, not
where or why. Joined per frame, the guest's state (ballooned whole or in part, a guest THP,
free, in use) against the host's (huge, split into 4 KiB pages, absent) shows it: a 4 KiB
balloon leaves frames partly ballooned whose host range is split ("split by balloon"),
a 2 MiB balloon frames ballooned whole whose range the host dropped whole ("returned
whole"), and the guest's own memory stays on host huge pages or not ("kept huge").

The readings go to ``runs/<run>/frames.parquet`` (one row per frame and reading, small
integer columns) and, as counts of frames, into the summary row of each step
(``frames_*`` in harness.results.metrics; the states in harness.results.frames).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.probes import guestmap, hostmap
from harness.probes.ramlayout import RamSpan, qmp_hmp, read_layout
from harness.results import layout
from harness.results.frames import FRAME_SHIFT, JOINT_STATES, NO_GUEST, J, frame_counts, joint_states
from harness.results.metrics import MOVE_KINDS

__all__ = ["DURING_HZ", "FrameMap", "J", "JOINT_STATES", "NO_GUEST", "for_guest", "frame_counts", "joint_states"]

log = logging.getLogger(__name__)

# Host-only readings while a resize runs (the guest side costs an SSH round trip and a walk
# of every struct page: only at the step boundaries).
DURING_HZ = 1.0


@dataclass
class _Capture:
    sample: int
    t: float
    phase: str
    at: str
    host: hostmap.HostRanges
    guest_counts: Optional[np.ndarray]      # (frames, 6) or None


class FrameMap:
    """Reads and keeps one run's frame map. ``spans``: the guest-RAM mappings of ``pid``
    (harness.probes.ramlayout.read_layout); ``guest_run(command) -> stdout`` reaches the guest.
    ``moving(phase)`` says whether the step ``phase`` is a resize (host samples at DURING_HZ)."""

    def __init__(self, pid: int, spans: list[RamSpan], guest_run: Optional[Callable[[str], str]],
                 moving: Callable[[str], bool] = lambda phase: False, method: str = "auto",
                 during_hz: float = DURING_HZ):
        if not spans:
            raise HarnessError("no guest-RAM mapping found in QEMU's memory layout")
        self.pid = pid
        self.spans = spans
        self.guest_run = guest_run
        self.moving = moving
        self.method = method if method != "auto" else ("ioctl" if hostmap.ioctl_supported() else "pagemap")
        self.during_period = 1.0 / during_hz
        self.frames = np.concatenate([
            np.array([s.gpa_of(s.hva + i * hostmap.HUGE) >> FRAME_SHIFT for i in range(s.size // hostmap.HUGE)],
                     dtype=np.int64) for s in spans])
        self.regions = np.concatenate([np.full(s.size // hostmap.HUGE, i, dtype=np.uint8)
                                       for i, s in enumerate(spans)])
        self.captures: list[_Capture] = []
        self.errors: list[str] = []
        self.read_seconds: list[tuple[str, float]] = []   # ("host"|"guest", seconds)
        self._lock = threading.Lock()
        self._boundaries: dict[str, int] = {}

    # ---- reading -----------------------------------------------------------
    def read_host(self) -> hostmap.HostRanges:
        t = time.perf_counter()
        parts = [hostmap.scan(self.pid, s.hva, s.hva + s.size, self.method) for s in self.spans]
        self.read_seconds.append(("host", time.perf_counter() - t))
        return hostmap.HostRanges(self.spans[0].hva, np.concatenate([p.present for p in parts]),
                                  np.concatenate([p.huge for p in parts]))

    def read_guest(self) -> np.ndarray:
        assert self.guest_run is not None
        t = time.perf_counter()
        by_frame = guestmap.read(self.guest_run)
        self.read_seconds.append(("guest", time.perf_counter() - t))
        nopage = np.zeros(len(guestmap.GUEST_CLASSES), dtype=np.int16)
        nopage[0] = guestmap.FRAME_PAGES
        return np.stack([by_frame.get(int(f), nopage) for f in self.frames])

    def smaps_check_kib(self, host: hostmap.HostRanges) -> float:
        """Huge ranges x 2048 kB minus the kernel's AnonHugePages of the RAM mappings."""
        ahp = hostmap.vma_anon_huge_kib(self.pid, [s.hva for s in self.spans])
        return float(host.huge_count * 2048 - sum(ahp.values()))

    def capture(self, phase: str, t: float) -> dict[tuple[str, str], float]:
        """A step-boundary reading of both sides; returns its figures (source ``frames``)."""
        with self._lock:
            at = "start" if phase not in self._boundaries else "end"
        host = self.read_host()
        reading: dict[tuple[str, str], float] = {("frames", "huge_vs_smaps_kib"): self.smaps_check_kib(host)}
        counts = None
        if self.guest_run is not None:
            try:
                counts = self.read_guest()
            except (HarnessError, OSError, ValueError) as e:
                self.errors.append(f"guest frame map at {phase} {at}: {e}")
                log.warning("guest frame map at %s %s: %s", phase, at, e)
        self._keep(_Capture(0, t, phase, at, host, counts))
        with self._lock:   # after the start reading is kept: host-only readings follow it
            self._boundaries[phase] = self._boundaries.get(phase, 0) + 1
        joint = joint_states(guestmap.states(counts), host.states) if counts is not None else None
        reading.update({("frames", k): v for k, v in frame_counts(host.states, joint).items()})
        return reading

    def sample_during(self, phase: str, t: float) -> None:
        """A host-only reading, if step ``phase`` is moving guest memory (between its start
        and end readings)."""
        with self._lock:
            inside = self._boundaries.get(phase) == 1
        if inside and self.moving(phase):
            self._keep(_Capture(0, t, phase, "during", self.read_host(), None))

    def sample_observed(self, phase: str, t: float) -> None:
        """A host-only reading now, whatever the step (an observe step's fixed-rate readings,
        docs/recovery.md), kept as one of step ``phase``'s "during" readings."""
        self._keep(_Capture(0, t, phase, "during", self.read_host(), None))

    def _keep(self, c: _Capture) -> None:
        with self._lock:
            c.sample = len(self.captures)
            self.captures.append(c)

    # ---- results -----------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """One row per frame and reading (``frames.parquet``)."""
        with self._lock:   # numbered in time order (a host-only reading may end after a boundary's)
            captures = sorted(self.captures, key=lambda c: c.t)
        for i, c in enumerate(captures):
            c.sample = i
        n = len(self.frames)
        cols: dict[str, list[np.ndarray]] = {k: [] for k in (
            "sample", "t", "phase", "at", "frame", "region", "host", "host_present",
            *[f"guest_{c}" for c in guestmap.GUEST_CLASSES], "guest", "joint")}
        for c in captures:
            cols["sample"].append(np.full(n, c.sample, dtype=np.int32))
            cols["t"].append(np.full(n, c.t, dtype=np.float64))
            cols["phase"].append(np.full(n, c.phase, dtype=object))
            cols["at"].append(np.full(n, c.at, dtype=object))
            cols["frame"].append(self.frames.astype(np.int32))
            cols["region"].append(self.regions)
            host = c.host.states
            cols["host"].append(host)
            cols["host_present"].append(c.host.present)
            counts = c.guest_counts if c.guest_counts is not None else np.full(
                (n, len(guestmap.GUEST_CLASSES)), -1, dtype=np.int16)
            for i, name in enumerate(guestmap.GUEST_CLASSES):
                cols[f"guest_{name}"].append(counts[:, i].astype(np.int16))
            guest = guestmap.states(counts) if c.guest_counts is not None else np.full(n, NO_GUEST, np.uint8)
            cols["guest"].append(guest)
            cols["joint"].append(joint_states(guest, host))
        if not captures:
            return pd.DataFrame({k: [] for k in cols})
        df = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
        for k in ("phase", "at"):
            df[k] = df[k].astype("category")
        return df

    def info(self) -> dict:
        """For run.json: the layout, the reader, the read times, the errors."""
        host_s = [s for k, s in self.read_seconds if k == "host"]
        guest_s = [s for k, s in self.read_seconds if k == "guest"]
        return {
            "method": self.method,
            "regions": [{"region": s.region, "hva": hex(s.hva), "size_mib": s.size >> 20,
                         "pieces": [{"gpa": hex(p.gpa), "size_mib": p.size / (1 << 20), "offset": hex(p.offset)}
                                    for p in s.segments]} for s in self.spans],
            "frames": len(self.frames),
            "host_read_seconds_max": max(host_s, default=None),
            "host_read_seconds_median": float(np.median(host_s)) if host_s else None,
            "guest_read_seconds_max": max(guest_s, default=None),
            "errors": self.errors[:10],
        }

    def write(self, run_dir: Path) -> Optional[Path]:
        """``runs/<run>/frames.parquet`` (written under a temporary name, then renamed)."""
        df = self.frame()
        if df.empty:
            return None
        return atomic_write(layout.within(run_dir, run_dir / layout.FRAMES), lambda p: df.to_parquet(p, index=False))


def for_guest(guest, guest_run: Callable[[str], str], steps) -> Optional[FrameMap]:
    """The frame map of a booted guest (``guest``: harness.guest.Guest), its resizes being
    the ``steps`` of a move kind; None, with a warning, when QEMU's layout cannot be read
    (the run's other figures do not depend on it)."""
    kinds = {s.label: s.kind for s in steps}
    try:
        return FrameMap(guest.pid, read_layout(qmp_hmp(guest.qmp)), guest_run,
                        moving=lambda phase: kinds.get(phase) in MOVE_KINDS)
    except (HarnessError, OSError, ValueError) as e:
        log.warning("no frame map for this run: %s", e)
        return None
