"""virtio-balloon: the guest allocates pages into a balloon and QEMU discards them.

The mechanism of the RFC and of every review design: the arm's ``device`` table holds
the balloon's properties (``thp-order``, ``balloon-order``, ``thp-pbp`` ...). The guest's
size is QEMU's ``query-balloon`` ``actual``; a 2 MiB balloon may land one block off its
target (:attr:`harness.vm.machine.Machine.balloon` picks the tolerance).
"""

from __future__ import annotations

import dataclasses

from harness.mechanisms.base import Mechanism, OnSample
from harness.vm.follow import MoveResult
from harness.vm.spec import BalloonDevice, MachineSpec
from harness.vm.timing import Timing


class Balloon(Mechanism):
    name = "balloon"
    description = "virtio-balloon inflate/deflate (query-balloon actual, QMP balloon)"

    def configure(self, spec: MachineSpec) -> MachineSpec:
        return spec if spec.balloon else dataclasses.replace(spec, balloon=BalloonDevice())

    def size_mib(self) -> float:
        return self._guest().balloon.actual_mib()

    def resize(self, target_mib: int, timing: Timing, on_sample: OnSample = None) -> MoveResult:
        return self._guest().balloon.move(target_mib, settle=timing.settle_seconds,
                                          timeout=timing.balloon_timeout_seconds,
                                          poll=1.0 / timing.host_sample_hz, on_sample=on_sample)
