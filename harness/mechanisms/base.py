"""What a mechanism is: one way of bringing a guest to a memory size.

A scenario's ``resize`` step says "bring the guest to X MiB"; each arm names the
mechanism that does it (``mechanism = "virtio-mem"``) with its own ``options``. The
runner only ever talks to this interface, so a new mechanism is one new module in
this package that subclasses :class:`Mechanism`; nothing else changes.

The life of one instance (one per run):
``Mechanism(options, memory_mib)`` validates the arm's options (before anything boots),
``configure(spec)`` puts its devices on QEMU's command line, ``attach(guest)`` does the
guest-side set-up after boot, ``size_mib()`` is sampled at the host rate (QMP), and
``resize(target, timing)`` asks and follows (:mod:`harness.vm.follow`).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

from harness.errors import ConfigError
from harness.guest import Guest
from harness.vm.follow import MoveResult
from harness.vm.spec import MachineSpec
from harness.vm.timing import Timing

OnSample = Optional[Callable[[float, float], None]]


class Mechanism:
    """Base class; subclasses set :attr:`name`, :attr:`OPTIONS` and override the hooks."""

    name: ClassVar[str] = ""
    # option name -> (type, default, meaning); what an arm's `options` table may hold
    OPTIONS: ClassVar[dict[str, tuple[type, Any, str]]] = {}
    description: ClassVar[str] = ""
    follows: ClassVar[str] = "size"     # what resize() follows, as progress lines name it

    def __init__(self, options: dict[str, Any], memory_mib: int, where: str = "options"):
        self.memory_mib = memory_mib
        self.options = self._validate(options, where)
        self.guest: Optional[Guest] = None
        self.check_options(where)

    def _validate(self, options: dict[str, Any], where: str) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(self.OPTIONS) or "none"
            raise ConfigError(f"{where}.{unknown[0]}: unknown option of mechanism {self.name!r} "
                              f"(it takes: {known})")
        values = {}
        for key, (kind, default, _meaning) in self.OPTIONS.items():
            value = options.get(key, default)
            if value is not None and (isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)):
                raise ConfigError(f"{where}.{key}: must be {kind.__name__}, got {value!r}")
            values[key] = value
        return values

    def check_options(self, where: str) -> None:
        """Refuse impossible option values (ConfigError naming ``where.<key>``)."""

    def configure(self, spec: MachineSpec) -> MachineSpec:
        """The machine with this mechanism's devices and kernel parameters."""
        return spec

    def attach(self, guest: Guest) -> None:
        """After boot: remember the guest, do any guest-side set-up."""
        self.guest = guest

    def size_mib(self) -> float:
        """The guest's memory as the host sees it (MiB), cheap enough for the host sampler."""
        raise NotImplementedError

    def resize(self, target_mib: int, timing: Timing, on_sample: OnSample = None) -> MoveResult:
        """Bring the guest to ``target_mib`` and follow it: reached, settled or timeout."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What run.json records of this mechanism (options, and what the guest really used)."""
        return {"name": self.name, "options": self.options}

    # helpers for subclasses
    def _guest(self) -> Guest:
        if self.guest is None:
            raise RuntimeError(f"mechanism {self.name}: attach() was not called")
        return self.guest
