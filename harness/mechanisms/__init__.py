"""Mechanisms that bring a guest to a memory size: one module each (see :mod:`.base`).

The registry is the package's modules: every module here that defines a
:class:`~harness.mechanisms.base.Mechanism` subclass with a ``name`` is found by
:func:`registry`, so adding a mechanism touches no other file.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from harness.errors import ConfigError
from harness.mechanisms.base import Mechanism
from harness.results.scenario_schema import MechanismOptions, install_mechanism_factory

DEFAULT = "balloon"


@cache
def registry() -> dict[str, type[Mechanism]]:
    """name -> class, from every module of this package."""
    found: dict[str, type[Mechanism]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Mechanism) and value.name \
                    and value.__module__ == module.__name__:
                found[value.name] = value
    return dict(sorted(found.items()))


def make(name: str, options: MechanismOptions | dict[str, Any], memory_mib: int,
         where: str = "options") -> Mechanism:
    """A fresh instance (one per run): ``options`` as the scenario's arm holds them (checked when
    the scenario loaded), or a dict checked now."""
    try:
        cls = registry()[name]
    except KeyError:
        raise ConfigError(f"mechanism {name!r} does not exist (choose one of {', '.join(registry())})") from None
    return cls(options, memory_mib, where)


# An arm (harness.results.scenario_schema.Arm.make_mechanism) makes its mechanism through here.
install_mechanism_factory(make)

__all__ = ["DEFAULT", "Mechanism", "make", "registry"]
