"""The guest's side of the frame map: what each 2 MiB guest-physical frame holds.

The guest image carries ``bh-framemap`` (``images/framemap.c``), which reads the guest's
``/proc/kpageflags`` and prints, per frame (PFN >> 9), how many of
its 512 pages are in each class: no page (a hole, unplugged memory), balloon (PageOffline:
the balloon's 4 KiB pages, or all 512 subpages of the RFC's 2 MiB page), guest THP, free
buddy memory, anonymous 4 KiB pages, and everything else. Runs of equal frames come as one
line, so a 16 GiB guest answers in a few kB.

On Linux 6.1 balloon pages have no flag of their own (``KPF_BALLOON`` became
``KPF_OFFLINE`` in 5.0 with PG_balloon's conversion to the PageOffline page type);
virtio-mem's fake-offline blocks carry the same page type, and an arm's mechanism says
which of the two a frame's offline pages are.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from harness.errors import GuestStateError
from harness.procfs import is_uint
from harness.results.frames import (
    FRAME_PAGES,
    G_ABSENT,
    G_BALLOON,
    G_BALLOON_PART,
    G_FREE,
    G_THP,
    G_USED,
    GUEST_CLASSES,
    GUEST_STATES,
    guest_states,
)

__all__ = ["FRAME_PAGES", "G_ABSENT", "G_BALLOON", "G_BALLOON_PART", "G_FREE", "G_THP", "G_USED",
           "GUEST_CLASSES", "GUEST_HELPER", "GUEST_STATES", "parse", "read", "states"]

log = logging.getLogger(__name__)

GUEST_HELPER = "/usr/bin/bh-framemap"


# 2^24 frames of 2 MiB: a 32 TiB guest; a line claiming more is damage, not a guest.
MAX_FRAMES = 1 << 24


def _frames_line(line: str, parts: list[str]) -> tuple[int, int, np.ndarray]:
    """``F <first> <n> <count per class...>``: checked whole (numbers, 0..512 pages a class,
    512 in all), or GuestStateError quoting the line."""
    if len(parts) != 3 + len(GUEST_CLASSES) or not all(is_uint(x) for x in parts[1:]):
        raise GuestStateError(f"bh-framemap: not a frame line (F <first> <n> and {len(GUEST_CLASSES)} "
                              f"counts): {line[:200]!r}")
    first, n = int(parts[1]), int(parts[2])
    values = [int(x) for x in parts[3:]]
    if n < 1 or first + n > MAX_FRAMES or any(v > FRAME_PAGES for v in values) or sum(values) != FRAME_PAGES:
        raise GuestStateError(f"bh-framemap: frame {first} (x{n}) counts {values} do not sum to {FRAME_PAGES} "
                              f"or lie beyond {MAX_FRAMES} frames: {line[:200]!r}")
    return first, n, np.array(values, dtype=np.int16)


def parse(text: str) -> dict[int, np.ndarray]:
    """``bh-framemap``'s output -> {frame: counts per GUEST_CLASSES (int16)}."""
    frames: dict[int, np.ndarray] = {}
    ended = False
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "END":
            ended = True
        elif parts[0] == "F":
            first, n, counts = _frames_line(line, parts)
            if len(frames) + n > MAX_FRAMES:
                raise GuestStateError(f"bh-framemap: more than {MAX_FRAMES} frames (a {MAX_FRAMES >> 9} GiB "
                                      f"guest): {line[:200]!r}")
            for f in range(first, first + n):
                frames[f] = counts
    if not ended:
        raise GuestStateError(f"bh-framemap printed no END line (cut short?): {text[-200:]!r}")
    return frames


states = guest_states


def read(run: Callable[[str], str]) -> dict[int, np.ndarray]:
    """One reading through ``run(command) -> stdout`` (one SSH round trip)."""
    return parse(run(GUEST_HELPER))
