"""How a scenario's runs are paced: how long a resize may take, when it has stopped
moving, how often the host and the guest are sampled.

Declared with the rest of the scenario's keys (:mod:`harness.results.scenario_schema`); named
here, beside the machine, because the mechanisms that follow a resize read it.
"""

from __future__ import annotations

from harness.results.scenario_schema import Timing

__all__ = ["Timing"]
