"""Scenario files: TOML describing a VM, workload and balloon steps, and the arms to compare.

Checked completely before anything boots: an unknown key, a wrong type or an impossible
value is refused with the file, the key and the reason, because a typo found after an hour
of runs costs the hour. The keys, their defaults and bounds are declared once, in
:mod:`harness.results.scenario_schema` (pydantic models, also the results folder's record
and the JSON Schema editors use); this module reads the file and tells the schema what only
this machine knows (the stacks and their designs, which paths and trees exist).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pydantic import ValidationError

import harness.mechanisms  # noqa: F401  (installs how an arm makes its mechanism)
from harness.artifacts.patches import design_names
from harness.artifacts.stacks import DEFAULT_STACK, STACKS
from harness.artifacts.trees import require_tree
from harness.errors import ConfigError
from harness.host import knobs
from harness.results import scenario_schema as schema
from harness.results.scenario_schema import (  # noqa: F401  (the names the runner and CLI use)
    ARM_ORDERS,
    BUILD_CHOICES,
    BUILT_IN,
    LABEL_MAX,
    MEMORY_MIB_MAX,
    NAME_MAX,
    NAME_PATTERN,
    OWN_TREE,
    REPETITIONS_MAX,
    SAMPLE_HZ_MAX,
    SECONDS_MAX,
    STEP_KINDS,
    VCPUS_MAX,
    Arm,
    GuestSettings,
    Scenario,
    Step,
    Timing,
    VMSettings,
    plain_name,
    printable,
)
from harness.vm.backing import Backing

# Every key a scenario file may hold, by table: (type, default, meaning), from the schema's
# fields. The docs' key reference (docs/reference/scenario-keys.md) is generated from this.
SCENARIO_KEYS: dict[str, dict[str, tuple[str, str, str]]] = schema.keys_table()
SCENARIO_KEYS[""]["stack"] = ("string", DEFAULT_STACK, "the guest stack of every arm that names none: "
                              + ", ".join(STACKS))
SCENARIO_KEYS["arms"]["stack"] = ("string", "the top level's", "this arm's guest stack: " + ", ".join(STACKS))


@cache
def _designs(folder: Path) -> tuple[str, ...]:
    """:func:`design_names` of a patch folder shipped with the harness, listed once a process:
    listing the stacks' six folders again for every scenario read was half of a load's time
    (a comparison or a review loads one per results folder)."""
    return tuple(design_names(folder))


def context(path: Path) -> schema.Context:
    """What the schema cannot know by itself: this machine's stacks, their designs, its files."""
    stacks = {name: (_designs(s.qemu_patch_dir), _designs(s.guest_patch_dir)) for name, s in STACKS.items()}

    def tree(p: Path, _what: str, marker: str, kind: str) -> Path:
        return require_tree(p, "", marker, kind)

    return schema.Context(base=path.parent, stacks=stacks, default_stack=DEFAULT_STACK, tree=tree,
                          backing=Backing.parse, thp=knobs.check)   # issue 29


def with_repetitions(scenario: Scenario, repetitions: int) -> Scenario:
    """The scenario with ``repetitions`` overridden (``--reps``); refused below 1."""
    if repetitions < 1:
        raise ConfigError(f"--reps {repetitions}: at least one repetition is needed")
    if repetitions > REPETITIONS_MAX:
        raise ConfigError(f"--reps {repetitions}: at most {REPETITIONS_MAX}")
    return scenario.model_copy(update={"repetitions": repetitions})


def with_order(scenario: Scenario, order: Optional[str] = None, seed: Optional[int] = None) -> Scenario:
    """The scenario with the arms' order (``--order``) and its seed (``--order-seed``) overridden."""
    if order is not None and order not in ARM_ORDERS:
        raise ConfigError(f"--order {order!r}: one of {', '.join(ARM_ORDERS)}")
    if seed is not None and seed < 0:
        raise ConfigError(f"--order-seed {seed}: a whole number >= 0")
    return scenario.model_copy(update={"order": order or scenario.order,
                                       "order_seed": scenario.order_seed if seed is None else seed})


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file; raises :class:`ConfigError` naming file, key, reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: scenario file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (UTF-8): {e.reason} at byte {e.start}") from None
    except OSError as e:   # a folder, no permission
        raise ConfigError(f"{path}: cannot read the scenario file: {e.strerror or e}") from None
    return load_scenario_text(text, path)


def load_scenario_text(text: str, path: str | Path) -> Scenario:
    """:func:`load_scenario` of ``text`` as if read from ``path`` (refusals name ``path``; its
    folder is where relative paths start): the one parse-and-validate step behind it, apart
    so that generated scenarios are judged without a file written per example."""
    path = Path(path)
    try:
        raw: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if "name" not in raw and not plain_name(path.stem):
        raise ConfigError(f"{path}: name (from the file name): must be at most {NAME_MAX} letters, digits and "
                          f". _ + - (it names the results folder), got {path.stem!r}")
    if "path" in raw:
        raise ConfigError(f"{path}: path: unknown key")
    try:
        scenario = schema.validate_scenario({"name": path.stem, **raw}, context(path))
    except ValidationError as e:
        raise ConfigError(schema.refusal(path, e)) from None
    return scenario.model_copy(update={"path": path.resolve()})
