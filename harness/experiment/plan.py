"""The plan of a command: which runs, in which order, each with the machine it boots.

A scenario becomes a :class:`Plan` once per command (:func:`plan`): the runs in
repetition-major order (each round's arms in :func:`round_order`), this shard's share,
and, with ``--resume``, without the runs already complete. The CLI shows it (the
"results: ... N run(s)" line), checks the host's room from it, builds what its arms
name, then :meth:`Plan.prepared` resolves every run's machine (QEMU, guest image with
the scenario's own files, mechanism, accelerator) and the runner executes exactly that
plan (:func:`harness.experiment.runner.run_plan`). Everything that builds or probes
happens there, before the first guest boots; the runner only boots what it is given.

``--until-decided`` adds repetitions after the first plan has run: it builds one new
plan per round with this same function (the added runs only), prepares it and runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.artifacts.build import Artifacts
from harness.artifacts.initramfs import GuestImage, build_image
from harness.errors import ConfigError
from harness.experiment.scenario import Arm, Scenario
from harness.mechanisms import Mechanism
from harness.results import layout
from harness.vm import BalloonDevice, MachineSpec
from harness.vm.accel import decide_accelerators

log = logging.getLogger("harness.run")


@dataclass(frozen=True)
class Shard:
    """``K/N``: this process takes every N-th planned run starting at the K-th (1-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not m:
            raise ConfigError(f"--shard {text!r}: expected K/N, e.g. 1/4")
        k, n = int(m.group(1)), int(m.group(2))
        if n < 1 or not 1 <= k <= n:
            raise ConfigError(f"--shard {text}: K must be between 1 and N (N >= 1)")
        return cls(k, n)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Machine:
    """What one run boots, resolved before any guest boots: the machine (accelerator
    decided), the mechanism made for this run (it configured the machine and will hold
    the run's guest), and the hash of the balloon driver the image carries."""

    spec: MachineSpec
    mechanism: Mechanism
    module_sha256: Optional[str] = None


@dataclass(frozen=True)
class PlannedRun:
    arm: Arm
    rep: int
    run_id: str
    position: int = 0       # 1-based place in the whole plan (every shard's), recorded in run.json
    slot: int = 0           # 1-based place within its round (repetition), recorded in run.json
    machine: Optional[Machine] = None   # set by Plan.prepared(), before the first boot


@dataclass(frozen=True)
class Plan:
    """One command's runs, computed once; :meth:`prepared` adds each run's machine."""

    scenario: Scenario
    runs: tuple[PlannedRun, ...]         # this shard's share of the whole plan, in order
    total: int                           # runs in the whole plan (every shard's)
    seed: int                            # the random order's seed (recorded in metadata.json)
    shard: Optional[Shard] = None
    done: tuple[str, ...] = ()           # --resume: complete already, not run again

    @property
    def todo(self) -> tuple[PlannedRun, ...]:
        """The runs this command boots: the shard's share without those already complete."""
        done = set(self.done)
        return tuple(r for r in self.runs if r.run_id not in done)

    @property
    def arms(self) -> tuple[Arm, ...]:
        """The arms the runs to do name, in first-run order (what the build must provide)."""
        return tuple({r.arm.name: r.arm for r in self.todo}.values())

    @property
    def is_prepared(self) -> bool:
        return all(r.machine is not None for r in self.todo)

    def prepared(self, artifacts: Artifacts) -> Plan:
        """The plan with every run to do given its machine: guest images holding the
        scenario's files are built here (cached by content), one mechanism is made per run,
        and the accelerator of every QEMU binary is decided at once (harness.vm.accel)."""
        images: dict[str, tuple[Path, GuestImage, Optional[str]]] = {}
        for arm in self.arms:
            images[arm.name] = _resolve_arm(arm, artifacts, self.scenario.guest.files)
        runs = {r.run_id: dataclasses.replace(r, machine=_machine(self.scenario, r, *images[r.arm.name]))
                for r in self.todo}
        probe = {(m.spec.qemu, m.spec.kernel, m.spec.firmware_dirs)
                 for m in (r.machine for r in runs.values()) if m is not None and m.spec.accel == "auto"}
        if probe:
            accels = decide_accelerators(probe)
            runs = {k: _with_accel(r, accels) for k, r in runs.items()}
        return dataclasses.replace(self, runs=tuple(runs.get(r.run_id, r) for r in self.runs))


def order_seed(scenario: Scenario) -> int:
    """The seed of the arms' order: the scenario's ``order_seed``, else one derived from the
    scenario's text, so that every shard (another process, another host) and a resume
    compute the same plan without being told."""
    if scenario.order_seed is not None:
        return int(scenario.order_seed)
    try:
        text = scenario.path.read_bytes()
    except OSError:
        text = scenario.name.encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big")


def round_order(scenario: Scenario, rep: int) -> list[Arm]:
    """The arms in the order they run in repetition ``rep`` (1-based).

    Why not the scenario's order every round: whatever the host does over a night
    (khugepaged, the page cache, the previous guest's exit) would land on the same arm
    every time and look like a difference between arms. ``random`` shuffles each round
    with a generator seeded by (seed, rep), so round k's order does not depend on how
    many rounds there are (``--until-decided`` adds rounds later); ``balanced`` rotates
    the arms by one place per round (each arm in each place equally often every
    len(arms) rounds).
    """
    arms = list(scenario.arms)
    if scenario.order == "fixed" or len(arms) < 2:
        return arms
    if scenario.order == "balanced":
        k = (rep - 1) % len(arms)
        return arms[k:] + arms[:k]
    rng = random.Random(f"{order_seed(scenario)}/{rep}")
    rng.shuffle(arms)
    return arms


def plan(scenario: Scenario, shard: Optional[Shard] = None, *,
         complete: Optional[Callable[[str], bool]] = None,
         only: Optional[Collection[str]] = None) -> Plan:
    """The runs of ``scenario``, in repetition-major order: a scenario killed midway still
    has every arm of the first repetitions.

    Within each repetition the arms run in :func:`round_order` (random by default, seeded).
    With a shard, a deterministic share of that order (round robin), so all N shards
    together are the whole plan on any number of hosts, each run exactly once. ``complete``
    (``--resume``: :meth:`harness.results.ResultsStore.is_complete`) marks the runs already
    done; ``only`` keeps just those run ids (``--until-decided``'s added repetitions).
    """
    whole: list[PlannedRun] = []
    for rep in range(1, scenario.repetitions + 1):
        for slot, arm in enumerate(round_order(scenario, rep), 1):
            whole.append(PlannedRun(arm, rep, layout.run_id(arm.name, rep), len(whole) + 1, slot))
    runs = whole if shard is None else [r for i, r in enumerate(whole) if i % shard.count == shard.index - 1]
    if only is not None:
        runs = [r for r in runs if r.run_id in only]
    done = tuple(r.run_id for r in runs if complete is not None and complete(r.run_id))
    if done:
        log.info("resume: skipping %d finished run(s): %s", len(done), ", ".join(done))
    return Plan(scenario, tuple(runs), len(whole), order_seed(scenario), shard, done)


def _qemu_of(arm: Arm, artifacts: Artifacts) -> Path:
    """The arm's QEMU binary: a built variant, one built from the user's tree, or a path."""
    if arm.qemu_tree is not None:
        return artifacts.tree_qemus[arm.qemu_tree]
    if arm.qemu in artifacts.qemus:
        return artifacts.qemus[arm.qemu]
    if Path(arm.qemu).exists():
        return Path(arm.qemu)
    raise ConfigError(f"arm {arm.name}: QEMU {arm.qemu!r} was not built for stack {arm.stack} "
                      f"(run `balloon-harness build --stack {arm.stack}`)")


def _image_of(arm: Arm, artifacts: Artifacts, files) -> GuestImage:
    """The arm's guest image: a kernel built from the user's tree (its driver built in, no
    modules), or the stack's kernel with the arm's balloon module; the scenario's files on
    top (built here, in the build phase: cached by content, so a second plan costs a key)."""
    if arm.kernel_tree is not None:
        image = artifacts.tree_kernels[arm.kernel_tree]
        return build_image(image.kernel, None, image.balloon_module, files) if files else image
    if arm.module in artifacts.images and not files:
        return artifacts.images[arm.module]
    if arm.module in artifacts.modules:
        return build_image(artifacts.kernel, artifacts.modules[arm.module], arm.module, files)
    if Path(arm.module).exists():
        return build_image(artifacts.kernel, Path(arm.module), f"custom:{arm.module}", files)
    raise ConfigError(f"arm {arm.name}: module {arm.module!r} was not built for stack {arm.stack} "
                      f"(run `balloon-harness build --stack {arm.stack}`)")


def _module_sha256(arm: Arm, artifacts: Artifacts) -> Optional[str]:
    """The balloon driver's hash (a kernel built from a tree: its bzImage's, the driver is in it)."""
    if arm.kernel_tree is not None and arm.kernel_tree in artifacts.tree_kernels:
        return artifacts.tree_kernels[arm.kernel_tree].balloon_module_sha256
    return artifacts.images[arm.module].balloon_module_sha256 if arm.module in artifacts.images else None


def _resolve_arm(arm: Arm, artifacts: Artifacts, files) -> tuple[Path, GuestImage, Optional[str]]:
    """An arm's QEMU, guest image and driver hash, from its stack's artifacts (or its own paths)."""
    if artifacts.by_stack:
        try:
            artifacts = artifacts.for_stack(arm.stack)
        except KeyError as e:
            raise ConfigError(f"arm {arm.name}: {e.args[0]}") from None
    return _qemu_of(arm, artifacts), _image_of(arm, artifacts, files), _module_sha256(arm, artifacts)


def _machine(scenario: Scenario, run: PlannedRun, qemu: Path, image: GuestImage,
             module_sha256: Optional[str]) -> Machine:
    """The run's machine: the scenario's VM settings, the arm's device properties, and the
    devices of the mechanism made for this run."""
    arm, vm = run.arm, scenario.vm
    spec = MachineSpec.for_image(
        image, qemu=qemu, memory_mib=vm.memory_mib, vcpus=vm.vcpus, accel=vm.accel,
        guest_thp=vm.guest_thp, boot_timeout=vm.boot_timeout, name=f"bh-{run.run_id}",
        balloon=BalloonDevice(properties=arm.device))
    # A kernel of the user's own boots with our initramfs; its Debian modules only load into
    # the matching Debian kernel, so such a kernel needs virtio built in (=y).
    if arm.kernel:
        spec = dataclasses.replace(spec, kernel=Path(arm.kernel))
    mechanism = arm.make_mechanism(vm.memory_mib)   # the one of this run: it will hold its guest
    return Machine(mechanism.configure(spec), mechanism, module_sha256)


def _with_accel(run: PlannedRun, accels: dict) -> PlannedRun:
    m = run.machine
    if m is None or m.spec.accel != "auto":
        return run
    key = (m.spec.qemu, m.spec.kernel, m.spec.firmware_dirs)
    spec = dataclasses.replace(m.spec, accel=accels.get(key, m.spec.accel))
    return dataclasses.replace(run, machine=dataclasses.replace(m, spec=spec))
