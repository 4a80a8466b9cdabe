"""The scenario schema: every key a scenario file may hold, its type, default and bound, once.

Why pydantic (v2), not msgspec or attrs+cattrs: it exports a JSON Schema of the same models
(``balloon-harness schema``: editors complete and check scenario files), states bounds on the
field (``ge``/``le``, literals) instead of in hand-written checks, picks a model by a tag (an
arm's ``mechanism`` names the options model that checks its ``options``; a step's ``kind``
the keys it may hold, STEP_KEYS: one Step model rather than a discriminated union, so the
runner reads any step's fields without narrowing its type), and reports every error with its
location, which maps one to one to the ``file: key: reason`` line a refusal must be
(:func:`refusal`).

It lives in the results layer because a results folder records the resolved scenario as
JSON (``scenario.json``, :func:`record_json`) and the analysis, below the experiment, reads
that record back through these same models (:func:`read_record`, and for folders written
before the record :func:`read_toml_leniently`). What only the machine that runs knows (the
stacks and their designs, whether a path or a source tree exists) comes in through a
:class:`Context` from :mod:`harness.experiment.scenario`; without one (the analysis) those
checks are skipped. Mechanism options models are here too, so that the loader checks them
once; :mod:`harness.mechanisms` uses them and installs how to make a mechanism
(:func:`install_mechanism_factory`), since this layer may not import it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.results.metrics import DEFAULT_PRIMARY, METRICS, MOVE_KINDS, NUMERIC_COLUMNS
from harness.results.significance import ALPHA_MAX, DEFAULT_ALPHA, alpha_problem  # noqa: F401

# ---------------------------------------------------------------------------------------------
# names and bounds

# After the balloon (docs/recovery.md): "deflate" gives the memory back (a resize to the
# guest's full size unless target_mib says otherwise), "retouch" has the guest touch memory
# again and times it in the guest, "observe" samples the host and the 2 MiB frame map for
# `seconds` at `sample_hz` without acting. Their own block, so other kinds merge beside it.
AFTER_KINDS = ("deflate", "retouch", "observe")
AFTER_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "deflate": ("target_mib",),
    "retouch": ("command", "touch_mib", "timeout"),
    "observe": ("seconds", "sample_hz"),
}
AFTER_STEP_REQUIRED: dict[str, tuple[str, ...]] = {"deflate": (), "retouch": (), "observe": ("seconds",)}
DEFAULT_OBSERVE_HZ = 1.0          # frame-map readings per second of an observe step
OBSERVE_HZ_MAX = 10.0             # the bound against a typo: a 1 GiB host map read takes 0.6 ms (median, ioctl)

# "resize" brings the guest to target_mib with the arm's mechanism; "balloon" is its older
# name (same meaning, kept for existing scenario files and results).
STEP_KINDS = ("run", "background", *MOVE_KINDS, "stop", "sleep", "measure",
              *(k for k in AFTER_KINDS if k not in MOVE_KINDS))
StepKind = Literal["run", "background", "resize", "balloon", "stop", "sleep", "measure", "deflate", "retouch",
                   "observe"]
# The keys a step of each kind may hold besides kind and label, and those it must hold.
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "run": ("command", "timeout", "holds_mib", "throughput", "anon_drop_fraction"),
    "background": ("command", "timeout", "ready", "holds_mib", "anon_drop_fraction"),
    **{k: ("target_mib", "neighbour_mib") for k in ("resize", "balloon")},
    "deflate": ("target_mib",),
    "stop": ("workload",),
    "sleep": ("seconds",),
    "measure": (),
    **AFTER_STEP_KEYS,
}
STEP_REQUIRED: dict[str, tuple[str, ...]] = {
    "run": ("command",), "background": ("command",), **{k: ("target_mib",) for k in MOVE_KINDS},
    "stop": ("workload",), "sleep": ("seconds",), "measure": (),
    **AFTER_STEP_REQUIRED,
}
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
# ---- issue 30: fleets (many guests in one run; docs/fleet.md) ----
# A fleet run boots `guests` guests of [vm] at once; more than this is no experiment a
# 2-core lab host (or a CI runner) can hold, and a typo (300 for 3) is refused here.
FLEET_GUESTS_MAX = 16
BUILD_CHOICES = ("stock", "patched")
# The arms' order within each round of repetitions (harness.experiment.runner.plan): "random"
# (seeded shuffle per round, the default), "balanced" (each arm in each position equally
# often: a rotation per round), "fixed" (the scenario's order every round).
ARM_ORDERS = ("random", "balanced", "fixed")
ArmOrder = Literal["random", "balanced", "fixed"]
# What `qemu` and `module` say of an arm built from source trees (the tables say the rest).
OWN_TREE = "own-tree"
BUILT_IN = "built-in"
DEFAULT_MECHANISM = "balloon"
DEFAULT_BOOT_TIMEOUT = 300.0      # seconds the guest has to answer SSH (harness.vm.spec)
DEFAULT_ANON_DROP_FRACTION = 0.2  # harness.experiment.watch
OPS = ("<", "<=", ">", ">=", "==", "!=")
TESTS = ("mannwhitney", "none")
EXPECT_METRICS = (*NUMERIC_COLUMNS, "reached_fraction")
QEMU_PROPERTY = re.compile(r"[A-Za-z0-9_-]+")


# ---------------------------------------------------------------------------------------------
# what the validation is told about the machine


@dataclass(frozen=True)
class Context:
    """What a strict load knows beyond the file (:mod:`harness.experiment.scenario` fills it).

    ``base`` is the scenario file's folder (relative paths); ``stacks`` maps each stack to the
    designs its QEMU and guest module have ports of; ``tree`` checks a source tree
    (:func:`harness.artifacts.trees.require_tree`). ``record``: the input is a record this
    module wrote (``qemu_tree``/``kernel_tree`` keys, labels already resolved), read leniently.
    """

    base: Optional[Path] = None
    stacks: Optional[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = None
    default_stack: Optional[str] = None
    tree: Optional[Callable[[Path, str, str, str], Path]] = None
    record: bool = False
    # issue 29: how this machine checks a backing (harness.vm.backing.Backing.parse) and host
    # THP settings (harness.host.knobs.check); both raise a ConfigError naming what is wrong.
    backing: Optional[Callable[[Any], Any]] = None
    thp: Optional[Callable[[Any], Any]] = None

    @property
    def strict(self) -> bool:
        return self.base is not None and not self.record


def _context(info: ValidationInfo) -> Context:
    ctx = info.context
    return ctx if isinstance(ctx, Context) else Context()


def _fail(key: str, reason: str) -> PydanticCustomError:
    """A refusal at ``key`` (relative to where the validator runs), ``reason`` verbatim."""
    return PydanticCustomError("harness", "{reason}", {"reason": reason, "key": key})


class DefaultLabel(str):
    """A label the loader made (from the command): names no file, so not checked as one."""


def default_step_label(i: int, step: dict[str, Any]) -> str:
    """The label of the ``i``-th step (from 0) of a scenario when it has none: the one
    definition, used when a scenario is loaded and when a results folder's is read back."""
    kind = step.get("kind")
    if kind in AFTER_KINDS:
        return default_after_label(i, kind, step)
    if kind in ("run", "background"):
        command = str(step.get("command") or "")
        return f"{i + 1}:{kind} {command.split()[0] if command.split() else ''}"
    if kind in MOVE_KINDS:
        return f"{i + 1}:{kind} {step.get('target_mib')}"
    if kind == "stop":
        return f"{i + 1}:stop {step.get('workload') or ''}"
    if kind == "sleep":
        seconds = step.get("seconds", 0)
        return f"{i + 1}:sleep {float(seconds) if isinstance(seconds, (int, float)) else 0:g}s"
    return f"{i + 1}:measure"


def default_after_label(i: int, kind: str, step: dict[str, Any]) -> str:
    """Default labels of the after-the-balloon steps: "3:deflate", "4:retouch", "5:observe 120s"."""
    if kind == "observe":
        seconds = step.get("seconds", 0)
        return f"{i + 1}:observe {float(seconds) if isinstance(seconds, (int, float)) else 0:g}s"
    target = step.get("target_mib")
    return f"{i + 1}:{kind}" + (f" {target}" if kind == "deflate" and target is not None else "")


def plain_name(name: str) -> bool:
    """A name safe as one path component: letters, digits and . _ + - (not first), <= NAME_MAX."""
    return len(name) <= NAME_MAX and NAME_PATTERN.fullmatch(name) is not None


def _finite_number(v: Any) -> bool:
    """A TOML int or float that is a finite float (not a bool, not nan/inf, not beyond float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _doc(kind: str, default: str, meaning: str) -> dict[str, Any]:
    """How the key reference page (docs/reference/scenario-keys.md) shows a key."""
    return {"x-kind": kind, "x-default": default, "description": meaning}


def F(default: Any = ..., *, kind: str, shown: Optional[str] = None, meaning: str, **bounds: Any) -> Any:
    """A field with its bound and the words the key reference shows (``shown``: the default
    as the page says it, when not the value itself)."""
    text = shown if shown is not None else ("required" if default is ... else
                                            "none" if default is None else str(default).lower()
                                            if isinstance(default, bool) else str(default))
    extra = _doc(kind, text, meaning)
    return Field(default, description=meaning, json_schema_extra={k: v for k, v in extra.items()
                                                                   if k != "description"}, **bounds)


class _Model(BaseModel):
    """Frozen, no unknown key, no coercion (TOML's "1G" is not an int; true is not 1)."""

    # defer_build: the validators are built on first use, not at import (--help stays quick)
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False,
                              arbitrary_types_allowed=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _a_table(cls, data: Any) -> Any:
        if not isinstance(data, (dict, BaseModel)):
            raise _fail("", f"must be a table, got {type(data).__name__}")
        return data


# Lists are accepted where the models hold tuples (TOML arrays, JSON lists).
LAX = Field(strict=False)


# ---------------------------------------------------------------------------------------------
# the machine, the pacing, the guest's files


# ---------------------------------------------------------------------------------------------
# issue 29: the guest RAM's backing and the host's THP knobs (checked through the Context:
# harness.vm.backing and harness.host.knobs live above this layer)

# The kinds, declared here (the lowest layer) for the schema's texts; harness.vm.backing maps
# each to QEMU's options and refuses the impossible ones.
BACKING_KINDS = ("anonymous", "memfd", "tmpfs", "memfd-hugetlb", "hugetlbfs", "guest_memfd")
HUGETLB_BACKING_KINDS = ("memfd-hugetlb", "hugetlbfs")
BACKING_KINDS_TEXT = ", ".join(k + ("-2M/-1G" if k in HUGETLB_BACKING_KINDS else "") for k in BACKING_KINDS)


class BackingTable(_Model):
    """A backing written as a table (``{kind = "hugetlbfs", page_size = "2M"}``)."""

    kind: str = F(kind="string", meaning=", ".join(BACKING_KINDS))
    page_size: Optional[str] = F(None, kind="2M or 1G", shown="none", meaning="hugetlb kinds: the host page size")
    share: Optional[bool] = F(None, kind="boolean", shown="off for anonymous, else on",
                              meaning="QEMU's share= (shared memory is discarded by punching holes)")
    prealloc: bool = F(False, kind="boolean", meaning="QEMU's prealloc=")
    mem_path: Optional[str] = F(None, kind="string", shown="a mount of the harness's own",
                                meaning="tmpfs/hugetlbfs: a mounted folder to use instead")


# A string or a table, told apart by type (so a table's error is the table's, not "must be str").
_BACKING_TAGS = ("backing-name", "backing-table")
BackingValue = Annotated[Union[Annotated[str, Tag("backing-name")], Annotated[BackingTable, Tag("backing-table")]],
                         Discriminator(lambda v: "backing-name" if isinstance(v, str) else "backing-table")]


def _check_backing(value: Any, info: ValidationInfo) -> Any:
    """A backing checked by this machine's rules (Backing.parse), when the Context has them."""
    check = _context(info).backing
    if check is None or value is None:
        return value
    plain = value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value
    try:
        check(plain)
    except Exception as e:   # ConfigError: "backing: <reason>"
        raise _fail("", str(e).removeprefix("backing: ")) from None
    return value


def flatten_thp(settings: Any, prefix: str = "") -> dict[str, Any]:
    """``{"khugepaged": {"max_ptes_none": 0}}`` -> ``{"khugepaged.max_ptes_none": 0}`` (as
    harness.host.knobs.flatten: a TOML sub-table and a dotted name are the same knob)."""
    out: dict[str, Any] = {}
    for key, value in dict(settings).items():
        if isinstance(value, dict):
            out.update(flatten_thp(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _thp_pairs(value: Any, info: ValidationInfo) -> Any:
    """A THP settings table as sorted (knob, value) pairs, checked against this host."""
    ctx = _context(info)
    if ctx.record:
        return tuple(tuple(p) if isinstance(p, list) else p for p in value) if isinstance(value, (list, tuple)) \
            else value
    if not isinstance(value, dict):
        raise _fail("", f"must be a table of THP knobs, got {type(value).__name__} {value!r}")
    flat = flatten_thp(value)
    for name, v in flat.items():
        if not isinstance(v, (str, int, bool)):
            raise _fail(name, f"must be a string or a whole number, got {type(v).__name__} {v!r}")
    if ctx.thp is not None:
        try:
            ctx.thp(flat)
        except Exception as e:   # ConfigError: "host.thp: host THP knob <name>: <reason>"
            raise _fail("", str(e).removeprefix("host.thp: ")) from None
    return tuple(sorted(flat.items()))


ThpPairs = Annotated[tuple[tuple[str, Any], ...], LAX]


class HostSettings(_Model):
    """What the harness sets on the host for the scenario's runs (restored after each)."""

    thp: ThpPairs = F((), kind="table", shown="{} (the host's own)",
                      meaning="THP knobs under /sys/kernel/mm/transparent_hugepage for every arm, e.g. "
                              "{ defrag = \"never\", khugepaged = { max_ptes_none = 0 } }")

    @field_validator("thp", mode="before")
    @classmethod
    def _thp(cls, value: Any, info: ValidationInfo) -> Any:
        return _thp_pairs(value, info)

# ---------------------------------------------------------------------------------------------
# issue 32: guest probes (vmstat counters and tracepoint counts per guest sample) and guest
# knobs (sysctl/sysfs values an arm writes in the guest before its steps)

# A vmstat counter's name as /proc/vmstat prints it; a tracepoint as tracefs names it
# ("compaction:mm_compaction_begin", or "huge_memory:*" for every event of a subsystem).
VMSTAT_NAME = re.compile(r"[a-z0-9_]+")
TRACE_EVENT = re.compile(r"[a-z0-9_]+:(\*|[a-z0-9_]+(:[a-z0-9_]+)?)")
PROBE_NAMES_MAX = 64              # per list: each traced event costs a hist trigger in the guest
# Where a guest knob may live: sysctls, the mm sysfs knobs (THP, hugepages) and module
# parameters; nothing else (no device, no cgroup, no /proc/sysrq-trigger by accident).
GUEST_KNOB_ROOTS = ("/proc/sys/", "/sys/kernel/mm/")
GUEST_MODULE_PARAMETER = re.compile(r"/sys/module/[A-Za-z0-9_-]+/parameters/[A-Za-z0-9_.-]+")
GUEST_KNOB_VALUE_MAX = 200


class ProbeSettings(_Model):
    """``[probes]``: what the guest sampler records beside its fixed /proc readings
    (harness.probes.guest_events): every guest sample, the chosen counters and event counts,
    as rows of samples.parquet (sources ``guest_vmstat`` and ``guest_trace``); ``report``
    shows their change over each step. A name this guest's kernel lacks is recorded as absent
    (run.json ``probes``, with the reason), never a failure."""

    guest_vmstat: Annotated[tuple[str, ...], LAX] = F(
        (), kind="array of strings", shown="[]",
        meaning="guest /proc/vmstat counters recorded every guest sample, e.g. [\"compact_stall\", "
                "\"thp_deferred_split_page\", \"allocstall_movable\"]")
    guest_trace: Annotated[tuple[str, ...], LAX] = F(
        (), kind="array of strings", shown="[]",
        meaning="guest tracepoints counted every guest sample (a tracefs hist trigger each), as "
                "\"subsystem:event\", \"subsystem:*\", or \"subsystem:event:field\" (hits per value of the "
                "field too), e.g. [\"compaction:mm_compaction_begin\", \"compaction:mm_compaction_end:status\"]")

    @field_validator("guest_vmstat", "guest_trace", mode="before")
    @classmethod
    def _names(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _fail("", f"must be a list of names, got {type(value).__name__} {value!r}")
        pattern = VMSTAT_NAME if info.field_name == "guest_vmstat" else TRACE_EVENT
        what = "a /proc/vmstat counter name" if info.field_name == "guest_vmstat" else \
            "subsystem:event, subsystem:event:field or subsystem:* (tracefs names)"
        if len(value) > PROBE_NAMES_MAX:
            raise _fail("", f"at most {PROBE_NAMES_MAX} names, got {len(value)}")
        for i, name in enumerate(value):
            if not isinstance(name, str) or not pattern.fullmatch(name):
                raise _fail(f"[{i}]", f"must be {what}, got {name!r}")
        if len(set(value)) != len(value):
            raise _fail("", f"names a counter twice: {sorted({n for n in value if list(value).count(n) > 1})}")
        events = [":".join(n.split(":")[:2]) for n in value if n.count(":") == 2]
        if len(set(events)) != len(events):
            raise _fail("", f"one field per tracepoint (one hist trigger each), got two for "
                            f"{sorted({e for e in events if events.count(e) > 1})[0]}")
        return tuple(value)

    @property
    def active(self) -> bool:
        return bool(self.guest_vmstat or self.guest_trace)


def guest_knob_problem(path: Any) -> Optional[str]:
    """Why ``path`` may not be a guest knob (None: it may): absolute, normalised, under
    GUEST_KNOB_ROOTS or a module's parameters."""
    if not isinstance(path, str) or not path.startswith("/"):
        return f"must be an absolute guest path, got {path!r}"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts[1:]) or not path.isprintable() or any(c in path for c in " '\"\\$`"):
        return f"must be a plain path (no '..', '//', spaces or quotes), got {path!r}"
    if not (any(path.startswith(r) and len(path) > len(r) for r in GUEST_KNOB_ROOTS)
            or GUEST_MODULE_PARAMETER.fullmatch(path)):
        return (f"only knobs under {', '.join(GUEST_KNOB_ROOTS)} or /sys/module/<module>/parameters/ may be set, "
                f"got {path!r}")
    return None


def _guest_knobs(value: Any, info: ValidationInfo) -> Any:
    """A guest knob table as sorted (path, value) pairs, values as the text written."""
    if _context(info).record and isinstance(value, (list, tuple)):
        return tuple(tuple(p) for p in value)
    if not isinstance(value, dict):
        raise _fail("", f"must be a table of guest path = value, got {type(value).__name__} {value!r}")
    pairs = []
    for path, v in value.items():
        problem = guest_knob_problem(path)
        if problem:
            raise _fail(repr(path), problem)
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise _fail(repr(path), f"must be a string or a whole number, got {type(v).__name__} {v!r}")
        text = str(v)
        if not text.strip() or not text.isprintable() or len(text) > GUEST_KNOB_VALUE_MAX or "'" in text:
            raise _fail(repr(path), f"must be one printable line of at most {GUEST_KNOB_VALUE_MAX} characters "
                                    f"without quotes, got {text!r}")
        pairs.append((path, text))
    return tuple(sorted(pairs))


GuestKnobs = Annotated[tuple[tuple[str, str], ...], LAX]
# Kernel command-line options the harness sets itself (bh.*), or that would hide the console.
RESERVED_APPEND = re.compile(r"^(bh\.|console=|panic=|init=|rdinit=)")


class VMSettings(_Model):
    memory_mib: int = F(1024, kind="integer >= 128", meaning="guest memory at boot, MiB", ge=128, le=MEMORY_MIB_MAX)
    vcpus: int = F(1, kind="integer >= 1", meaning="guest vCPUs", ge=1, le=VCPUS_MAX)
    accel: Literal["auto", "kvm", "tcg"] = F("auto", kind="auto, kvm or tcg",
                                             meaning="auto: KVM when a probe boot shows it works, else TCG")
    guest_thp: Literal["always", "madvise", "never"] = F(
        "always", kind="always, madvise or never", meaning="the guest's transparent huge page mode, set at boot")
    boot_timeout: float = F(DEFAULT_BOOT_TIMEOUT, kind="number >= 1", ge=1, le=SECONDS_MAX,
                            meaning="seconds the guest has to answer SSH after QEMU starts")
    backing: BackingValue = F("anonymous", kind="string or table",
                              meaning="what the host puts behind guest RAM: " + BACKING_KINDS_TEXT +
                                      " (docs/backings.md)")
    # issue 32: the neighbour test (docs/neighbours.md)
    append: str = F("", kind="string", shown='""',
                    meaning="extra guest kernel command-line options, e.g. \"movablecore=256M\" (a ZONE_MOVABLE "
                            "whose memory blocks can be offlined)")
    neighbour_virtio_mem_mib: int = F(0, kind="integer >= 0", ge=0, le=MEMORY_MIB_MAX,
                                      meaning="a virtio-mem device of this many MiB beside the arm's mechanism, "
                                              "plugged and onlined movable at boot: a resize step's `neighbour_mib` "
                                              "unplugs from it while the balloon moves (0: none)")

    @field_validator("append")
    @classmethod
    def _append(cls, append: str) -> str:
        if not append.isprintable() or any(c in append for c in "'\"\\$`"):
            raise _fail("", f"must be one printable line without quotes, got {append!r}")
        reserved = [w for w in append.split() if RESERVED_APPEND.match(w)]
        if reserved:
            raise _fail("", f"{reserved[0]!r} is set by the harness itself")
        return append

    @model_validator(mode="after")
    def _neighbour(self) -> VMSettings:
        n = self.neighbour_virtio_mem_mib
        if n and (n < 128 or n % 128):
            raise _fail("neighbour_virtio_mem_mib", f"a multiple of 128 MiB (the guest's memory block), got {n}")
        return self

    @field_validator("backing")
    @classmethod
    def _backing(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_backing(value, info)


class Timing(_Model):
    """How a scenario's runs are paced: how long a resize may take, when it has stopped
    moving, how often the host and the guest are sampled (the mechanisms read it)."""

    settle_seconds: float = F(10.0, kind="number >= 0.5", ge=0.5, le=SECONDS_MAX,
                              meaning="a resize has settled after its size stopped moving this long")
    balloon_timeout_seconds: float = F(300.0, kind="number >= 1", ge=1, le=SECONDS_MAX,
                                       meaning="a resize gives up after this long (outcome timeout)")
    host_sample_hz: float = F(5.0, kind="number >= 0.1", ge=0.1, le=SAMPLE_HZ_MAX,
                              meaning="host probes and the guest's size per second")
    guest_sample_seconds: float = F(1.0, kind="number >= 0.1", ge=0.1, le=SECONDS_MAX,
                                    meaning="seconds between guest /proc samples over SSH")
    step_pause_seconds: float = F(2.0, kind="number >= 0", ge=0, le=SECONDS_MAX,
                                  meaning="quiet time sampled after each step")


def _host_path(base: Optional[Path], value: str) -> Path:
    return (base / Path(value).expanduser()) if base is not None else Path(value)


class GuestSettings(_Model):
    """What goes into the guest image beside ours: ``files`` maps guest path -> host path."""

    files: Annotated[tuple[tuple[str, Path], ...], LAX] = F(
        (), kind="table", shown="{}",
        meaning="guest path = host path (relative to the scenario file): files put in the image, over ours")
    knobs: GuestKnobs = F((), kind="table", shown="{}",
                          meaning="guest path = value written after boot, before the first step, for every arm "
                                  "(an arm's `guest_knobs` over it): /proc/sys/..., /sys/kernel/mm/..., "
                                  "/sys/module/<m>/parameters/...; each read back into run.json")

    @field_validator("knobs", mode="before")
    @classmethod
    def _knobs(cls, value: Any, info: ValidationInfo) -> Any:
        return _guest_knobs(value, info)

    @field_validator("files", mode="before")
    @classmethod
    def _files(cls, value: Any, info: ValidationInfo) -> Any:
        ctx = _context(info)
        if isinstance(value, (list, tuple)) and ctx.record:
            # as read: a record is read in JSON mode, where a path field takes the string (a
            # Path object here was refused, so no record with guest files could be read back)
            return tuple((g, h) for g, h in value)
        if not isinstance(value, dict):
            raise _fail("", f"must be dict, got {type(value).__name__} {value!r}")
        pairs = []
        for guest_path, host_path in value.items():
            key = f"{guest_path!r}"
            if not guest_path.startswith("/") or guest_path.endswith("/") or ".." in guest_path.split("/"):
                raise _fail(key, "the guest path must be absolute, name a file and contain no '..'")
            if not isinstance(host_path, str) or not host_path.strip():
                raise _fail(key, f"must be a host file path, got {host_path!r}")
            try:
                host = _host_path(ctx.base, host_path)
                host = host.resolve() if ctx.strict else host
            except RuntimeError as e:   # "~nobody/...": no such user's home
                raise _fail(key, f"{e}: {host_path!r}") from None
            if ctx.strict and not host.is_file():
                raise _fail(key, f"host file {host} does not exist")
            pairs.append((guest_path, host))
        return tuple(pairs)


# ---------------------------------------------------------------------------------------------
# steps


class Step(_Model):
    """One step of every run. ``kind`` says which of the other keys it may hold (STEP_KEYS)."""

    kind: StepKind = F(kind="string", meaning="run, background, resize (its older name: balloon), stop, sleep, "
                                              "measure, deflate, retouch or observe")
    label: str = F(kind="string", shown="\"<n>:<kind> <command's first word or target>\"",
                   meaning="the step's name in results and tables; unique, one line, no '/'")
    command: Optional[str] = F(None, kind="string", shown="required for run, background",
                               meaning="the shell command, run in a cgroup of its own (retouch: instead of "
                                       "`usemem <touch_mib>m`)")
    timeout: float = F(600.0, kind="number >= 1", ge=1, le=SECONDS_MAX,
                       meaning="run, retouch: the command's limit; background: the wait for `ready`")
    target_mib: Optional[int] = F(None, kind="integer >= 1", shown="required for resize", ge=1, le=MEMORY_MIB_MAX,
                                  meaning="resize: the guest's size to reach, MiB; deflate: the same, by default "
                                          "the guest's full size")
    seconds: float = F(0.0, kind="number >= 0", shown="required for sleep, observe", ge=0, le=SECONDS_MAX,
                       meaning="sleep, observe: how long")
    ready: Optional[str] = F(None, kind="regular expression",
                             meaning="background: the step ends when the output matches it")
    holds_mib: Optional[int] = F(None, kind="integer >= 1", ge=1, le=MEMORY_MIB_MAX,
                                 meaning="run, background: guest AnonPages must stay at least this from here on")
    workload: Optional[str] = F(None, kind="string", shown="required for stop",
                                meaning="stop: the label of the run or background step whose workload ends here")
    throughput: bool = F(False, kind="boolean",
                         meaning="run: the output has usemem throughput lines, recorded as workload_mb_s")
    touch_mib: Optional[int] = F(None, kind="integer >= 1", shown="what the last deflate gave back", ge=1,
                                 le=MEMORY_MIB_MAX,
                                 meaning="retouch: MiB the default command (`usemem <N>m`) touches")
    sample_hz: float = F(DEFAULT_OBSERVE_HZ, kind="number > 0", gt=0, le=OBSERVE_HZ_MAX,
                         meaning="observe: host frame-map readings per second")
    neighbour_mib: Optional[int] = F(None, kind="integer >= 0", shown="none", ge=0, le=MEMORY_MIB_MAX,
                                     meaning="resize: the neighbour virtio-mem device's ([vm] "
                                             "neighbour_virtio_mem_mib) requested size, set as the move starts: "
                                             "the guest unplugs (or plugs) while the balloon moves; recorded as "
                                             "the neighbour_* columns")
    anon_drop_fraction: float = F(DEFAULT_ANON_DROP_FRACTION, kind="number 0..1", ge=0,
                                  meaning="run, background: the share of its highest anonymous memory the "
                                          "watched workload may lose (1: no check)")

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, label: Any, info: ValidationInfo) -> Any:
        if isinstance(label, DefaultLabel) or _context(info).record:
            return str(label) if isinstance(label, str) else label
        if not isinstance(label, str):
            return label    # the type error says it
        if (not label.strip() or not label.isprintable() or "/" in label or "\\" in label
                or label.strip() in (".", "..") or len(label) > LABEL_MAX):
            raise _fail("", f"must be a non-empty single line of at most {LABEL_MAX} printable characters, "
                            f"without '/' or '\\' and not '.' or '..', got {label!r}")
        return label

    @field_validator("command")
    @classmethod
    def _command(cls, command: Optional[str]) -> Optional[str]:
        if command is not None and not command.strip():
            raise _fail("", "must not be empty")
        return command

    @field_validator("ready")
    @classmethod
    def _ready(cls, ready: Optional[str]) -> Optional[str]:
        if ready is not None:
            try:
                re.compile(ready)
            except (re.error, OverflowError, RecursionError) as e:
                raise _fail("", f"not a valid regular expression: {e}") from None
        return ready

    @field_validator("anon_drop_fraction")
    @classmethod
    def _fraction(cls, fraction: float) -> float:
        if fraction > 1:
            raise _fail("", f"must be a fraction between 0 and 1 (1: no check), got {fraction}")
        return fraction

    @model_validator(mode="after")
    def _keys_of_its_kind(self, info: ValidationInfo) -> Step:
        if _context(info).record:
            return self
        allowed = {"kind", "label", *STEP_KEYS[self.kind]}
        unknown = sorted(self.model_fields_set - allowed)
        if unknown:
            raise _fail(unknown[0], "unknown key" + (
                f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""))
        for key in STEP_REQUIRED[self.kind]:
            if key not in self.model_fields_set:
                raise _fail(key, "required key is missing")
        return self


# ---------------------------------------------------------------------------------------------
# source trees, mechanisms' options, arms


def _tree_source(value: Any, info: ValidationInfo, marker: str, kind: str) -> Any:
    ctx = _context(info)
    if not isinstance(value, str) or not value.strip():
        raise _fail("", f"must be a folder path, got {value!r}")
    try:
        path = _host_path(ctx.base, value)   # relative to the scenario file
    except RuntimeError as e:   # "~nobody/...": no such user's home
        raise _fail("", f"{e}: {value!r}") from None
    if ctx.strict and ctx.tree is not None:
        try:
            return ctx.tree(path, "", marker, kind)
        except Exception as e:   # ConfigError (this layer may not name it): its words are the reason
            raise _fail("", str(e).strip()) from None
    return path


def _ref(ref: Optional[str]) -> Optional[str]:
    if ref is not None and (not ref.strip() or ref.startswith("-")):
        raise _fail("", f"must be a git ref (a branch, tag or commit), got {ref!r}")
    return ref


class _SourceTree(_Model):
    """What a kernel and a QEMU tree share: a ``source`` folder recognised by a marker file, and
    an optional git ``ref``; the fields themselves are declared by each (their order is the one
    the key reference shows)."""

    MARKER: ClassVar[tuple[str, str]] = ("", "")   # (a file every such tree has, its project's name)

    _ref_ok = field_validator("ref", check_fields=False)(classmethod(lambda cls, v: _ref(v)))

    @field_validator("source", mode="before", check_fields=False)
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> Any:
        return value if isinstance(value, Path) else _tree_source(value, info, *cls.MARKER)


class KernelTree(_SourceTree):
    """``kernel = { source = DIR, config = [FRAGMENT...], ref = REF }``: a Linux tree the harness
    builds with its own minimal configuration (harness.artifacts.kernel_tree)."""

    MARKER: ClassVar[tuple[str, str]] = ("Kbuild", "Linux")

    source: Path = F(kind="string", meaning="a Linux tree (relative to the scenario file), built with the "
                                            "harness's minimal configuration")
    config: Annotated[tuple[Path, ...], LAX] = F((), kind="string or array", shown="[]",
                             meaning="configuration fragments applied after the minimal one, in order")
    ref: Optional[str] = F(None, kind="string", shown="the work tree",
                           meaning="a git branch, tag or commit to build instead of the work tree")

    @field_validator("config", mode="before")
    @classmethod
    def _config(cls, value: Any, info: ValidationInfo) -> Any:
        ctx = _context(info)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise _fail("", f"must be str or list, got {type(value).__name__} {value!r}")
        out = []
        for i, f in enumerate(value):
            if isinstance(f, Path):
                out.append(f)
                continue
            if not isinstance(f, str) or not f.strip():
                raise _fail(f"[{i}]", f"must be a folder path, got {f!r}")
            try:
                frag = _host_path(ctx.base, f)
            except RuntimeError as e:
                raise _fail(f"[{i}]", f"{e}: {f!r}") from None
            if ctx.strict:
                if not frag.is_file():
                    raise _fail(f"[{i}]", f"configuration fragment {frag} does not exist")
                frag = frag.resolve()
            out.append(frag)
        return tuple(out)

    def describe(self) -> str:
        """``DIR[@REF][ + FRAGMENT...]``: one label per build (two arms may differ by fragments)."""
        return f"{self.source}" + (f"@{self.ref}" if self.ref else "") + "".join(f" + {f.name}" for f in self.config)


class QemuTree(_SourceTree):
    """``qemu = { source = DIR, ref = REF }``: a QEMU tree the harness builds like its stacks'
    QEMU (harness.artifacts.qemu.build_qemu_tree)."""

    MARKER: ClassVar[tuple[str, str]] = ("configure", "QEMU")

    source: Path = F(kind="string", meaning="a QEMU tree (relative to the scenario file), built like the stacks'")
    ref: Optional[str] = F(None, kind="string", shown="the work tree",
                           meaning="a git branch, tag or commit to build instead of the work tree")

    def describe(self) -> str:
        return f"{self.source}" + (f"@{self.ref}" if self.ref else "")


class MechanismOptions(_Model):
    """An arm's ``options``: one subclass per mechanism (harness.mechanisms), its ``name``."""

    name: ClassVar[str] = ""

    def check(self, memory_mib: int) -> None:
        """Refuse values impossible in a guest of ``memory_mib`` (raise :func:`_fail`)."""


class BalloonOptions(MechanismOptions):
    name = "balloon"


class FreePageReportingOptions(MechanismOptions):
    name = "free-page-reporting"
    order: Optional[int] = F(None, kind="integer 0..10", shown="the guest's own",
                             meaning="page_reporting_order set in the guest after boot (default: the guest's "
                                     "own, the pageblock order)")

    def check(self, memory_mib: int) -> None:
        if self.order is not None and not 0 <= self.order <= 10:
            raise _fail("order", f"a page order between 0 and 10, got {self.order}")


class VirtioMemOptions(MechanismOptions):
    name = "virtio-mem"
    boot_mib: Optional[int] = F(None, kind="integer >= 128", shown="half of memory_mib",
                                meaning="memory the guest boots with (default: half of memory_mib)")
    block_mib: Optional[int] = F(None, kind="power of two", shown="QEMU's",
                                 meaning="the device's block size, the unplug granularity (default: QEMU's, "
                                         "the host THP size)")
    online: Literal["movable", "kernel"] = F("movable", kind="movable or kernel",
                                             meaning="how the guest onlines the device's memory: movable "
                                                     "(ZONE_MOVABLE: unplug can always migrate, but the kernel "
                                                     "cannot use it) or kernel")
    swiotlb: Literal["kernel", "off"] = F("kernel", kind="kernel or off",
                                          meaning="the guest's 64 MiB DMA bounce buffer, which the device's hotplug "
                                                  "range above 4 GiB makes Linux reserve: kernel (its choice) or "
                                                  "off (swiotlb=noforce; virtio devices do not use it)")

    def boot(self, memory_mib: int) -> int:
        return self.boot_mib or memory_mib // 2

    def check(self, memory_mib: int) -> None:
        boot = self.boot(memory_mib)
        if not 128 <= boot < memory_mib:
            raise _fail("boot_mib", f"between 128 and memory_mib - 1 ({memory_mib - 1}), got {boot}")
        region, block = memory_mib - boot, self.block_mib
        if block is not None and (block < 1 or block & (block - 1) or region % block):
            raise _fail("block_mib", f"a power of two dividing the device's {region} MiB, got {block}")


# name -> options model: the mechanisms there are (harness.mechanisms has one module each).
MECHANISM_OPTIONS: dict[str, type[MechanismOptions]] = {
    m.name: m for m in (BalloonOptions, FreePageReportingOptions, VirtioMemOptions)}

_MAKE_MECHANISM: list[Callable[[str, MechanismOptions, int], Any]] = []


def install_mechanism_factory(make: Callable[[str, MechanismOptions, int], Any]) -> None:
    """harness.mechanisms says how an arm's mechanism is made (this layer may not import it)."""
    _MAKE_MECHANISM[:] = [make]


def _device(value: Any, info: ValidationInfo) -> Any:
    if _context(info).record and isinstance(value, (list, tuple)):
        return tuple(tuple(p) for p in value)
    if not isinstance(value, dict):
        raise _fail("device", f"must be dict, got {type(value).__name__} {value!r}")
    props = []
    for k, v in value.items():
        if isinstance(v, bool):
            v = "on" if v else "off"
        if not isinstance(v, (str, int)) or not str(v).strip() or "," in str(v):
            raise _fail(f"device.{k}", f"must be a non-empty string, number or boolean without ',', got {v!r}")
        if not QEMU_PROPERTY.fullmatch(k):
            raise _fail(f"device.{k}", "not a QEMU property name")
        props.append((k, str(v)))
    return tuple(props)


def mechanism_options(mechanism: str, options: Any) -> MechanismOptions:
    """``options`` checked by ``mechanism``'s model (no memory check: :meth:`MechanismOptions.check`)."""
    model = MECHANISM_OPTIONS.get(mechanism)
    if model is None:
        raise _fail("mechanism", f"mechanism {mechanism!r} does not exist (choose one of "
                                 f"{', '.join(MECHANISM_OPTIONS)})")
    if not isinstance(options, dict):
        raise _fail("options", f"must be dict, got {type(options).__name__} {options!r}")
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        raise _fail(f"options.{unknown[0]}", f"unknown option of mechanism {mechanism!r} (it takes: "
                                             f"{', '.join(model.model_fields) or 'none'})")
    try:
        return model.model_validate(options)
    except ValidationError as e:
        key, reason = _where_and_why(e.errors()[0])
        raise _fail(f"options.{key}", reason) from None


class Arm(_Model):
    """A named combination of QEMU build, guest balloon module, device properties and the
    mechanism (harness.mechanisms) that resizes the guest, with that mechanism's options."""

    name: str = F(kind="string", meaning="the arm's name: letters, digits and . _ + - (it names folders)")
    description: str = F("", kind="string", shown='""', meaning="what the arm is, for people")
    qemu: str = F("patched", kind="string or table", meaning="stock, patched, a design, a QEMU binary path, or "
                                                            "a `qemu` table naming a tree")
    module: str = F("patched", kind="string", meaning="the guest balloon driver: stock, patched, a design, or a "
                                                     "virtio_balloon.ko path")
    kernel: Optional[str] = F(None, kind="string or table", shown="Debian's cloud kernel",
                              meaning="a guest kernel image path, or a `kernel` table naming a Linux tree")
    device: Annotated[tuple[tuple[str, str], ...], LAX] = F((), kind="table", shown="{}",
                                        meaning="balloon device properties, e.g. { thp-order = \"on\" }")
    stack: str = F(kind="string", shown="the top level's", meaning="this arm's guest stack")
    mechanism: str = F(DEFAULT_MECHANISM, kind="string",
                       meaning="what resizes the guest: " + ", ".join(MECHANISM_OPTIONS))
    options: Annotated[tuple[tuple[str, Any], ...], LAX] = F((), kind="table", shown="{}",
                                                           meaning="the mechanism's options")
    # issue 30: fleets (docs/fleet.md)
    guests: Optional[int] = F(None, kind=f"integer 1-{FLEET_GUESTS_MAX}", shown="the top level's", ge=1,
                              le=FLEET_GUESTS_MAX,
                              meaning="guests this arm's runs boot together (a fleet; docs/fleet.md)")
    kernel_tree: Optional[KernelTree] = Field(None, exclude=False, json_schema_extra={"x-hidden": True})
    qemu_tree: Optional[QemuTree] = Field(None, json_schema_extra={"x-hidden": True})
    # issue 29: this arm's backing and host THP knobs (over the scenario's)
    backing: Optional[BackingValue] = F(None, kind="string or table", shown="[vm] backing",
                                        meaning="this arm's guest RAM backing")
    host_thp: ThpPairs = F((), kind="table", shown="{}",
                           meaning="this arm's host THP knobs, over [host.thp] (arms with different knobs "
                                   "never run at once)")

    # issue 32: the guest's knobs for this arm (over [guest] knobs)
    guest_knobs: GuestKnobs = F((), kind="table", shown="{}",
                                meaning="guest path = value written in this arm's guests before the first step, "
                                        "over [guest] knobs, e.g. { \"/proc/sys/vm/watermark_boost_factor\" = "
                                        "\"0\" }")

    @field_validator("guest_knobs", mode="before")
    @classmethod
    def _arm_guest_knobs(cls, value: Any, info: ValidationInfo) -> Any:
        return _guest_knobs(value, info)

    @field_validator("backing")
    @classmethod
    def _arm_backing(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_backing(value, info)

    @field_validator("host_thp", mode="before")
    @classmethod
    def _arm_thp(cls, value: Any, info: ValidationInfo) -> Any:
        return _thp_pairs(value, info)

    @model_validator(mode="before")
    @classmethod
    def _tables(cls, data: Any, info: ValidationInfo) -> Any:
        """``qemu``/``kernel`` tables become the trees; ``device`` and ``options`` tables become
        sorted pairs, the options checked by the mechanism's model."""
        if not isinstance(data, dict):
            return data
        ctx = _context(info)
        data = dict(data)
        if not ctx.record:
            for hidden in ("kernel_tree", "qemu_tree"):
                if hidden in data:
                    raise _fail(hidden, "unknown key")
            if isinstance(data.get("qemu"), dict):
                data["qemu_tree"], data["qemu"] = data["qemu"], OWN_TREE
            if isinstance(data.get("kernel"), dict):
                if "module" in data:
                    raise _fail("module", "a kernel built from a source tree has its balloon driver built in: "
                                          "change the driver in that tree, not with `module`")
                data["kernel_tree"], data["module"] = data.pop("kernel"), BUILT_IN
            if "device" in data:
                data["device"] = _device(data["device"], info) if not isinstance(data["device"], BaseModel) \
                    else data["device"]
            options = data.get("options", {})
            mechanism = data.get("mechanism", DEFAULT_MECHANISM)
            if isinstance(mechanism, str):
                checked = mechanism_options(mechanism, options)
                data["options"] = tuple(sorted((k, getattr(checked, k)) for k in options))
        else:   # a record: pairs as JSON writes them (lists)
            for key in ("device", "options"):
                if isinstance(data.get(key), (list, tuple)):
                    data[key] = tuple(tuple(p) if isinstance(p, list) else p for p in data[key])
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name.strip():
            raise _fail("", "must not be empty")
        if not plain_name(name):
            raise _fail("", f"must be at most {NAME_MAX} letters, digits and . _ + - (it names folders), "
                            f"got {name!r}")
        return name

    @model_validator(mode="after")
    def _on_this_machine(self, info: ValidationInfo) -> Arm:
        ctx = _context(info)
        if ctx.stacks is not None and self.stack not in ctx.stacks:
            raise _fail("stack", f"must be one of {', '.join(ctx.stacks)}, got {self.stack!r}")
        if not ctx.strict:
            return self
        if self.kernel is not None and not Path(self.kernel).is_file():
            raise _fail("kernel", f"must be an existing kernel image file, got {self.kernel!r}")
        qemu_designs, module_designs = (ctx.stacks or {}).get(self.stack, ((), ()))
        for key, designs in (("qemu", qemu_designs), ("module", module_designs)):
            if (key == "qemu" and self.qemu_tree) or (key == "module" and self.kernel_tree):
                continue
            value = getattr(self, key)
            if not value.strip():
                raise _fail(key, "must not be empty")
            choices = (*BUILD_CHOICES, *designs)   # the designs this stack has ports of
            if value not in choices and not Path(value).exists():
                raise _fail(key, f"must be one of {', '.join(choices)} or an existing path, got {value!r}")
        return self

    def options_model(self) -> MechanismOptions:
        """The options as the mechanism's model holds them (checked when the arm was)."""
        return MECHANISM_OPTIONS[self.mechanism].model_construct(**dict(self.options))

    def make_mechanism(self, memory_mib: int, where: str = "options"):
        """A fresh :class:`harness.mechanisms.Mechanism` for one run of this arm."""
        if not _MAKE_MECHANISM:
            raise RuntimeError("harness.mechanisms is not imported: no mechanism can be made")
        return _MAKE_MECHANISM[0](self.mechanism, self.options_model(), memory_mib)


# ---------------------------------------------------------------------------------------------
# expectations


def figure_name(metric: str) -> str:
    """The name a decision uses for a figure: ``reached`` (a yes/no per run) as reached_fraction."""
    return "reached_fraction" if metric == "reached" else metric


class Expectation(_Model):
    """One promise about one arm, step and metric (absolute: ``value``; relative: ``than``):
    a ``[[expect]]`` table (harness.analysis.expectations says what each operator claims)."""

    arm: str = F(kind="string", meaning="the arm judged")
    step: str = F(kind="string", meaning="the step's label")
    metric: str = F(kind="string", meaning="a numeric summary column, or reached_fraction")
    op: Literal["<", "<=", ">", ">=", "==", "!="] = F(kind="string", meaning="< <= > >= == !=")
    value: Optional[float] = F(None, kind="number", shown="one of value, than",
                               meaning="absolute: the median over repetitions against this")
    than: Optional[str] = F(None, kind="string", shown="one of value, than",
                            meaning="relative: another arm; op says the procedure (superiority, non-inferiority, "
                                    "equivalence, difference: docs/decisions.md)")
    test: Literal["mannwhitney", "none"] = F("mannwhitney", kind="mannwhitney or none",
                                             meaning="none: medians only (single repetitions)")
    alpha: float = F(DEFAULT_ALPHA, kind="number in (0, 0.5]", meaning="the significance level")
    label: str = F("", kind="string", shown='""', meaning="a name for the expectation in JUnit and Markdown")
    # The smallest difference that matters for this claim: the figure's effect floor unless the
    # scenario states its own (an equivalence margin says what does not matter, so the author
    # may want it wider than the noise floor a calibration measured).
    margin: Optional[float] = F(None, kind="number >= 0", shown="the figure's effect floor",
                                meaning="relative: the smallest difference that matters (an equivalence margin, a "
                                        "non-inferiority margin), in the figure's unit")

    def __init__(self, arm: Any = None, step: Any = None, metric: Any = None, op: Any = None, /,
                 **data: Any) -> None:
        """Also ``Expectation(arm, step, metric, op, ...)`` (no context is needed to check one)."""
        given = {k: v for k, v in (("arm", arm), ("step", step), ("metric", metric), ("op", op)) if v is not None}
        super().__init__(**given, **data)

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str) -> str:
        if metric not in EXPECT_METRICS:
            hint = " (not a number)" if metric in METRICS else ""
            raise _fail("", f"unknown metric {metric!r}{hint}; one of the numeric summary columns or "
                            f"reached_fraction")
        return metric

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha(cls, alpha: Any) -> Any:
        problem = alpha_problem(alpha)
        if problem:
            raise _fail("", problem)
        return float(alpha)

    @model_validator(mode="after")
    def _one_of_value_than(self) -> Expectation:
        if (self.value is None) == (self.than is None):
            raise _fail("value", "give exactly one of value (a number) or than (another arm)")
        if self.than is not None and self.than == self.arm:
            raise _fail("than", "must name another arm than arm")
        if self.margin is not None:
            if self.than is None:
                raise _fail("margin", "only a relative expectation (than = ...) has a margin")
            if not 0 <= self.margin < math.inf:
                raise _fail("margin", f"must be a number >= 0 in the figure's unit, got {self.margin!r}")
        return self

    @property
    def relative(self) -> bool:
        return self.than is not None

    @property
    def name(self) -> str:
        """The label, or a description built from the fields."""
        if self.label:
            return self.label
        rhs = self.than if self.relative else f"{self.value:g}"
        return f"{self.arm} {self.step}: {self.metric} {self.op} {rhs}"


def check_expectations(expectations: Sequence[Expectation], arms: Sequence[str], steps: Sequence[str]) -> None:
    """Each expectation names an arm and a step the scenario has (raise :func:`_fail` at ``[i].key``)."""
    for i, e in enumerate(expectations):
        if e.arm not in arms:
            raise _fail(f"[{i}].arm", f"no arm named {e.arm!r} (arms: {', '.join(arms)})")
        if e.step not in steps:
            raise _fail(f"[{i}].step", f"no step labelled {e.step!r} (steps: {', '.join(steps)})")
        if e.than is not None and e.than not in arms:
            raise _fail(f"[{i}].than", f"no arm named {e.than!r} (arms: {', '.join(arms)})")


def _primary(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return tuple(figure_name(m) for m in DEFAULT_PRIMARY)
    if not isinstance(raw, list) or not raw:
        raise _fail("", f"must be a non-empty list of figure names, got {raw!r}")
    out: list[str] = []
    for m in raw:
        if not isinstance(m, str) or figure_name(m) not in EXPECT_METRICS:
            hint = " (not a number)" if isinstance(m, str) and m in METRICS else ""
            raise _fail("", f"unknown figure {m!r}{hint}; one of the numeric summary columns or reached_fraction")
        if figure_name(m) in out:
            raise _fail("", f"{m!r} is named twice")
        out.append(figure_name(m))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# the scenario


class Scenario(_Model):
    """A scenario file: the VM, its pacing, the steps of every run, the arms compared."""

    name: str = F(kind="string", shown="the file's name",
                  meaning="the scenario's name: results folders are <name>-<timestamp>")
    path: Path = Field(Path(), json_schema_extra={"x-hidden": True})
    description: str = F("", kind="string", shown='""', meaning="what the scenario measures, for people")
    stack: Optional[str] = F(None, kind="string", shown="the default stack",
                             meaning="the guest stack of every arm that names none")
    repetitions: int = F(1, kind="integer >= 1", ge=1, le=REPETITIONS_MAX,
                         meaning="runs of every arm (`--reps` overrides it)")
    # issue 30: fleets (docs/fleet.md)
    guests: int = F(1, kind=f"integer 1-{FLEET_GUESTS_MAX}", ge=1, le=FLEET_GUESTS_MAX,
                    meaning="guests every run boots together, each its own QEMU, doing the steps in lockstep "
                            "(a fleet; an arm's `guests` overrides it; docs/fleet.md)")
    vm: VMSettings = F(VMSettings(), kind="table", shown="", meaning="the guest machine, below")
    host: HostSettings = F(HostSettings(), kind="table", shown="", meaning="the host's THP knobs for the runs, "
                                                                             "below (issue 29)")
    timing: Timing = F(Timing(), kind="table", shown="", meaning="how runs are paced and sampled, below")
    kernel: Optional[KernelTree] = F(None, kind="table", shown="none",
                                     meaning="a Linux tree every arm naming neither `kernel` nor `module` boots "
                                             "(the `kernel` table below)")
    steps: Annotated[tuple[Step, ...], LAX] = F(
        kind="array of tables", meaning="what happens in every run, in order (`[[steps]]`), below")
    arms: Annotated[tuple[Arm, ...], LAX] = F(
        kind="array of tables", meaning="the configurations compared (`[[arms]]`), below")
    guest: GuestSettings = F(GuestSettings(), kind="table", shown="", meaning="files of your own in the guest "
                                                                             "image and its knobs, below")
    probes: ProbeSettings = F(ProbeSettings(), kind="table", shown="",
                              meaning="guest vmstat counters and tracepoints recorded per sample, below (issue 32)")
    expect: Annotated[tuple[Expectation, ...], LAX] = F((), kind="array of tables", shown="none",
                                    meaning="what the results must show (`[[expect]]`), below")
    primary: Annotated[tuple[str, ...], LAX] = F(None, kind="array of strings",
                             shown="[thp_lost_per_returned_mib, reached, returned_fraction]",
                             meaning="the figures that decide a comparison (Holm-adjusted); the others are "
                                     "described (docs/decisions.md)")
    order: ArmOrder = F("random", kind=" or ".join(ARM_ORDERS),
                        meaning="the arms' order within each round of repetitions: shuffled per round (seeded), "
                                "rotated by one place per round, or the order of [[arms]] (`--order` overrides it; "
                                "docs/decisions-over-time.md)")
    order_seed: Optional[int] = F(None, kind="integer >= 0", shown="derived from the file", ge=0,
                                  meaning="the seed of the random order (`--order-seed`); recorded in metadata.json")
    reference: dict[str, dict[str, float]] = F(
        {}, kind="table of tables", shown="none",
        meaning="`[reference.<arm>]`: numbers printed beside that arm's (summary column = number), e.g. the RFC's "
                "own figures")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        """Labels the steps do not give, each arm's stack and (top-level ``kernel``) tree."""
        if not isinstance(data, dict):
            return data
        ctx = _context(info)
        data = dict(data)
        if not ctx.record:
            if "path" in data:
                raise _fail("path", "unknown key")
            steps = data.get("steps")
            if isinstance(steps, list):
                if not steps:
                    raise _fail("steps", "at least one step is needed")
                data["steps"] = [{**s, "label": DefaultLabel(default_step_label(i, s))}
                                 if isinstance(s, dict) and "label" not in s else s for i, s in enumerate(steps)]
            arms = data.get("arms")
            if isinstance(arms, list) and not arms:
                raise _fail("arms", "at least one arm is needed")
            stack = data.get("stack", ctx.default_stack)
            if "stack" in data and not isinstance(stack, str):
                raise _fail("stack", f"must be str, got {type(stack).__name__} {stack!r}")
            if ctx.stacks is not None and "stack" in data and stack not in ctx.stacks:
                raise _fail("stack", f"must be one of {', '.join(ctx.stacks)}, got {stack!r}")
            if isinstance(stack, str):
                data["stack"] = stack         # the record says which stack was the default
            if isinstance(arms, list):
                fill: dict[str, Any] = {"stack": stack} if isinstance(stack, str) else {}
                kernel = data.get("kernel")
                data["arms"] = [
                    {**fill, **({"kernel": kernel} if kernel is not None and isinstance(a, dict)
                                and "kernel" not in a and "module" not in a else {}), **a}
                    if isinstance(a, dict) else a for a in arms]
            if data.get("primary") is None:
                data["primary"] = _primary(None)
        return data

    @field_validator("primary", mode="before")
    @classmethod
    def _primary_figures(cls, raw: Any, info: ValidationInfo) -> Any:
        if _context(info).record:
            return raw
        if not isinstance(raw, (list, tuple)):
            raise _fail("", f"must be list, got {type(raw).__name__} {raw!r}")
        return _primary(list(raw))

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, reference: Any) -> Any:
        if not isinstance(reference, dict):
            raise _fail("", f"must be dict, got {type(reference).__name__} {reference!r}")
        for arm_name, cols in reference.items():
            if not isinstance(cols, dict) or not all(_finite_number(v) for v in cols.values()):
                raise _fail(arm_name, "must be a table of numbers (finite)")
        return {k: {c: float(v) for c, v in cols.items()} for k, cols in reference.items()}

    @model_validator(mode="after")
    def _together(self, info: ValidationInfo) -> Scenario:
        """What no table can check alone: names against names, sizes against the VM's."""
        if not plain_name(self.name):
            raise _fail("name", f"must be at most {NAME_MAX} letters, digits and . _ + - (it names the results "
                                f"folder), got {self.name!r}")
        memory = self.vm.memory_mib
        for i, st in enumerate(self.steps):
            if st.target_mib is not None and st.target_mib > memory:
                raise _fail(f"steps[{i}].target_mib", f"{st.target_mib} MiB is more than the guest's {memory} MiB")
            if st.holds_mib is not None and st.holds_mib >= memory:
                raise _fail(f"steps[{i}].holds_mib", f"{st.holds_mib} MiB cannot fit in the guest's {memory} MiB")
        for i, st in enumerate(self.steps):
            if st.neighbour_mib is not None and st.neighbour_mib > self.vm.neighbour_virtio_mem_mib:
                raise _fail(f"steps[{i}].neighbour_mib", f"{st.neighbour_mib} MiB is more than the neighbour device's "
                                                         f"{self.vm.neighbour_virtio_mem_mib} MiB "
                                                         f"([vm] neighbour_virtio_mem_mib)")
        for i, arm in enumerate(self.arms):
            if self.vm.neighbour_virtio_mem_mib and arm.mechanism == "virtio-mem":
                raise _fail(f"arms[{i}].mechanism", "an arm resized by virtio-mem cannot have a neighbour virtio-mem "
                                                    "device too ([vm] neighbour_virtio_mem_mib)")
        for i, arm in enumerate(self.arms):
            try:
                arm.options_model().check(memory)
            except PydanticCustomError as e:
                raise _fail(f"arms[{i}].options.{(e.context or {}).get('key', '')}", str(e.message())) from None
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _fail("arms", f"arm names must be unique, repeated: {', '.join(dupes)}")
        labels = [st.label for st in self.steps]
        repeated = sorted({lb for lb in labels if labels.count(lb) > 1})
        if repeated:
            raise _fail("steps", f"step labels must be unique, repeated: {', '.join(repeated)}")
        started: list[str] = []
        for i, st in enumerate(self.steps):
            # A stop step must name a background or run step before it (a run step's workload
            # is what its command left running), stopped once.
            if st.kind in ("background", "run"):
                started.append(st.label)
            elif st.kind == "stop":
                if st.workload not in started:
                    raise _fail(f"steps[{i}].workload", f"no background or run step labelled {st.workload!r} "
                                                        f"runs before it (running: {', '.join(started) or 'none'})")
                started.remove(st.workload)
        try:
            check_expectations(self.expect, names, labels)
        except PydanticCustomError as e:
            raise _fail(f"expect{(e.context or {}).get('key', '')}", str(e.message())) from None
        for arm_name in self.reference:
            if arm_name not in names:
                raise _fail(f"reference.{arm_name}", f"no arm named {arm_name!r}")
        return self

    @property
    def expectations(self) -> tuple[Expectation, ...]:
        return self.expect

    @property
    def stacks(self) -> list[str]:
        """The guest stacks the arms use, in arm order (what a run must build)."""
        return list(dict.fromkeys(a.stack for a in self.arms))

    # ---- issue 29: each arm's backing and host knobs ----------------------------------------
    def arm_backing(self, arm: Arm) -> Any:
        """The arm's backing as written (its own, else ``[vm] backing``), for Backing.parse."""
        value = arm.backing if arm.backing is not None else self.vm.backing
        return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value

    def arm_thp(self, arm: Arm) -> dict[str, Any]:
        """The host THP knobs the arm's runs set: ``[host.thp]`` with the arm's over it."""
        return {**dict(self.host.thp), **dict(arm.host_thp)}

    def arm_guest_knobs(self, arm: Arm) -> dict[str, str]:
        """The guest knobs the arm's runs write: ``[guest] knobs`` with the arm's over it (issue 32)."""
        return {**dict(self.guest.knobs), **dict(arm.guest_knobs)}

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    # ---- issue 30: fleets (docs/fleet.md) ----
    def guests_of(self, arm: Arm) -> int:
        """The guests one run of ``arm`` boots together: the arm's ``guests``, else the top level's."""
        return arm.guests if arm.guests is not None else self.guests

    @property
    def fleet_size(self) -> int:
        """The most guests any run boots at once (1: no fleet)."""
        return max((self.guests_of(a) for a in self.arms), default=self.guests)


# ---------------------------------------------------------------------------------------------
# refusals, the record, the JSON Schema

_TYPE_NAMES = {"int_type": "int", "float_type": "a number", "string_type": "str", "bool_type": "bool",
               "dict_type": "dict", "list_type": "list", "tuple_type": "list", "model_type": "dict",
               "model_attributes_type": "dict", "int_from_float": "int", "float_parsing": "a number",
               "int_parsing": "int"}
_RENAMED = {"kernel_tree": "kernel", "qemu_tree": "qemu", "expect": "expect"}


def printable(text: str) -> str:
    """``text`` as one printable line (escapes for newlines and control characters): a
    refusal quoting a user's key stays one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _key(loc: Sequence[Union[int, str]], extra: str = "") -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part in _BACKING_TAGS:
            continue
        elif part not in ("function-after", "function-before", "function-wrap") and not part.startswith("function-"):
            key += ("." if key else "") + _RENAMED.get(part, part)
    if extra:
        key += extra if extra.startswith("[") or not key else "." + extra
    return key


def _where_and_why(error: Any) -> tuple[str, str]:
    """(key, reason) of one pydantic error, in the words a refusal uses."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    key = _key(error["loc"], str(ctx.get("key", "")) if kind == "harness" else "")
    if kind == "harness":
        return key, str(ctx["reason"])
    if kind == "missing":
        return key, "required key is missing"
    if kind == "extra_forbidden":
        return key, "unknown key"
    if kind in _TYPE_NAMES:
        return key, f"must be {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    if kind == "finite_number":
        return key, f"must be a finite number, got {value}"
    if kind in ("greater_than_equal", "greater_than"):
        return key, f"must be at least {ctx.get('ge', ctx.get('gt'))}, got {value}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return key, f"must be at most {bound}, got {value}"
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return key, f"must be one of {choices}, got {value!r}"
    return key, error["msg"]


def refusal(path: Union[str, Path], error: ValidationError) -> str:
    """The one line a refusal is: ``file: key: reason`` (the first error; unknown keys last,
    as a reader meets them after the keys it knows)."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] != "extra_forbidden"), errors[0])
    key, reason = _where_and_why(first)
    if first["type"] == "extra_forbidden":
        siblings = sorted(_key(e["loc"]) for e in errors if e["type"] == "extra_forbidden"
                          and tuple(e["loc"][:-1]) == tuple(first["loc"][:-1]))
        key = siblings[0]
        if len(siblings) > 1:
            reason += f" (also unknown: {', '.join(s.rsplit('.', 1)[-1] for s in siblings[1:])})"
    return f"{path}: {printable(key) or '(top level)'}: {printable(reason)}"


def validate_scenario(raw: Any, context: Context, model: type[Scenario] = Scenario) -> Scenario:
    """``raw`` (a TOML document, a record) as a :class:`Scenario`; ValidationError otherwise."""
    return model.model_validate(raw, context=context)


RECORD_VERSION = 1


def record_json(scenario: Scenario) -> str:
    """The resolved scenario as the results folder records it (``scenario.json``)."""
    import json
    return json.dumps({"record_version": RECORD_VERSION, "scenario": scenario.model_dump(mode="json")}, indent=1)


def read_record(text: str) -> Scenario:
    """A ``scenario.json`` read back (no check of this machine's paths or stacks)."""
    import json
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
        raise ValueError(f"record version {data.get('record_version') if isinstance(data, dict) else None!r}, "
                         f"this version reads {RECORD_VERSION}")
    # JSON mode: a path is a string there, a tuple a list
    return Scenario.model_validate_json(json.dumps(data["scenario"]), context=Context(record=True))


def read_toml_leniently(raw: dict[str, Any], path: Path) -> Scenario:
    """An old folder's ``scenario.toml`` (no ``scenario.json``) through the same models,
    without the run-time checks (paths, stacks): what the analysis needs of it."""
    return Scenario.model_validate({**raw, "name": raw.get("name", path.stem)}, context=Context(default_stack=""))


def json_schema(stacks: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON Schema of a scenario file as written (TOML), for editors: the models' schema
    with what a file does not write (resolved trees, the path) taken out, the table forms of
    ``qemu``, ``kernel``, ``device`` and ``options`` put in, and the choices of ``mechanism``
    and (given by the caller, who knows them) ``stack``."""
    schema = Scenario.model_json_schema(mode="validation")
    defs = schema.setdefault("$defs", {})
    schema["properties"].pop("path", None)
    schema["title"] = "balloon-harness scenario"
    arm = defs["Arm"]["properties"]
    for hidden in ("kernel_tree", "qemu_tree"):
        arm.pop(hidden, None)
    arm["qemu"] = {**{k: v for k, v in arm["qemu"].items() if k != "type"},
                   "anyOf": [{"type": "string"}, {"$ref": "#/$defs/QemuTree"}]}
    arm["kernel"] = {**{k: v for k, v in arm["kernel"].items() if k not in ("type", "anyOf")},
                     "anyOf": [{"type": "string"}, {"$ref": "#/$defs/KernelTree"}]}
    arm["device"] = {**{k: v for k, v in arm["device"].items() if k not in ("type", "items", "anyOf")},
                     "type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}}
    for model in MECHANISM_OPTIONS.values():
        defs[model.__name__] = model.model_json_schema()
    arm["options"] = {**{k: v for k, v in arm["options"].items() if k not in ("type", "items", "anyOf")},
                      "type": "object",
                      "anyOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in MECHANISM_OPTIONS.values()]}
    arm["mechanism"]["enum"] = list(MECHANISM_OPTIONS)
    thp_table = {"type": "object", "additionalProperties": {
        "anyOf": [{"type": ["string", "integer", "boolean"]},
                  {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}}]}}
    arm["host_thp"] = {**{k: v for k, v in arm["host_thp"].items() if k not in ("type", "items", "anyOf")},
                       **thp_table}
    host = defs["HostSettings"]["properties"]
    host["thp"] = {**{k: v for k, v in host["thp"].items() if k not in ("type", "items", "anyOf")}, **thp_table}
    arm["host_thp"]["default"] = host["thp"]["default"] = {}      # tables in a file, pairs in the model
    knob_table = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}, "default": {}}
    arm["guest_knobs"] = {**{k: v for k, v in arm["guest_knobs"].items() if k not in ("type", "items", "default")},
                          **knob_table}
    schema["properties"]["host"]["default"] = {}
    if stacks:
        arm["stack"]["enum"] = list(stacks)
        schema["properties"]["stack"] = {**{k: v for k, v in schema["properties"]["stack"].items()
                                            if k not in ("anyOf", "type", "default")}, "enum": list(stacks)}
    defs["Arm"]["required"] = ["name"]
    defs["Step"]["required"] = ["kind"]
    defs["KernelTree"]["properties"]["config"] = {
        **{k: v for k, v in defs["KernelTree"]["properties"]["config"].items() if k not in ("type", "items")},
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    for d in (defs["KernelTree"], defs["QemuTree"]):
        d["properties"]["source"] = {**d["properties"]["source"], "type": "string"}
        d["properties"]["source"].pop("format", None)
    knobs = defs["GuestSettings"]["properties"]["knobs"]
    defs["GuestSettings"]["properties"]["knobs"] = {
        **{k: v for k, v in knobs.items() if k not in ("type", "items", "default")}, **knob_table}
    files = defs["GuestSettings"]["properties"]["files"]
    defs["GuestSettings"]["properties"]["files"] = {
        **{k: v for k, v in files.items() if k not in ("type", "items")},
        "type": "object", "additionalProperties": {"type": "string"}}
    schema["properties"]["primary"] = {**{k: v for k, v in schema["properties"]["primary"].items()
                                          if k not in ("anyOf", "type", "items")},
                                       "type": "array", "items": {"type": "string"}, "minItems": 1}
    schema["properties"]["stack"].setdefault("description", "the guest stack of every arm that names none")
    schema["required"] = ["steps", "arms"]
    return _without_notes(schema)


def _without_notes(node: Any) -> Any:
    """The schema without the key reference's notes (``x-kind``, ``x-default``, ``x-hidden``)."""
    if isinstance(node, dict):
        return {k: _without_notes(v) for k, v in node.items() if not (isinstance(k, str) and k.startswith("x-"))}
    if isinstance(node, list):
        return [_without_notes(v) for v in node]
    return node


def keys_table() -> dict[str, dict[str, tuple[str, str, str]]]:
    """Every key a scenario file may hold, by table: (type, default, meaning), from the models'
    fields, and an arm's ``options`` by mechanism (docs/reference/scenario-keys.md is generated
    from this)."""
    tables: dict[str, type[BaseModel]] = {
        "": Scenario, "vm": VMSettings, "host": HostSettings, "vm.backing (a table)": BackingTable,
        "timing": Timing, "steps": Step, "arms": Arm, "kernel": KernelTree,
        "qemu": QemuTree, "guest": GuestSettings, "probes": ProbeSettings, "expect": Expectation,
        **{f"options of {name}": m for name, m in MECHANISM_OPTIONS.items() if m.model_fields}}
    out: dict[str, dict[str, tuple[str, str, str]]] = {}
    for section, model in tables.items():
        keys: dict[str, tuple[str, str, str]] = {}
        for name, f in type.__getattribute__(model, "model_fields").items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if extra.get("x-hidden") or "x-kind" not in extra:
                continue
            keys[name] = (str(extra["x-kind"]), str(extra["x-default"]), f.description or "")
        out[section] = keys
    return out


__all__ = ["Arm", "BackingTable", "Context", "HostSettings", "Expectation", "GuestSettings", "ProbeSettings",
            "KernelTree", "MechanismOptions", "QemuTree",
           "Scenario", "Step", "Timing", "VMSettings"]
