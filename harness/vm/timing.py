"""How a scenario's runs are paced: how long a resize may take, when it has stopped
moving, how often the host and the guest are sampled.

Defined beside the machine (not in the scenario module) because the mechanisms that
follow a resize read it, and they sit below the experiment that loads scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    settle_seconds: float = 10.0            # balloon "stopped moving" after this long unchanged
    balloon_timeout_seconds: float = 300.0  # give up waiting for a balloon target
    host_sample_hz: float = 5.0             # host probes + balloon actual
    guest_sample_seconds: float = 1.0       # guest /proc over SSH
    step_pause_seconds: float = 2.0         # quiet time sampled after each step
