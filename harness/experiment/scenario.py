"""Scenario files: TOML describing a VM, workload and balloon steps, and the arms to compare.

Loaded into frozen dataclasses and checked completely before anything boots:
an unknown key, a wrong type or an impossible value is refused with the file,
the key and the reason, because a typo found after an hour of runs costs the
hour.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from harness.analysis.expectations import parse_expectations, parse_primary
from harness.artifacts.patches import design_names
from harness.artifacts.stacks import DEFAULT_STACK, STACKS
from harness.artifacts.trees import KernelTree, QemuTree, require_tree
from harness.errors import ConfigError
from harness.experiment.watch import DEFAULT_ANON_DROP_FRACTION
from harness.mechanisms import DEFAULT as DEFAULT_MECHANISM
from harness.mechanisms import make
from harness.results.folder import default_step_label
from harness.results.metrics import MOVE_KINDS
from harness.vm.spec import DEFAULT_BOOT_TIMEOUT
from harness.vm.timing import Timing

# "resize" brings the guest to target_mib with the arm's mechanism; "balloon" is its older
# name (same meaning, kept for existing scenario files and results).
STEP_KINDS = ("run", "background", *MOVE_KINDS, "stop", "sleep", "measure")
# Scenario and arm names end up in folder names (results/<scenario>-<time>, runs/<arm>-r<rep>),
# run ids and plot titles: plain names only, so no name can lead a write out of its folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
NAME_MAX = 100
# Step labels are free text (spaces, "1:balloon 624") shown in tables; they name no folder
# (step files use safe_name()), but still one printable line, no path separator, not a dot name.
LABEL_MAX = 200
# Upper bounds of the numeric keys: beyond these a value is a typo (a unit mix-up, an extra
# digit), and some (repetitions) would make the plan itself unbounded.
MEMORY_MIB_MAX = 4 << 20          # 4 TiB: more than any host here; the host check refuses sooner
VCPUS_MAX = 255                   # q35's limit in QEMU 7.2
SECONDS_MAX = 7 * 86400.0         # a week: any timeout, pause or sleep
SAMPLE_HZ_MAX = 100.0
REPETITIONS_MAX = 10_000
BUILD_CHOICES = ("stock", "patched")
# The arms' order within each round of repetitions (harness.experiment.runner.plan): "random"
# (seeded shuffle per round, the default), "balanced" (each arm in each position equally
# often: a rotation per round), "fixed" (the scenario's order every round).
ARM_ORDERS = ("random", "balanced", "fixed")
# What `qemu` and `module` say of an arm built from source trees (the tables say the rest).
OWN_TREE = "own-tree"
BUILT_IN = "built-in"


@dataclass(frozen=True)
class VMSettings:
    memory_mib: int = 1024
    vcpus: int = 1
    accel: str = "auto"
    guest_thp: str = "always"
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT


@dataclass(frozen=True)
class Step:
    kind: str                      # one of STEP_KINDS
    label: str
    command: str | None = None     # run, background
    timeout: float = 600.0         # run: the command's limit; background: the wait for `ready`
    target_mib: int | None = None  # resize (balloon)
    seconds: float = 0.0           # sleep
    ready: str | None = None       # background: regex its output matches once its memory is in place
    holds_mib: int | None = None   # run, background: guest AnonPages must stay >= this from here on
    workload: str | None = None    # stop: the label of the background step whose workload ends here
    throughput: bool = False       # run: the output has usemem throughput lines -> workload_mb_s
    # run, background: the share of its highest anonymous memory the watched workload may lose
    anon_drop_fraction: float = DEFAULT_ANON_DROP_FRACTION


@dataclass(frozen=True)
class Arm:
    """A named combination of QEMU build, guest balloon module, device properties and the
    mechanism (harness.mechanisms) that resizes the guest, with that mechanism's options."""

    name: str
    qemu: str = "patched"          # "stock", "patched", a design, a path to a QEMU binary, or OWN_TREE
    module: str = "patched"        # "stock", "patched", a design, a path to a virtio_balloon.ko, or BUILT_IN
    device: tuple[tuple[str, str], ...] = ()
    description: str = ""
    kernel: str | None = None      # a guest kernel image of your own (default: Debian's cloud kernel)
    stack: str = "bookworm"        # guest stack (harness.artifacts.stacks): kernel + QEMU source
    mechanism: str = DEFAULT_MECHANISM     # harness.mechanisms registry name
    options: tuple[tuple[str, Any], ...] = ()   # the mechanism's options
    kernel_tree: KernelTree | None = None  # kernel = { source = DIR, config = [...], ref = REF }
    qemu_tree: QemuTree | None = None      # qemu = { source = DIR, ref = REF }

    def make_mechanism(self, memory_mib: int, where: str = "options"):
        """A fresh :class:`harness.mechanisms.Mechanism` for one run of this arm."""
        return make(self.mechanism, dict(self.options), memory_mib, where)


@dataclass(frozen=True)
class GuestSettings:
    """What goes into the guest image beside ours: ``files`` maps guest path -> host path."""

    files: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    vm: VMSettings
    timing: Timing
    steps: tuple[Step, ...]
    arms: tuple[Arm, ...]
    repetitions: int = 1
    description: str = ""
    reference: dict[str, dict[str, float]] = field(default_factory=dict)  # arm -> column -> value
    guest: GuestSettings = GuestSettings()
    expectations: tuple[Any, ...] = ()     # harness.analysis.expectations.Expectation
    primary: tuple[str, ...] = ()          # the figures that decide a comparison (`primary = [...]`)
    order: str = "random"                  # arms' order within a round: ARM_ORDERS (harness.experiment.runner)
    order_seed: Optional[int] = None       # None: derived from the scenario's text (same plan in every shard)

    @property
    def stacks(self) -> list[str]:
        """The guest stacks the arms use, in arm order (what a run must build)."""
        return list(dict.fromkeys(a.stack for a in self.arms))

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)


# Every key a scenario file may hold, by table: (type, default, meaning). The docs' key
# reference (docs/reference/scenario-keys.md) is generated from this at build time, and
# tests/test_docs_reference.py fails on a key the loader below reads without an entry here.
# "" is the file's top level; "kernel" and "qemu" are the source-tree tables an arm's (or the
# top level's) `kernel = { ... }` / `qemu = { ... }` hold; "expect" is read by
# harness.analysis.expectations (its KEYS).
SCENARIO_KEYS: dict[str, dict[str, tuple[str, str, str]]] = {
    "": {
        "name": ("string", "the file's name", "the scenario's name: results folders are <name>-<timestamp>"),
        "description": ("string", '""', "what the scenario measures, for people"),
        "stack": ("string", DEFAULT_STACK, "the guest stack of every arm that names none: " + ", ".join(STACKS)),
        "repetitions": ("integer >= 1", "1", "runs of every arm (`--reps` overrides it)"),
        "vm": ("table", "", "the guest machine, below"),
        "timing": ("table", "", "how runs are paced and sampled, below"),
        "steps": ("array of tables", "required", "what happens in every run, in order (`[[steps]]`), below"),
        "arms": ("array of tables", "required", "the configurations compared (`[[arms]]`), below"),
        "kernel": ("table", "none", "a Linux tree every arm naming neither `kernel` nor `module` boots "
                                    "(the `kernel` table below)"),
        "guest": ("table", "", "files of your own in the guest image, below"),
        "expect": ("array of tables", "none", "what the results must show (`[[expect]]`), below"),
        "primary": ("array of strings", "[thp_lost_per_returned_mib, reached, returned_fraction]",
                    "the figures that decide a comparison (Holm-adjusted); the others are described "
                    "(docs/decisions.md)"),
        "order": (" or ".join(ARM_ORDERS), "random", "the arms' order within each round of repetitions: "
                  "shuffled per round (seeded), rotated by one place per round, or the order of [[arms]] "
                  "(`--order` overrides it; docs/decisions-over-time.md)"),
        "order_seed": ("integer >= 0", "derived from the file", "the seed of the random order (`--order-seed`); "
                       "recorded in metadata.json"),
        "reference": ("table of tables", "none", "`[reference.<arm>]`: numbers printed beside that arm's "
                                                 "(summary column = number), e.g. the RFC's own figures"),
    },
    "vm": {
        "memory_mib": ("integer >= 128", "1024", "guest memory at boot, MiB"),
        "vcpus": ("integer >= 1", "1", "guest vCPUs"),
        "accel": ("auto, kvm or tcg", "auto", "auto: KVM when a probe boot shows it works, else TCG"),
        "guest_thp": ("always, madvise or never", "always", "the guest's transparent huge page mode, set at boot"),
        "boot_timeout": ("number >= 1", str(DEFAULT_BOOT_TIMEOUT),
                         "seconds the guest has to answer SSH after QEMU starts"),
    },
    "timing": {
        "settle_seconds": ("number >= 0.5", "10.0", "a resize has settled after its size stopped moving this long"),
        "balloon_timeout_seconds": ("number >= 1", "300.0", "a resize gives up after this long (outcome timeout)"),
        "host_sample_hz": ("number >= 0.1", "5.0", "host probes and the guest's size per second"),
        "guest_sample_seconds": ("number >= 0.1", "1.0", "seconds between guest /proc samples over SSH"),
        "step_pause_seconds": ("number >= 0", "2.0", "quiet time sampled after each step"),
    },
    "steps": {
        "kind": ("string", "required", "run, background, resize (its older name: balloon), stop, sleep or measure"),
        "label": ("string", "\"<n>:<kind> <command's first word or target>\"",
                  "the step's name in results and tables; unique, one line, no '/'"),
        "command": ("string", "required for run, background", "the shell command, run in a cgroup of its own"),
        "timeout": ("number >= 1", "600.0", "run: the command's limit; background: the wait for `ready`"),
        "throughput": ("boolean", "false", "run: the output has usemem throughput lines, recorded as workload_mb_s"),
        "ready": ("regular expression", "none", "background: the step ends when the output matches it"),
        "holds_mib": ("integer >= 1", "none", "run, background: guest AnonPages must stay at least this "
                                              "from here on"),
        "anon_drop_fraction": ("number 0..1", str(DEFAULT_ANON_DROP_FRACTION),
                               "run, background: the share of its highest anonymous memory the watched "
                               "workload may lose (1: no check)"),
        "target_mib": ("integer >= 1", "required for resize", "resize: the guest's size to reach, MiB"),
        "workload": ("string", "required for stop", "stop: the label of the run or background step whose "
                                                    "workload ends here"),
        "seconds": ("number >= 0", "required for sleep", "sleep: how long"),
    },
    "arms": {
        "name": ("string", "required", "the arm's name: letters, digits and . _ + - (it names folders)"),
        "description": ("string", '""', "what the arm is, for people"),
        "qemu": ("string or table", "patched", "stock, patched, a design, a QEMU binary path, or a `qemu` "
                                               "table naming a tree"),
        "module": ("string", "patched", "the guest balloon driver: stock, patched, a design, or a "
                                        "virtio_balloon.ko path"),
        "kernel": ("string or table", "Debian's cloud kernel", "a guest kernel image path, or a `kernel` "
                                                               "table naming a Linux tree"),
        "device": ("table", "{}", "balloon device properties, e.g. { thp-order = \"on\" }"),
        "stack": ("string", "the top level's", "this arm's guest stack: " + ", ".join(STACKS)),
        "mechanism": ("string", DEFAULT_MECHANISM, "what resizes the guest: balloon, free-page-reporting, virtio-mem"),
        "options": ("table", "{}", "the mechanism's options"),
    },
    "kernel": {
        "source": ("string", "required", "a Linux tree (relative to the scenario file), built with the "
                                         "harness's minimal configuration"),
        "config": ("string or array", "[]", "configuration fragments applied after the minimal one, in order"),
        "ref": ("string", "the work tree", "a git branch, tag or commit to build instead of the work tree"),
    },
    "qemu": {
        "source": ("string", "required", "a QEMU tree (relative to the scenario file), built like the stacks'"),
        "ref": ("string", "the work tree", "a git branch, tag or commit to build instead of the work tree"),
    },
    "guest": {
        "files": ("table", "{}", "guest path = host path (relative to the scenario file): files put in "
                                 "the image, over ours"),
    },
    "expect": {
        "arm": ("string", "required", "the arm judged"),
        "step": ("string", "required", "the step's label"),
        "metric": ("string", "required", "a numeric summary column, or reached_fraction"),
        "op": ("string", "required", "< <= > >= == !="),
        "value": ("number", "one of value, than", "absolute: the median over repetitions against this"),
        "than": ("string", "one of value, than", "relative: another arm; op says the procedure (superiority, "
                                                 "non-inferiority, equivalence, difference: docs/decisions.md)"),
        "test": ("mannwhitney or none", "mannwhitney", "none: medians only (single repetitions)"),
        "alpha": ("number in (0, 0.5]", "0.05", "the significance level"),
        "margin": ("number >= 0", "the figure's effect floor", "relative: the smallest difference that "
                                                               "matters (an equivalence margin, a "
                                                               "non-inferiority margin), in the figure's unit"),
        "label": ("string", '""', "a name for the expectation in JUnit and Markdown"),
    },
}


def printable(text: str) -> str:
    """``text`` as one printable line (escapes for newlines and control characters): a
    refusal quoting a user's key stays one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def plain_name(name: str) -> bool:
    """A name safe as one path component: letters, digits and . _ + - (not first), <= NAME_MAX."""
    return len(name) <= NAME_MAX and NAME_PATTERN.fullmatch(name) is not None


class _Table:
    """Reads one TOML table, remembering which keys were used to refuse the rest."""

    def __init__(self, path: Path, where: str, data: Any):
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self.fail(where, f"must be a table, got {type(data).__name__}")
        self.data = data
        self.used: set[str] = set()

    def fail(self, key: str, reason: str):
        raise ConfigError(f"{self.path}: {printable(key)}: {printable(reason)}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ..., *,
            minimum: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                self.fail(self.key(name), "required key is missing")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                self.fail(self.key(name), f"must be a finite number, got {value}")
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(self.key(name), f"must be {names}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(self.key(name), f"must be a finite number, got {value}")
        if isinstance(value, str) and not value.strip() and default is ...:
            self.fail(self.key(name), "must not be empty")
        if minimum is not None and value < minimum:
            self.fail(self.key(name), f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            bound = int(maximum) if float(maximum).is_integer() else maximum
            self.fail(self.key(name), f"must be at most {bound}, got {value}")
        if choices is not None and value not in choices:
            self.fail(self.key(name), f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(self.key(unknown[0]), "unknown key" + (
                f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""))


def _load_vm(path: Path, data: Any) -> VMSettings:
    t = _Table(path, "vm", data)
    vm = VMSettings(
        memory_mib=t.get("memory_mib", int, 1024, minimum=128, maximum=MEMORY_MIB_MAX),
        vcpus=t.get("vcpus", int, 1, minimum=1, maximum=VCPUS_MAX),
        accel=t.get("accel", str, "auto", choices=("auto", "kvm", "tcg")),
        guest_thp=t.get("guest_thp", str, "always", choices=("always", "madvise", "never")),
        boot_timeout=t.get("boot_timeout", float, DEFAULT_BOOT_TIMEOUT, minimum=1, maximum=SECONDS_MAX),
    )
    t.finish()
    return vm


def _load_timing(path: Path, data: Any) -> Timing:
    t = _Table(path, "timing", data)
    timing = Timing(
        settle_seconds=t.get("settle_seconds", float, 10.0, minimum=0.5, maximum=SECONDS_MAX),
        balloon_timeout_seconds=t.get("balloon_timeout_seconds", float, 300.0, minimum=1, maximum=SECONDS_MAX),
        host_sample_hz=t.get("host_sample_hz", float, 5.0, minimum=0.1, maximum=SAMPLE_HZ_MAX),
        guest_sample_seconds=t.get("guest_sample_seconds", float, 1.0, minimum=0.1, maximum=SECONDS_MAX),
        step_pause_seconds=t.get("step_pause_seconds", float, 2.0, minimum=0, maximum=SECONDS_MAX),
    )
    t.finish()
    return timing


def _command(t: _Table) -> str:
    command = t.get("command", str)
    if not command.strip():
        t.fail(t.key("command"), "must not be empty")
    return command


def _label(t: _Table, default: str) -> str:
    if "label" not in t.data:   # made from the command (harness.results.folder): names no file
        return t.get("label", str, default)
    label = t.get("label", str, "")
    if (not label.strip() or not label.isprintable() or "/" in label or "\\" in label
            or label.strip() in (".", "..") or len(label) > LABEL_MAX):
        t.fail(t.key("label"), f"must be a non-empty single line of at most {LABEL_MAX} printable characters, without "
                               f"'/' or '\\' and not '.' or '..', got {label!r}")
    return label


def _holds(t: _Table, vm: VMSettings) -> int | None:
    holds = t.get("holds_mib", int, None, minimum=1, maximum=MEMORY_MIB_MAX)
    if holds is not None and holds >= vm.memory_mib:
        t.fail(t.key("holds_mib"), f"{holds} MiB cannot fit in the guest's {vm.memory_mib} MiB")
    return holds


def _anon_drop(t: _Table) -> float:
    fraction = t.get("anon_drop_fraction", float, DEFAULT_ANON_DROP_FRACTION, minimum=0)
    if fraction > 1:
        t.fail(t.key("anon_drop_fraction"), f"must be a fraction between 0 and 1 (1: no check), got {fraction}")
    return fraction


def _load_step(path: Path, i: int, data: Any, vm: VMSettings) -> Step:
    t = _Table(path, f"steps[{i}]", data)
    kind = t.get("kind", str, choices=STEP_KINDS)
    if kind == "run":
        command = _command(t)
        step = Step(kind, _label(t, default_step_label(i, data)), command=command,
                    timeout=t.get("timeout", float, 600.0, minimum=1, maximum=SECONDS_MAX), holds_mib=_holds(t, vm),
                    throughput=t.get("throughput", bool, False), anon_drop_fraction=_anon_drop(t))
    elif kind == "background":
        command = _command(t)
        ready = t.get("ready", str, None)
        if ready is not None:
            try:
                re.compile(ready)
            except (re.error, OverflowError, RecursionError) as e:
                t.fail(t.key("ready"), f"not a valid regular expression: {e}")
        step = Step(kind, _label(t, default_step_label(i, data)), command=command,
                    timeout=t.get("timeout", float, 600.0, minimum=1, maximum=SECONDS_MAX), ready=ready,
                    holds_mib=_holds(t, vm), anon_drop_fraction=_anon_drop(t))
    elif kind in MOVE_KINDS:
        target = t.get("target_mib", int, minimum=1, maximum=MEMORY_MIB_MAX)
        if target > vm.memory_mib:
            t.fail(t.key("target_mib"), f"{target} MiB is more than the guest's {vm.memory_mib} MiB")
        step = Step(kind, _label(t, default_step_label(i, data)), target_mib=target)
    elif kind == "stop":
        workload = t.get("workload", str)
        step = Step(kind, _label(t, default_step_label(i, data)), workload=workload)
    elif kind == "sleep":
        secs = t.get("seconds", float, minimum=0, maximum=SECONDS_MAX)
        step = Step(kind, _label(t, default_step_label(i, data)), seconds=secs)
    else:
        step = Step(kind, _label(t, default_step_label(i, data)))
    t.finish()
    return step


def _check_stops(path: Path, steps: tuple[Step, ...]) -> None:
    """A stop step must name a background or run step before it (a run step's workload is
    what its command left running), stopped once."""
    started: list[str] = []
    for i, st in enumerate(steps):
        if st.kind in ("background", "run"):
            started.append(st.label)
        elif st.kind == "stop":
            if st.workload not in started:
                raise ConfigError(f"{path}: steps[{i}].workload: no background or run step labelled "
                                  f"{st.workload!r} runs before it (running: {', '.join(started) or 'none'})")
            started.remove(st.workload)


def _load_arm(path: Path, i: int, data: Any, default_stack: str, vm: VMSettings,
              default_kernel: KernelTree | None = None) -> Arm:
    t = _Table(path, f"arms[{i}]", data)
    name = t.get("name", str)
    if not plain_name(name):
        t.fail(t.key("name"), f"must be at most {NAME_MAX} letters, digits and . _ + - (it names folders), "
                              f"got {name!r}")
    device = t.get("device", dict, {})
    props = []
    for k, v in device.items():
        if isinstance(v, bool):
            v = "on" if v else "off"
        if not isinstance(v, (str, int)) or not str(v).strip() or "," in str(v):
            t.fail(f"arms[{i}].device.{k}", f"must be a non-empty string, number or boolean "
                                            f"without ',', got {v!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", k):
            t.fail(f"arms[{i}].device.{k}", "not a QEMU property name")
        props.append((k, str(v)))
    kernel = t.get("kernel", (str, dict), None)
    kernel_tree = _kernel_tree(path, t.key("kernel"), kernel) if isinstance(kernel, dict) else None
    if kernel is None and "module" not in data:   # the scenario's kernel tree, if it names one
        kernel_tree = default_kernel
    qemu = t.get("qemu", (str, dict), "patched")
    qemu_tree = _qemu_tree(path, t.key("qemu"), qemu) if isinstance(qemu, dict) else None
    if kernel_tree is not None and "module" in data:
        t.fail(t.key("module"), "a kernel built from a source tree has its balloon driver built in: "
                                "change the driver in that tree, not with `module`")
    arm = Arm(name=name, qemu=OWN_TREE if qemu_tree else qemu,
              module=BUILT_IN if kernel_tree else t.get("module", str, "patched"),
              device=tuple(props), description=t.get("description", str, ""),
              kernel=kernel if isinstance(kernel, str) else None,
              stack=t.get("stack", str, default_stack, choices=tuple(STACKS)),
              mechanism=t.get("mechanism", str, DEFAULT_MECHANISM),
              options=tuple(sorted(t.get("options", dict, {}).items())),
              kernel_tree=kernel_tree, qemu_tree=qemu_tree)
    try:  # refuses unknown mechanisms and bad options now, not after the first boot
        arm.make_mechanism(vm.memory_mib, f"arms[{i}].options")
    except ConfigError as e:
        t.fail(t.key("mechanism"), str(e))
    if arm.kernel is not None and not Path(arm.kernel).is_file():
        t.fail(t.key("kernel"), f"must be an existing kernel image file, got {arm.kernel!r}")
    stack = STACKS[arm.stack]
    for key, folder in (("qemu", stack.qemu_patch_dir), ("module", stack.guest_patch_dir)):
        if (key == "qemu" and arm.qemu_tree) or (key == "module" and arm.kernel_tree):
            continue
        value = getattr(arm, key)
        if not value.strip():
            t.fail(t.key(key), "must not be empty")
        choices = (*BUILD_CHOICES, *design_names(folder))   # the designs this stack has ports of
        if value not in choices and not Path(value).exists():
            t.fail(t.key(key), f"must be one of {', '.join(choices)} or an existing path, got {value!r}")
    t.finish()
    return arm


def _tree_path(path: Path, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {key}: must be a folder path, got {value!r}")
    try:
        return path.parent / Path(value).expanduser()   # relative to the scenario file
    except RuntimeError as e:   # "~nobody/...": no such user's home
        raise ConfigError(f"{path}: {key}: {e}: {value!r}") from None


def _ref(t: _Table) -> str | None:
    ref = t.get("ref", str, None)
    if ref is not None and (not ref.strip() or ref.startswith("-")):
        t.fail(t.key("ref"), f"must be a git ref (a branch, tag or commit), got {ref!r}")
    return ref


def _kernel_tree(path: Path, where: str, data: dict) -> KernelTree:
    """``kernel = { source = "DIR", config = ["FRAGMENT", ...], ref = "REF" }``: a Linux tree the
    harness builds with its own minimal configuration (harness.artifacts.kernel_tree)."""
    t = _Table(path, where, data)
    source = require_tree(_tree_path(path, t.key("source"), t.get("source", str)), f"{path}: {t.key('source')}:",
                          "Kbuild", "Linux")
    fragments = t.get("config", (str, list), [])
    fragments = [fragments] if isinstance(fragments, str) else fragments
    config = []
    for i, f in enumerate(fragments):
        frag = _tree_path(path, f"{t.key('config')}[{i}]", f)
        if not frag.is_file():
            t.fail(f"{t.key('config')}[{i}]", f"configuration fragment {frag} does not exist")
        config.append(frag.resolve())
    tree = KernelTree(source, tuple(config), _ref(t))
    t.finish()
    return tree


def _qemu_tree(path: Path, where: str, data: dict) -> QemuTree:
    """``qemu = { source = "DIR", ref = "REF" }``: a QEMU tree the harness builds like its
    stacks' QEMU (harness.artifacts.qemu.build_qemu_tree)."""
    t = _Table(path, where, data)
    source = require_tree(_tree_path(path, t.key("source"), t.get("source", str)), f"{path}: {t.key('source')}:",
                          "configure", "QEMU")
    tree = QemuTree(source, _ref(t))
    t.finish()
    return tree


def _load_guest(path: Path, data: Any) -> GuestSettings:
    t = _Table(path, "guest", data)
    files = t.get("files", dict, {})
    pairs = []
    for guest_path, host_path in files.items():
        key = f"guest.files.{guest_path!r}"
        if not guest_path.startswith("/") or guest_path.endswith("/") or ".." in guest_path.split("/"):
            t.fail(key, "the guest path must be absolute, name a file and contain no '..'")
        if not isinstance(host_path, str) or not host_path.strip():
            t.fail(key, f"must be a host file path, got {host_path!r}")
        try:
            host = (path.parent / Path(host_path).expanduser()).resolve()
        except RuntimeError as e:   # "~nobody/...": no such user's home
            t.fail(key, f"{e}: {host_path!r}")
        if not host.is_file():
            t.fail(key, f"host file {host} does not exist")
        pairs.append((guest_path, host))
    t.finish()
    return GuestSettings(files=tuple(pairs))


def _finite_number(v: Any) -> bool:
    """A TOML int or float that is a finite float (not a bool, not nan/inf, not beyond float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def with_repetitions(scenario: Scenario, repetitions: int) -> Scenario:
    """The scenario with ``repetitions`` overridden (``--reps``); refused below 1."""
    if repetitions < 1:
        raise ConfigError(f"--reps {repetitions}: at least one repetition is needed")
    if repetitions > REPETITIONS_MAX:
        raise ConfigError(f"--reps {repetitions}: at most {REPETITIONS_MAX}")
    return dataclasses.replace(scenario, repetitions=repetitions)


def with_order(scenario: Scenario, order: Optional[str] = None, seed: Optional[int] = None) -> Scenario:
    """The scenario with the arms' order (``--order``) and its seed (``--order-seed``) overridden."""
    if order is not None and order not in ARM_ORDERS:
        raise ConfigError(f"--order {order!r}: one of {', '.join(ARM_ORDERS)}")
    if seed is not None and seed < 0:
        raise ConfigError(f"--order-seed {seed}: a whole number >= 0")
    return dataclasses.replace(scenario, order=order or scenario.order,
                               order_seed=scenario.order_seed if seed is None else seed)


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file; raises :class:`ConfigError` naming file, key, reason."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: scenario file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (UTF-8): {e.reason} at byte {e.start}") from None
    except OSError as e:   # a folder, no permission
        raise ConfigError(f"{path}: cannot read the scenario file: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    top = _Table(path, "", raw)
    name = top.get("name", str, path.stem)
    if not plain_name(name):
        top.fail("name" if "name" in raw else "name (from the file name)",
                 f"must be at most {NAME_MAX} letters, digits and . _ + - (it names the results folder), "
                 f"got {name!r}")
    vm = _load_vm(path, top.get("vm", dict, {}))
    timing = _load_timing(path, top.get("timing", dict, {}))
    steps_raw = top.get("steps", list)
    arms_raw = top.get("arms", list)
    if not steps_raw:
        top.fail("steps", "at least one step is needed")
    if not arms_raw:
        top.fail("arms", "at least one arm is needed")
    steps = tuple(_load_step(path, i, s, vm) for i, s in enumerate(steps_raw))
    default_stack = top.get("stack", str, DEFAULT_STACK, choices=tuple(STACKS))
    # A top-level `kernel = { source = ... }`: every arm naming neither `kernel` nor `module`
    # boots that tree's minimal kernel (README: "Your own trees": it boots in half the time).
    kernel_raw = top.get("kernel", dict, None)
    default_kernel = _kernel_tree(path, "kernel", kernel_raw) if kernel_raw is not None else None
    arms = tuple(_load_arm(path, i, a, default_stack, vm, default_kernel) for i, a in enumerate(arms_raw))
    names = [a.name for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        top.fail("arms", f"arm names must be unique, repeated: {', '.join(dupes)}")
    labels = [st.label for st in steps]
    repeated = sorted({lb for lb in labels if labels.count(lb) > 1})
    if repeated:
        top.fail("steps", f"step labels must be unique, repeated: {', '.join(repeated)}")
    _check_stops(path, steps)
    guest = _load_guest(path, top.get("guest", dict, {}))
    expect_raw = top.get("expect", list, [])
    expectations: tuple[Any, ...] = ()
    if expect_raw:
        try:
            expectations = tuple(parse_expectations(path, expect_raw, names, labels))
        except ConfigError as e:   # its messages quote keys as written: kept to one line
            raise ConfigError(printable(str(e))) from None
    reference = top.get("reference", dict, {})
    for arm_name, cols in reference.items():
        if arm_name not in names:
            top.fail(f"reference.{arm_name}", f"no arm named {arm_name!r}")
        if not isinstance(cols, dict) or not all(
                _finite_number(v) for v in cols.values()):
            top.fail(f"reference.{arm_name}", "must be a table of numbers (finite)")
    scenario = Scenario(
        name=name, path=path.resolve(), vm=vm, timing=timing, steps=steps, arms=arms,
        repetitions=top.get("repetitions", int, 1, minimum=1, maximum=REPETITIONS_MAX),
        description=top.get("description", str, ""),
        reference={k: {c: float(v) for c, v in cols.items()} for k, cols in reference.items()},
        guest=guest, expectations=expectations, primary=parse_primary(path, top.get("primary", list, None)),
        order=top.get("order", str, "random", choices=ARM_ORDERS),
        order_seed=top.get("order_seed", int, None, minimum=0),
    )
    top.finish()
    return scenario
