"""What a set of runs needs built: per guest stack, the QEMU and module variants its arms name.

``balloon-harness build`` builds every variant of a stack (stock, the RFC port, each
design); a scenario's runs use only the ones their arms name, e.g. ``reproduce`` the
stock and the RFC port's QEMU and module, not the five designs. An arm naming a path
(its own QEMU or module) needs no variant of that kind; an arm naming a source tree
(``kernel = { source = ... }``, ``qemu = { source = ... }``) needs that tree built. The
stack's guest kernel is needed whatever the arms say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional, Protocol

from harness.artifacts.trees import KernelTree, QemuTree


class ArmLike(Protocol):
    """What :func:`needs_of` reads of an arm (harness.experiment.scenario.Arm has it)."""

    @property
    def stack(self) -> str: ...
    @property
    def qemu(self) -> str: ...
    @property
    def module(self) -> str: ...
    @property
    def kernel_tree(self) -> Optional[KernelTree]: ...
    @property
    def qemu_tree(self) -> Optional[QemuTree]: ...


@dataclass(frozen=True)
class Needs:
    """The variant labels one stack must provide; ``None`` for a kind means all of them."""

    qemus: Optional[frozenset[str]] = None
    modules: Optional[frozenset[str]] = None
    kernel_trees: frozenset[KernelTree] = frozenset()   # users' Linux trees to build (kernel_tree.py)
    qemu_trees: frozenset[QemuTree] = frozenset()       # users' QEMU trees to build

    def wants_qemu(self, label: str) -> bool:
        return self.qemus is None or label in self.qemus

    def wants_module(self, label: str) -> bool:
        return self.modules is None or label in self.modules

    @property
    def everything(self) -> bool:
        return self.qemus is None and self.modules is None


EVERYTHING = Needs()


def needs_of(arms: Iterable[ArmLike]) -> dict[str, Needs]:
    """stack -> the variants the arms name on it, in arm order of first use. Labels that
    are no variant (a path of the user's own) are kept: a stack has no variant of that
    name, so nothing is built for them, and the runner resolves them as paths."""
    qemus: dict[str, set[str]] = {}
    modules: dict[str, set[str]] = {}
    kernel_trees: dict[str, set[KernelTree]] = {}
    qemu_trees: dict[str, set[QemuTree]] = {}
    for arm in arms:
        qemus.setdefault(arm.stack, set()).add(arm.qemu)
        modules.setdefault(arm.stack, set()).add(arm.module)
        if arm.kernel_tree is not None:
            kernel_trees.setdefault(arm.stack, set()).add(arm.kernel_tree)
        if arm.qemu_tree is not None:
            qemu_trees.setdefault(arm.stack, set()).add(arm.qemu_tree)
    return {stack: Needs(frozenset(qemus[stack]), frozenset(modules[stack]),
                         frozenset(kernel_trees.get(stack, ())), frozenset(qemu_trees.get(stack, ())))
            for stack in qemus}


def for_stack(needs: Optional[Mapping[str, Needs]], stack: str) -> Needs:
    """The needs of one stack (everything when no needs were given)."""
    return EVERYTHING if needs is None else needs.get(stack, EVERYTHING)
