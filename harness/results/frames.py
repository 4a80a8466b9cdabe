"""The 2 MiB frame map's vocabulary: the states a frame can be in on each side, how they
join, and the counts the summary keeps (``runs/<run>/frames.parquet``).

Here, below the probes that read it (harness.probes.framemap) and the analysis that draws
it (harness.analysis.framemaps), so both speak of the same states by the same codes.
Pure numpy.
"""

from __future__ import annotations

import numpy as np

FRAME_SHIFT = 21          # a frame is a guest-physical address >> 21 (2 MiB)
FRAME_PAGES = 512

# Host backing of one 2 MiB range (uint8 codes).
HOST_ABSENT, HOST_SPLIT, HOST_HUGE = 0, 1, 2
HOST_STATES = ("absent", "split", "huge")

# The guest helper's classes of 4 KiB pages, in its output order (images/framemap.c).
GUEST_CLASSES = ("nopage", "balloon", "thp", "free", "anon", "other")
# One guest state per frame, from its counts (uint8 codes); NO_GUEST: no guest reading.
G_ABSENT, G_BALLOON, G_BALLOON_PART, G_THP, G_FREE, G_USED = range(6)
GUEST_STATES = ("absent", "balloon", "balloon-part", "thp", "free", "used")
NO_GUEST = 255

# The joint state of a frame, in the picture's legend order.
JOINT_STATES = (
    "unbacked",            # the guest does not balloon it and the host has nothing there
    "returned whole",      # ballooned whole, the host dropped the whole range
    "given up, backed",    # ballooned whole (or unplugged), the host still backs it
    "split by balloon",    # partly ballooned, the host range split into 4 KiB pages
    "partial balloon, huge",  # partly ballooned, the host range still one huge page
    "partial balloon, unbacked",
    "guest THP on huge",   # a guest huge page on a host huge page: what THP is for
    "kept huge",           # the guest's other memory (or free memory) on a host huge page
    "split",               # guest memory on a host range split into 4 KiB pages
    "unplugged",           # no guest page there (virtio-mem unplugged it) and nothing on the host
    "host only",           # no guest reading (host samples during a resize)
)
J = {name: i for i, name in enumerate(JOINT_STATES)}


def guest_states(counts: np.ndarray) -> np.ndarray:
    """Per frame (rows of GUEST_CLASSES counts): its one guest state (uint8)."""
    nopage, balloon, thp, free = (counts[:, GUEST_CLASSES.index(c)] for c in ("nopage", "balloon", "thp", "free"))
    out = np.full(len(counts), G_USED, dtype=np.uint8)
    out[free == FRAME_PAGES] = G_FREE
    out[thp == FRAME_PAGES] = G_THP
    out[(balloon > 0) & (balloon < FRAME_PAGES)] = G_BALLOON_PART
    out[balloon == FRAME_PAGES] = G_BALLOON
    out[nopage == FRAME_PAGES] = G_ABSENT
    return out


def joint_states(guest: np.ndarray, host: np.ndarray) -> np.ndarray:
    """uint8 joint state per frame from guest states (NO_GUEST: unknown) and host states."""
    out = np.full(len(host), J["host only"], dtype=np.uint8)
    known = guest != NO_GUEST
    huge, split, absent = host == HOST_HUGE, host == HOST_SPLIT, host == HOST_ABSENT
    balloon, part, gone = guest == G_BALLOON, guest == G_BALLOON_PART, guest == G_ABSENT
    other = known & ~balloon & ~part & ~gone
    out[other & absent] = J["unbacked"]
    out[other & split] = J["split"]
    out[other & huge] = J["kept huge"]
    out[other & huge & (guest == G_THP)] = J["guest THP on huge"]
    out[balloon & absent] = J["returned whole"]
    out[(balloon | gone) & ~absent] = J["given up, backed"]
    out[gone & absent] = J["unplugged"]
    out[part & split] = J["split by balloon"]
    out[part & huge] = J["partial balloon, huge"]
    out[part & absent] = J["partial balloon, unbacked"]
    return out


def frame_counts(host: np.ndarray, joint: np.ndarray | None) -> dict[str, float]:
    """The frame-map figures of one reading (source ``frames`` of a Reading; summary_row
    turns them into the ``frames_*_after`` columns, harness.results.metrics.FRAME_FIGURES)."""
    out = {"host_huge": float((host == HOST_HUGE).sum()),
           "host_split": float((host == HOST_SPLIT).sum())}
    if joint is not None:
        out["split_by_balloon"] = float((joint == J["split by balloon"]).sum())
        out["returned_whole"] = float(((joint == J["returned whole"]) | (joint == J["unplugged"])).sum())
        out["kept_huge"] = float(((joint == J["kept huge"]) | (joint == J["guest THP on huge"])).sum())
    return out
