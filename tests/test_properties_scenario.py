"""Generated scenarios (hypothesis): every file is either loaded, and says what it was
written with, or refused in one line naming the file, the key and the reason. Never a
traceback, whatever the keys, types and values; never a name that could lead a run's
results out of their folder.

Two properties: a valid scenario round-trips, and one with a key changed to an arbitrary
TOML value (or removed, or an unknown one added) is loaded or refused in one line; arbitrary
text is loaded or refused in one line. Profiles: tests/conftest.py.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from toml_text import dumps

from harness.errors import ConfigError
from harness.experiment import scenario as sc
from harness.mechanisms import registry

_ALNUM = "abcxyzABZ0189"
NAME = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "._+-", max_size=12))
# printable (letters, marks, digits, punctuation, symbols, the space) so that few are filtered out
LABEL = st.text(st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ",
                              exclude_characters="/\\"), min_size=1, max_size=12).filter(
    lambda s: s.isprintable() and s.strip() and s.strip() not in (".", ".."))
PATH_LIKE = st.sampled_from(["../../x", "", "..", ".", "a/b", "/tmp/x", "x\n", " a", "~root", "a\\b"])
TOML_SCALAR = (st.booleans() | st.integers() | st.integers(-(1 << 70), 1 << 70)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | PATH_LIKE)
TOML_VALUE = st.recursive(TOML_SCALAR, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
_COUNTER = itertools.count()
_DIR = Path(tempfile.mkdtemp(prefix="bh-props-scenario-"))
atexit.register(shutil.rmtree, _DIR, True)


def _write(text: str) -> Path:
    path = _DIR / f"s{next(_COUNTER)}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _refused_in_one_line(path: Path, err: ConfigError) -> None:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path}: ") and len(msg) > len(f"{path}: "), msg


@st.composite
def scenarios(draw) -> dict[str, Any]:
    """A valid scenario table: a VM, 1-3 steps, 1-2 arms with a mechanism and its options, and
    perhaps a promise ([[expect]]) about the first arm."""
    memory = draw(st.integers(256, 1 << 16))   # virtio-mem boots with half: at least 128
    steps = []
    for kind in draw(st.lists(st.sampled_from(("balloon", "resize", "sleep", "measure", "run")),
                              min_size=1, max_size=3)):
        step: dict[str, Any] = {"kind": kind}
        if kind in ("balloon", "resize"):
            step["target_mib"] = draw(st.integers(1, memory))
        elif kind == "sleep":
            step["seconds"] = draw(st.floats(0, sc.SECONDS_MAX))
        elif kind == "run":
            step["command"] = "x" + draw(st.text(max_size=20))
        steps.append(step)
    # distinct labels, made so rather than drawn so: lists(unique=True) gave up on one table in
    # twenty (a repeated draw), a whole generated example thrown away
    labels: list[str] = []
    for label in draw(st.lists(LABEL, min_size=len(steps), max_size=len(steps))):
        while label in labels:
            label += "+"
        labels.append(label)
    for step, label in zip(steps, labels):
        if draw(st.booleans()):
            step["label"] = label
    arms = []
    for name in draw(st.lists(NAME, min_size=1, max_size=2, unique=True)):
        arm: dict[str, Any] = {"name": name, "qemu": draw(st.sampled_from(sc.BUILD_CHOICES)),
                               "module": draw(st.sampled_from(sc.BUILD_CHOICES))}
        mechanism = draw(st.sampled_from(sorted(registry())))
        if mechanism != "balloon" or draw(st.booleans()):
            arm["mechanism"] = mechanism
        if mechanism == "free-page-reporting" and draw(st.booleans()):
            arm["options"] = {"order": draw(st.integers(0, 10))}
        if mechanism == "virtio-mem":
            arm["options"] = {"online": draw(st.sampled_from(("movable", "kernel")))}
        arms.append(arm)
    table: dict[str, Any] = {
        "name": draw(NAME),
        "vm": {"memory_mib": memory, "vcpus": draw(st.integers(1, sc.VCPUS_MAX)),
               "guest_thp": draw(st.sampled_from(("always", "madvise", "never")))},
        "timing": {"settle_seconds": draw(st.floats(0.5, sc.SECONDS_MAX)),
                   "host_sample_hz": draw(st.floats(0.1, sc.SAMPLE_HZ_MAX))},
        "repetitions": draw(st.integers(1, sc.REPETITIONS_MAX)),
        "steps": steps, "arms": arms,
    }
    if draw(st.booleans()):   # a promise about the first arm's first step ([[expect]])
        steps[0]["label"] = labels[0]
        promise: dict[str, Any] = {"arm": arms[0]["name"], "step": labels[0],
                                   "metric": draw(st.sampled_from(["thp_lost_per_ballooned_mib", "reached_fraction"])),
                                   "op": draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))}
        if len(arms) > 1 and draw(st.booleans()):
            promise["than"] = arms[1]["name"]
        else:
            promise["value"] = draw(st.floats(0, 10))
        table["expect"] = [promise]
    return table


def _says_what_it_was_written_with(s: sc.Scenario, table: dict[str, Any]) -> None:
    assert s.name == table["name"] and s.repetitions == table["repetitions"]
    assert s.vm.memory_mib == table["vm"]["memory_mib"] and s.vm.vcpus == table["vm"]["vcpus"]
    assert s.timing.settle_seconds == table["timing"]["settle_seconds"]
    assert [step.kind for step in s.steps] == [raw["kind"] for raw in table["steps"]]
    for step, raw in zip(s.steps, table["steps"]):
        assert step.label == raw.get("label", step.label) and step.target_mib == raw.get("target_mib")
    assert [a.name for a in s.arms] == [a["name"] for a in table["arms"]]
    assert [a.mechanism for a in s.arms] == [a.get("mechanism", "balloon") for a in table["arms"]]
    assert [(e.arm, e.step, e.metric, e.op) for e in s.expectations] == [
        (p["arm"], p["step"], p["metric"], p["op"]) for p in table.get("expect", [])]


def _places(table: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every (container, key) a mutation may touch, including one unknown key per table."""
    places: list[tuple[Any, ...]] = [(table, k) for k in (*table, "description", "stack", "guest", "expect",
                                                          "reference", "kernel", "unknown_key")]
    for sub in ("vm", "timing"):
        places += [(table[sub], k) for k in (*sc.VMSettings.model_fields, *sc.Timing.model_fields,
                                             "unknown")]
    for step in table["steps"]:
        places += [(step, k) for k in ("kind", "label", "command", "timeout", "target_mib", "seconds", "ready",
                                       "holds_mib", "workload", "throughput", "anon_drop_fraction", "x")]
    for promise in table.get("expect", []):
        places += [(promise, k) for k in ("arm", "step", "metric", "op", "value", "than", "test", "alpha", "label",
                                          "z")]
    for arm in table["arms"]:
        places += [(arm, k) for k in ("name", "qemu", "module", "device", "description", "kernel", "stack",
                                      "mechanism", "options", "y")]
        places.append((arm.setdefault("options", {}), "order"))
        places.append((arm["options"], "boot_mib"))
    return places


# The generated tables are judged from their text (sc.load_scenario_text, the step load_scenario
# takes after reading the file), as if read from this path: a file written and read back per
# example cost more than the judgement. dumps() escapes every control character, so the text is
# the same the file would give (read_text's newline translation has no bare CR to change).
# test_any_text_is_loaded_or_refused_in_one_line and the hand-made tests read real files.
AS_IF_FROM = _DIR / "generated.toml"


@given(scenarios(), st.data())
def test_a_scenario_with_one_key_changed_to_anything_is_loaded_or_refused_in_one_line(table, data):
    """One in five is left as generated: it must load and say what it was written with."""
    change = data.draw(st.integers(0, 9))
    if change < 2:
        _says_what_it_was_written_with(sc.load_scenario_text(dumps(table), AS_IF_FROM), table)
        return
    container, key = data.draw(st.sampled_from(_places(table)))
    if change == 2:
        container.pop(key, None)
    else:
        container[key] = data.draw(TOML_VALUE)
    path = AS_IF_FROM
    try:
        s = sc.load_scenario_text(dumps(table), path)
    except ConfigError as e:
        _refused_in_one_line(path, e)
    else:
        assert sc.plain_name(s.name) and all(sc.plain_name(a.name) for a in s.arms)
        assert sc.MEMORY_MIB_MAX >= s.vm.memory_mib >= 128 and 1 <= s.repetitions <= sc.REPETITIONS_MAX


@given(st.text(max_size=300))
def test_any_text_is_loaded_or_refused_in_one_line(text):
    path = _write(text)
    try:
        sc.load_scenario(path)
    except ConfigError as e:
        _refused_in_one_line(path, e)


@pytest.mark.parametrize("name", ["../../x", "", "..", ".", "a/b", "/tmp/x", "x\n", "-rf", " a", "a b",
                                  "a" * (sc.NAME_MAX + 1), "~root", "a\\b", "\u2028"])
@pytest.mark.parametrize("where", ["scenario", "arm"])
def test_a_path_like_name_is_refused(tmp_path, name, where):
    table = {"name": "ok", "steps": [{"kind": "measure"}], "arms": [{"name": "a", "module": "stock",
                                                                      "qemu": "stock"}]}
    (table if where == "scenario" else table["arms"][0])["name"] = name
    path = tmp_path / "s.toml"
    path.write_text(dumps(table))
    with pytest.raises(ConfigError, match="name") as info:
        sc.load_scenario(path)
    _refused_in_one_line(path, info.value)
