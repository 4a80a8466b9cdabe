"""One call around each run: the host as the run needs it, and back as it was afterwards.

The runner wraps each run (each arm's boot-to-shutdown) in :func:`prepared`: it sets the
run's THP knobs, reserves the huge pages and mounts the filesystem its backing needs, and
yields the backing to boot with and the figures for ``metadata.json``; leaving the block,
however it is left, gives everything back in the reverse order. A refusal (a knob the host
lacks, pages it cannot give) is a ConfigError before anything boots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.host import hugepages, knobs
from harness.host.journal import Journal
from harness.vm.backing import Backing


@dataclass
class PreparedHost:
    """What :func:`prepared` made ready: the backing to put in ``MachineSpec.backing`` and
    the host's state for ``metadata.json``."""

    backing: Backing
    thp_requested: dict[str, Any]
    thp_knobs: dict[str, str]                   # every knob, as the run sees it
    thp_knobs_before: dict[str, str]            # before the run's own settings
    hugepage_pools: dict[str, dict[str, int]] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {"backing": self.backing.as_dict(), "thp_requested": self.thp_requested,
                "thp_knobs": self.thp_knobs, "thp_knobs_before": self.thp_knobs_before,
                "hugepage_pools": self.hugepage_pools}


def pools() -> dict[str, dict[str, int]]:
    """Every huge-page pool of the host: {"2048kB": {total, free, reserved, surplus}}."""
    out = {}
    for d in sorted(hugepages.POOLS.glob("hugepages-*kB")):
        st = hugepages.pool_state(int(d.name[10:-2]))
        out[d.name[10:]] = {"total": st.total, "free": st.free, "reserved": st.reserved, "surplus": st.surplus}
    return out


def host_metadata() -> dict[str, Any]:
    """The host's THP knobs and pools, for a run that changes nothing (recorded anyway)."""
    return {"thp_knobs": knobs.snapshot(), "hugepage_pools": pools()}


@contextlib.contextmanager
def prepared(backing: Backing, memory_mib: int, thp: Optional[Mapping[str, Any]] = None,
             journal: Optional[Journal] = None) -> Iterator[PreparedHost]:
    """``memory_mib``: all the guest RAM the backing must hold (boot RAM plus any virtio-mem
    region: ``maxmem_mib`` when set). ``thp``: knob settings (``{"defrag": "never",
    "khugepaged": {"max_ptes_none": 0}}``), empty or None to change none."""
    journal = journal or Journal()
    requested = knobs.flatten(thp or {})
    with knobs.apply(requested, journal=journal) as applied, \
            hugepages.for_backing(backing, memory_mib, journal) as ready:
        yield PreparedHost(ready, requested, applied.after, applied.before, pools())
