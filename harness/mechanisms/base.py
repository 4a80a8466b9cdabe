"""What a mechanism is: one way of bringing a guest to a memory size.

A scenario's ``resize`` step says "bring the guest to X MiB"; each arm names the
mechanism that does it (``mechanism = "virtio-mem"``) with its own ``options``. The
runner only ever talks to this interface, so a new mechanism is one new module in
this package that subclasses :class:`Mechanism`; nothing else changes.

The life of one instance (one per run):
``Mechanism(options, memory_mib)`` takes the arm's options as the scenario schema checked them
(:mod:`harness.results.scenario_schema`: one options model per mechanism, checked once, when
the scenario loads; a plain dict, from a caller without a scenario, is checked there too),
``configure(spec)`` puts its devices on QEMU's command line, ``attach(guest)`` does the
guest-side set-up after boot, ``size_mib()`` is sampled at the host rate (QMP), and
``resize(target, timing)`` asks and follows (:mod:`harness.vm.follow`).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

from pydantic_core import PydanticCustomError

from harness.errors import ConfigError
from harness.guest import Guest
from harness.results import scenario_schema as schema
from harness.vm.follow import MoveResult
from harness.vm.spec import MachineSpec
from harness.vm.timing import Timing

OnSample = Optional[Callable[[float, float], None]]


class Mechanism:
    """Base class; subclasses set :attr:`name`, :attr:`Options` and override the hooks."""

    name: ClassVar[str] = ""
    # what an arm's `options` table may hold: the schema's model of this mechanism's options
    Options: ClassVar[type[schema.MechanismOptions]] = schema.MechanismOptions
    description: ClassVar[str] = ""
    follows: ClassVar[str] = "size"     # what resize() follows, as progress lines name it

    def __init__(self, options: schema.MechanismOptions | dict[str, Any], memory_mib: int,
                 where: str = "options"):
        self.memory_mib = memory_mib
        checked = options if isinstance(options, schema.MechanismOptions) else self.check(options, memory_mib, where)
        self.options: dict[str, Any] = checked.model_dump()
        self.guest: Optional[Guest] = None

    @classmethod
    def check(cls, options: dict[str, Any], memory_mib: int, where: str = "options") -> schema.MechanismOptions:
        """``options`` checked by the schema's model (a caller without a scenario: make())."""
        try:
            checked = schema.mechanism_options(cls.name, options)
            checked.check(memory_mib)
            return checked
        except PydanticCustomError as e:   # the schema's refusal: a key of options and a reason
            ctx = e.context or {}
            key = str(ctx.get("key", "")).removeprefix("options.")
            raise ConfigError(f"{where}.{key}: {ctx.get('reason', e)}") from None

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
