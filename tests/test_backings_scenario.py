"""Issue 29's scenario keys, without a guest: a backing per scenario or arm (``[vm] backing``,
an arm's ``backing``), the host's THP knobs (``[host.thp]``, an arm's ``host_thp``), their
refusals in one ``file: key: reason`` line at load, the JSON Schema and the key reference that
show them, and the rule that arms with different knobs never run at once (``--jobs > 1``
refused before anything builds, naming the knob sets)."""

from __future__ import annotations

import json

import pytest
from toml_text import step

from harness.cli import main
from harness.errors import ConfigError
from harness.experiment.plan import check_host_room, knobs_differ, plan
from harness.experiment.scenario import SCENARIO_KEYS, load_scenario
from harness.host import knobs
from harness.results.scenario_schema import json_schema

HEAD = 'name = "b"\n[vm]\nmemory_mib = 512\n{vm}\n{host}\n' + step("balloon", target_mib=400)
DEFRAG = knobs.read("defrag")           # this host's own value: the load checks, never writes
OTHER_DEFRAG = next(c for c in ("never", "madvise", "always") if c != DEFRAG)


def scenario(tmp_path, vm: str = "", host: str = "", arms: str = '[[arms]]\nname = "a"\nqemu = "stock"\n'
             'module = "stock"\n'):
    path = tmp_path / "s.toml"
    path.write_text(HEAD.format(vm=vm, host=host) + arms)
    return path


def arm(name: str, extra: str = "") -> str:
    return f'[[arms]]\nname = "{name}"\nqemu = "stock"\nmodule = "stock"\n{extra}\n'


def test_backing_and_knobs_per_scenario_and_per_arm(tmp_path):
    s = load_scenario(scenario(
        tmp_path, vm='backing = "hugetlbfs-2M"', host=f'[host.thp]\ndefrag = "{DEFRAG}"\n',
        arms=arm("a") + arm("b", 'backing = { kind = "tmpfs" }\nhost_thp = { khugepaged = { max_ptes_none = 0 } }')))
    a, b = s.arms
    assert s.arm_backing(a) == "hugetlbfs-2M"
    assert s.arm_backing(b) == {"kind": "tmpfs", "prealloc": False}
    assert s.arm_thp(a) == {"defrag": DEFRAG}
    assert s.arm_thp(b) == {"defrag": DEFRAG, "khugepaged.max_ptes_none": 0}


def test_defaults_are_todays_guest_on_the_hosts_own_knobs(tmp_path):
    s = load_scenario(scenario(tmp_path))
    assert s.arm_backing(s.arms[0]) == "anonymous" and s.arm_thp(s.arms[0]) == {}


@pytest.mark.parametrize("vm, host, arms, key, reason", [
    ('backing = "floppy"', "", arm("a"), "vm.backing", "kind 'floppy': choose one of"),
    ('backing = "hugetlbfs"', "", arm("a"), "vm.backing", "hugetlbfs needs page_size 2M or 1G"),
    ('backing = { kind = "memfd", page_size = "2M" }', "", arm("a"), "vm.backing", "page_size is for"),
    ('backing = { kind = "memfd", colour = "red" }', "", arm("a"), "vm.backing.colour", "unknown key"),
    ("", "", arm("a", 'backing = "hugetlbfs-3M"'), "arms[0].backing", "kind 'hugetlbfs-3M'"),
    ("", '[host.thp]\ndefrag = "sometimes"\n', arm("a"), "host.thp", "defrag: 'sometimes' is not one of"),
    ("", '[host.thp]\nwarp = "on"\n', arm("a"), "host.thp", "host THP knob 'warp': not a knob the harness sets"),
    ("", '[host.thp.khugepaged]\nmax_ptes_none = "many"\n', arm("a"), "host.thp",
     "khugepaged.max_ptes_none: a whole number"),
    ("", "", arm("a", 'host_thp = { defrag = 1.5 }'), "arms[0].host_thp.defrag", "must be a string or a whole"),
    ("", "", arm("a", 'host_thp = "never"'), "arms[0].host_thp", "must be a table of THP knobs"),
])
def test_refusals_name_file_key_and_reason(tmp_path, vm, host, arms, key, reason):
    path = scenario(tmp_path, vm=vm, host=host, arms=arms)
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    line = str(e.value)
    assert line.startswith(f"{path}: {key}: ") and reason in line and "\n" not in line, line


def test_a_record_reads_back_the_backing_and_knobs(tmp_path):
    from harness.results.scenario_schema import read_record, record_json
    s = load_scenario(scenario(tmp_path, vm='backing = { kind = "hugetlbfs", page_size = "2M" }',
                               arms=arm("a", f'host_thp = {{ defrag = "{DEFRAG}" }}')))
    back = read_record(record_json(s))
    assert back.arm_backing(back.arms[0]) == {"kind": "hugetlbfs", "page_size": "2M", "prealloc": False}
    assert back.arm_thp(back.arms[0]) == {"defrag": DEFRAG}


def test_schema_and_key_reference_show_the_keys():
    schema = json_schema()
    assert "backing" in schema["$defs"]["VMSettings"]["properties"]
    arm_props = schema["$defs"]["Arm"]["properties"]
    assert arm_props["host_thp"]["type"] == "object" and "backing" in arm_props
    assert schema["$defs"]["HostSettings"]["properties"]["thp"]["type"] == "object"
    assert "backing" in SCENARIO_KEYS["vm"] and "thp" in SCENARIO_KEYS["host"]
    assert "host_thp" in SCENARIO_KEYS["arms"]
    json.dumps(schema)


def test_arms_with_different_knobs_never_overlap(tmp_path, capsys):
    path = scenario(tmp_path, arms=arm("a", f'host_thp = {{ defrag = "{DEFRAG}" }}')
                    + arm("b", f'host_thp = {{ defrag = "{OTHER_DEFRAG}" }}'))
    p = plan(load_scenario(path))
    assert knobs_differ(p)
    check_host_room(p, jobs=1)      # one after another: each run sets its own, restored after
    with pytest.raises(ConfigError, match="knobs are host-wide"):
        check_host_room(p, jobs=2)
    # the command refuses it in one line before anything builds (conftest forbids the build)
    assert main(["run", str(path), "--jobs", "2", "--out", str(tmp_path / "out")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--jobs 2" in err[0] and f"defrag={OTHER_DEFRAG}" in err[0], err


def test_arms_with_the_same_knobs_may_overlap(tmp_path):
    path = scenario(tmp_path, host=f'[host.thp]\ndefrag = "{DEFRAG}"\n', arms=arm("a") + arm("b"))
    p = plan(load_scenario(path))
    assert not knobs_differ(p)
    check_host_room(p, jobs=2)


def _prepared(tmp_path, backing: str, accel: str, memory_mib: int = 1024):
    """A plan of one run whose machine is resolved (as Plan.prepared leaves it), without a build."""
    import dataclasses

    from harness.experiment.plan import Machine
    from harness.vm import MachineSpec
    from harness.vm.backing import Backing
    p = plan(load_scenario(scenario(tmp_path, vm=f'backing = "{backing}"')))
    spec = MachineSpec(kernel=tmp_path / "k", initrd=tmp_path / "i", host_key="ssh-ed25519 AAAA",
                       memory_mib=memory_mib, accel=accel, backing=Backing.parse(backing))
    run = dataclasses.replace(p.runs[0], machine=Machine(spec, None))  # type: ignore[arg-type]
    return dataclasses.replace(p, runs=(run,))


def test_guest_memfd_is_refused_before_boot_once_the_accelerator_is_tcg(tmp_path):
    with pytest.raises(ConfigError, match="arm a: backing guest_memfd: needs KVM"):
        check_host_room(_prepared(tmp_path, "guest_memfd", "tcg"))
    check_host_room(_prepared(tmp_path, "guest_memfd", "kvm"))


def test_hugetlb_pages_beyond_the_host_are_refused_with_the_numbers(tmp_path):
    from harness.host import hugepages
    pages = hugepages.available_pages(2048)
    too_big = (pages + 16) * 2   # MiB of 2 MiB pages: more than MemAvailable holds
    with pytest.raises(ConfigError, match=rf"need {too_big // 2} pages of 2048 kB \({too_big} MiB\), the host has"):
        check_host_room(_prepared(tmp_path, "hugetlbfs-2M", "tcg", memory_mib=too_big))
    check_host_room(_prepared(tmp_path, "hugetlbfs-2M", "tcg", memory_mib=512))
