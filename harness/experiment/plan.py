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
from typing import Any, Optional

from harness.artifacts.build import Artifacts
from harness.artifacts.initramfs import GuestImage, build_image
from harness.errors import ConfigError
from harness.experiment.scenario import Arm, Scenario
from harness.host import hugepages
from harness.mechanisms import Mechanism
from harness.mechanisms.virtio_mem import with_neighbour
from harness.results import layout
from harness.vm import BalloonDevice, MachineSpec
from harness.vm.accel import decide_accelerators
from harness.vm.backing import MOUNTED_KINDS, Backing

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
    # issue 29: the machine before its mechanism configured it, and the host THP knobs the
    # run sets: the runner mounts a tmpfs/hugetlbfs backing's folder just before boot and
    # configures the mechanism again with it (a virtio-mem device's memory takes the backing).
    unconfigured: Optional[MachineSpec] = None
    thp: tuple[tuple[str, Any], ...] = ()
    neighbour_mib: int = 0     # issue 32: a virtio-mem device beside the mechanism (docs/neighbours.md)

    def with_backing(self, backing: Backing) -> MachineSpec:
        """The spec to boot once the host room made ``backing`` ready (its mount filled in)."""
        if self.unconfigured is None or backing == self.spec.backing:
            return self.spec
        return with_neighbour(self.mechanism.configure(dataclasses.replace(self.unconfigured, backing=backing)),
                              self.neighbour_mib)

    @property
    def ram_mib(self) -> int:
        """All the guest RAM the backing holds: boot memory and any virtio-mem region."""
        return self.spec.maxmem_mib or self.spec.memory_mib


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
        ready = dataclasses.replace(self, runs=tuple(runs.get(r.run_id, r) for r in self.runs))
        check_host_room(ready, jobs=1)   # issue 29: hugetlb pages and knobs, before any boot
        return ready


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
        balloon=BalloonDevice(properties=arm.device), append=vm.append)
    # A kernel of the user's own boots with our initramfs; its Debian modules only load into
    # the matching Debian kernel, so such a kernel needs virtio built in (=y).
    if arm.kernel:
        spec = dataclasses.replace(spec, kernel=Path(arm.kernel))
    spec = dataclasses.replace(spec, backing=planned_backing(scenario, arm))    # issue 29
    mechanism = arm.make_mechanism(vm.memory_mib)   # the one of this run: it will hold its guest
    return Machine(with_neighbour(mechanism.configure(spec), vm.neighbour_virtio_mem_mib), mechanism, module_sha256,
                   unconfigured=spec, thp=tuple(sorted(scenario.arm_thp(arm).items())),
                   neighbour_mib=vm.neighbour_virtio_mem_mib)


def _with_accel(run: PlannedRun, accels: dict) -> PlannedRun:
    m = run.machine
    if m is None or m.spec.accel != "auto":
        return run
    key = (m.spec.qemu, m.spec.kernel, m.spec.firmware_dirs)
    accel = accels.get(key, m.spec.accel)
    spec = dataclasses.replace(m.spec, accel=accel)
    unconfigured = dataclasses.replace(m.unconfigured, accel=accel) if m.unconfigured else None
    return dataclasses.replace(run, machine=dataclasses.replace(m, spec=spec, unconfigured=unconfigured))


# ---------------------------------------------------------------------------------------------
# issue 29: each arm's backing and host knobs, and the host's room for them

# Where a tmpfs/hugetlbfs backing's file will be: the runner mounts the real folder just
# before boot (harness.host.room.prepared) and configures the machine again with it.
UNMOUNTED = Path("/run/balloon-harness/mounted-at-boot")


def arm_backing(scenario: Scenario, arm: Arm) -> Backing:
    """The arm's backing (its own, else the scenario's ``[vm] backing``)."""
    return Backing.parse(scenario.arm_backing(arm), f"arm {arm.name}: backing")


def planned_backing(scenario: Scenario, arm: Arm) -> Backing:
    """The backing as planned: a mounted kind's folder stands in until the runner mounts it."""
    backing = arm_backing(scenario, arm)
    if backing.kind in MOUNTED_KINDS and backing.mem_path is None:
        backing = dataclasses.replace(backing, mem_path=UNMOUNTED)
    return backing


def knobs_differ(plan: Plan) -> bool:
    """Whether the runs to do set different host THP knobs (knobs are host-wide)."""
    return len({r.machine.thp if r.machine else tuple(sorted(plan.scenario.arm_thp(r.arm).items()))
                for r in plan.todo}) > 1


def check_host_room(plan: Plan, jobs: int = 1) -> None:
    """Refuse, before the first boot, what the host cannot give the plan's runs: arms with
    different THP knobs at once (``--jobs > 1``: knobs are host-wide, so each run would
    change the knobs under the others), or the hugetlb pages of the largest hugetlb guest
    (``jobs`` of them at once) beyond what ``MemAvailable`` holds, and a backing the decided
    accelerator cannot hold (guest_memfd under TCG). One line each, with the numbers."""
    if jobs > 1 and knobs_differ(plan):
        sets = sorted({", ".join(f"{k}={v}" for k, v in plan.scenario.arm_thp(a).items()) or "the host's own"
                       for a in plan.arms})
        raise ConfigError(f"--jobs {jobs}: the arms set different host THP knobs ({'; '.join(sets)}), and "
                          "knobs are host-wide: runs with different knobs cannot overlap; use --jobs 1")
    for a in plan.arms:     # a fleet's guests share one room: not built yet (docs/fleet.md)
        n = plan.scenario.guests_of(a)
        if n > 1 and (plan.scenario.arm_thp(a) or not arm_backing(plan.scenario, a).is_default):
            raise ConfigError(f"arm {a.name}: a fleet ({n} guests) runs on anonymous memory under the host's "
                              "own THP knobs for now: drop its backing and host_thp, or run one guest")
    need: dict[int, int] = {}
    for r in plan.todo:
        b = getattr(r.machine.spec, "backing", None) if r.machine is not None else None
        if r.machine is None or b is None:
            continue
        try:    # guest_memfd needs KVM: refused once the accelerator is decided
            b.check_guest(r.machine.spec.memory_mib, r.machine.spec.accel)
        except ConfigError as e:
            raise ConfigError(f"arm {r.arm.name}: {e}") from None
        if not b.hugetlb:
            continue
        need[b.page_kib] = max(need.get(b.page_kib, 0), hugepages.pages_for(b, r.machine.ram_mib))
    for page_kib, pages in sorted(need.items()):
        pages *= max(jobs, 1)
        hugepages.pool_state(page_kib)    # refuses a page size the host has no pool of
        available = hugepages.available_pages(page_kib)
        if pages > available:
            raise ConfigError(f"host huge pages: the plan's hugetlb guests need {pages} pages of {page_kib} kB "
                              f"({pages * page_kib // 1024} MiB{f', {jobs} at once' if jobs > 1 else ''}), the "
                              f"host has {available * page_kib // 1024} MiB available (MemAvailable): refused "
                              "before the first boot")
