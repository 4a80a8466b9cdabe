"""Scenario files: the shipped ones load, bad ones are refused naming file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.experiment.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
MINIMAL = """
name = "t"
[vm]
memory_mib = 1024
[[steps]]
kind = "balloon"
target_mib = 624
[[arms]]
name = "stock"
qemu = "stock"
module = "stock"
"""


@pytest.mark.parametrize("name", ["rfc-v1.toml", "rfc-v3-recovery.toml"])
def test_shipped_scenarios_load(name):
    s = load_scenario(REPO / "scenarios" / name)
    assert {"baseline", "thp-order", "stock"} <= {a.name for a in s.arms}
    assert s.arm("thp-order").device == (("thp-order", "on"),)
    assert s.arm("baseline").qemu == s.arm("thp-order").qemu == "patched"
    assert s.arm("baseline").module == s.arm("thp-order").module == "patched"
    assert any(st.kind == "balloon" for st in s.steps)


def test_rfc_v1_matches_the_rfc():
    s = load_scenario(REPO / "scenarios" / "rfc-v1.toml")
    assert s.vm.memory_mib == 1024 and s.vm.vcpus == 1
    assert [st.target_mib for st in s.steps if st.kind == "balloon"] == [624]
    assert "--punch-holes" in s.steps[0].command and "800m" in s.steps[0].command
    assert s.reference["thp-order"]["host_ahp_after_kib"] == 583680


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("mutation, key, reason", [
    (("[vm]\n", "[vm]\nmemroy_mib = 5\n"), "vm.memroy_mib", "unknown key"),
    (("memory_mib = 1024", 'memory_mib = "1G"'), "vm.memory_mib", "must be int"),
    (("memory_mib = 1024", "memory_mib = 64"), "vm.memory_mib", "at least 128"),
    (("target_mib = 624", "target_mib = 4096"), "steps[0].target_mib", "more than the guest"),
    (("target_mib = 624", "target_mib = -3"), "steps[0].target_mib", "at least 1"),
    (('kind = "balloon"', 'kind = "inflate"'), "steps[0].kind", "must be one of"),
    (('module = "stock"', 'module = "nonexistent.ko"'), "arms[0].module", "existing path"),
    (('name = "t"', 'name = "t"\nrepetitions = 0'), "repetitions", "at least 1"),
    (('name = "t"', 'name = "t"\ncolour = "red"'), "colour", "unknown key"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "run"\ncommand = ""'), "steps[0].command", "must not be empty"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "run"\ncommand = "   "'), "steps[0].command", "must not be empty"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "run"'), "steps[0].command", "required key is missing"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "background"\ncommand = "x"\nready = "(["'),
     "steps[0].ready", "regular expression"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "background"\ncommand = "x"\nholds_mib = 2048'),
     "steps[0].holds_mib", "cannot fit"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "sleep"\nseconds = nan'), "steps[0].seconds", "finite"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "run"\ncommand = "x"\nanon_drop_fraction = 1.5'),
     "steps[0].anon_drop_fraction", "between 0 and 1"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "background"\ncommand = "x"\nanon_drop_fraction = -0.1'),
     "steps[0].anon_drop_fraction", "at least 0"),
    (('kind = "balloon"\ntarget_mib = 624', 'kind = "stop"\nworkload = "w"'), "steps[0].workload",
     "no background or run step"),
    (('target_mib = 624', 'target_mib = 624\nlabel = ""'), "steps[0].label", "non-empty"),
    (('name = "stock"', 'name = "a b"'), "arms[0].name", "letters, digits"),
    (('name = "stock"', 'name = ""'), "arms[0].name", "must not be empty"),
    (('module = "stock"', 'module = "stock"\ndevice = { thp-order = "" }'), "arms[0].device.thp-order", "non-empty"),
    (('module = "stock"', 'module = "stock"\ndevice = { thp-order = "on,x=1" }'), "arms[0].device.thp-order",
     "without ','"),
    (('qemu = "stock"', 'qemu = ""'), "arms[0].qemu", "must not be empty"),
    (('[vm]\n', '[guest]\nfiles = { "/usr/bin/x" = "/no/such/file" }\n[vm]\n'), "guest.files", "does not exist"),
    (('[vm]\n', '[guest]\nfiles = { "relative/x" = "/bin/sh" }\n[vm]\n'), "guest.files", "absolute"),
    (('[vm]\n', '[guest]\nfiels = {}\n[vm]\n'), "guest.fiels", "unknown key"),
    (('[vm]\n', '[guest]\nfiles = { "/usr/../etc/x" = "/bin/sh" }\n[vm]\n'), "guest.files", "no '..'"),
    (('[vm]\n', '[guest]\nfiles = { "/usr/bin/" = "/bin/sh" }\n[vm]\n'), "guest.files", "name a file"),
    (('target_mib = 624', 'target_mib = 624\nlabel = "a/b"'), "steps[0].label", "without '/'"),
    (('target_mib = 624', 'target_mib = 624\nlabel = "a\\nb"'), "steps[0].label", "single line"),
    (('module = "stock"', 'module = "stock"\ndevice = { "thp order" = "on" }'), "arms[0].device.thp order",
     "not a QEMU property name"),
    (('module = "stock"', 'module = "stock"\nkernel = "/no/such/vmlinuz"'), "arms[0].kernel",
     "existing kernel image file"),
    (('module = "stock"', 'module = "stock"\n[reference.nobody]\nhost_ahp_after_kib = 1'), "reference.nobody",
     "no arm named 'nobody'"),
    (('module = "stock"', 'module = "stock"\n[reference.stock]\nhost_ahp_after_kib = "a lot"'),
     "reference.stock", "table of numbers"),
])
def test_bad_scenarios_are_refused_with_file_key_reason(tmp_path, mutation, key, reason):
    path = _write(tmp_path, MINIMAL.replace(*mutation, 1))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg and key in msg and reason in msg, msg


@pytest.mark.parametrize("text, key, reason", [
    (MINIMAL.split("[[steps]]")[0].replace('name = "t"', 'name = "t"\nsteps = []') + "[[arms]]"
     + MINIMAL.split("[[arms]]")[1], "steps", "at least one step"),
    (MINIMAL.split("[[steps]]")[0] + "[[arms]]" + MINIMAL.split("[[arms]]")[1], "steps", "required key is missing"),
    (MINIMAL.split("[[arms]]")[0].replace('name = "t"', 'name = "t"\narms = []'), "arms", "at least one arm"),
    (MINIMAL + '[[arms]]\nname = "stock"\nqemu = "stock"\nmodule = "stock"\n', "arms", "must be unique"),
])
def test_scenarios_without_steps_or_arms_are_refused(tmp_path, text, key, reason):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert f"{path}: {key}:" in msg and reason in msg, msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(_write(tmp_path, "name = ["))


def test_cli_refuses_bad_scenario_before_booting(tmp_path, capsys):
    from harness.cli import main
    path = _write(tmp_path, MINIMAL.replace("target_mib = 624", "target_mib = 4096"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "steps[0].target_mib" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_repeated_step_labels_are_refused(tmp_path):
    text = MINIMAL.replace("target_mib = 624", 'target_mib = 624\nlabel = "b"').replace(
        "[[arms]]", '[[steps]]\nkind = "balloon"\ntarget_mib = 600\nlabel = "b"\n[[arms]]')
    with pytest.raises(ConfigError, match="step labels must be unique"):
        load_scenario(_write(tmp_path, text))


def test_guest_files_resolve_relative_to_the_scenario(tmp_path):
    (tmp_path / "tool").write_text("#!/bin/sh\necho hi\n")
    path = _write(tmp_path, MINIMAL.replace("[vm]\n", '[guest]\nfiles = { "/usr/bin/tool" = "tool" }\n[vm]\n'))
    s = load_scenario(path)
    assert s.guest.files == (("/usr/bin/tool", tmp_path / "tool"),)


def test_background_step_fields(tmp_path):
    text = MINIMAL.replace('kind = "balloon"\ntarget_mib = 624',
                           'kind = "background"\ncommand = "usemem -s -1 100m"\nready = "done"\nholds_mib = 90')
    step = load_scenario(_write(tmp_path, text)).steps[0]
    assert (step.kind, step.ready, step.holds_mib, step.label) == ("background", "done", 90, "1:background usemem")


def test_reps_override(tmp_path):
    from harness.experiment.scenario import with_repetitions
    s = load_scenario(_write(tmp_path, MINIMAL))
    assert with_repetitions(s, 5).repetitions == 5
    with pytest.raises(ConfigError, match="at least one"):
        with_repetitions(s, 0)


def test_watched_workload_fields(tmp_path):
    """A run step's detached workload can be stopped by its label; the anonymous-memory drop
    a watched workload may have defaults to the named constant and can be set per step."""
    from harness.experiment.watch import DEFAULT_ANON_DROP_FRACTION
    text = MINIMAL.replace('kind = "balloon"\ntarget_mib = 624',
                           'kind = "run"\nlabel = "d"\ncommand = "usemem -d -s -1 100m"\n'
                           '[[steps]]\nkind = "background"\ncommand = "x"\nanon_drop_fraction = 0.5\n'
                           '[[steps]]\nkind = "stop"\nworkload = "d"')
    steps = load_scenario(_write(tmp_path, text)).steps
    assert steps[0].anon_drop_fraction == DEFAULT_ANON_DROP_FRACTION and steps[1].anon_drop_fraction == 0.5
    assert steps[2].workload == "d"


def test_primary_names_the_figures_that_decide(tmp_path):
    assert load_scenario(_write(tmp_path, MINIMAL)).primary == (
        "thp_lost_per_returned_mib", "reached_fraction", "returned_fraction")
    s = load_scenario(_write(tmp_path, 'primary = ["reached", "settle_seconds"]\n' + MINIMAL))
    assert s.primary == ("reached_fraction", "settle_seconds")
    for bad, reason in (('["bogus"]', "unknown figure 'bogus'"), ('["outcome"]', "not a number"),
                        ("[]", "non-empty list"), ('"reached"', "must be list"),
                        ('["reached", "reached_fraction"]', "named twice")):
        with pytest.raises(ConfigError, match=r"bad.toml: primary: ") as e:
            load_scenario(_write(tmp_path, f"primary = {bad}\n" + MINIMAL))
        assert reason in str(e.value)
