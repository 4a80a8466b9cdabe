"""Free page reporting (``VIRTIO_BALLOON_F_REPORTING``, Linux 5.7): what upstream chose
instead of the RFC for giving a guest's free memory back.

The guest reports free blocks of at least ``page_reporting_order`` (pageblock order, 9
on x86-64: 2 MiB, aligned) about 2 s after they became free; QEMU discards each whole.
There is no target: a ``resize`` step asks for nothing and follows the QEMU process's
RSS until it stops falling (``settled``) - the memory the guest freed coming back.
``reached`` is therefore None, and the summary's per-MiB figures use the RSS freed.

On Linux 6.1 the boot parameter ``page_reporting.page_reporting_order`` is overwritten
when virtio_balloon registers (fixed in 6.2), so the ``order`` option is written to sysfs
after boot, and the order the guest really uses is read back and recorded (run.json).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from harness.errors import GuestStateError
from harness.mechanisms.balloon import Balloon
from harness.mechanisms.base import OnSample
from harness.probes import host
from harness.results.scenario_schema import FreePageReportingOptions
from harness.vm.follow import Follow, MoveResult, follow
from harness.vm.spec import BalloonDevice, MachineSpec
from harness.vm.timing import Timing

ORDER_SYSFS = "/sys/module/page_reporting/parameters/page_reporting_order"
RSS_QUIET_MIB = 2.0   # RSS moving less than one huge page counts as still


class FreePageReporting(Balloon):
    name = "free-page-reporting"
    description = "virtio-balloon free-page-reporting=on: the guest reports free >= 2 MiB blocks"
    follows = "QEMU RSS"
    Options = FreePageReportingOptions

    used_order: Optional[int] = None

    def configure(self, spec: MachineSpec) -> MachineSpec:
        device = spec.balloon or BalloonDevice()
        props = tuple((k, v) for k, v in device.properties if k != "free-page-reporting")
        return dataclasses.replace(spec, balloon=dataclasses.replace(
            device, properties=(*props, ("free-page-reporting", "on"))))

    def attach(self, guest) -> None:
        super().attach(guest)
        order = self.options["order"]
        cmd = (f"echo {order} > {ORDER_SYSFS}; " if order is not None else "") + f"cat {ORDER_SYSFS}"
        out = guest.ssh.run(cmd, timeout=30, check=False).stdout.strip()
        if not out.isdigit():
            raise GuestStateError(f"free page reporting: the guest has no {ORDER_SYSFS} "
                                  f"(kernel without CONFIG_PAGE_REPORTING?): {out!r}")
        self.used_order = int(out)
        if order is not None and self.used_order != order:
            raise GuestStateError(f"free page reporting: asked the guest for order {order}, "
                                  f"it uses {self.used_order}")

    def rss_mib(self) -> float:
        return host.process_memory(self._guest().pid).rss_kib / 1024

    def resize(self, target_mib: int, timing: Timing, on_sample: OnSample = None) -> MoveResult:
        guest = self._guest()
        start = self.size_mib()
        t0 = time.monotonic()
        how = Follow(settle=timing.settle_seconds, timeout=timing.balloon_timeout_seconds,
                     poll=1.0 / timing.host_sample_hz, quiet=RSS_QUIET_MIB)
        outcome, seconds, _rss, trajectory = follow(self.rss_mib, None, how, t0, guest.is_running, on_sample)
        return MoveResult(target_mib, None, self.size_mib(), seconds, outcome, start, trajectory)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "page_reporting_order": self.used_order}
