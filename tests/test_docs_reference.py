"""The documentation's reference pages are generated from the code (docs/hooks/reference.py);
these checks fail when a column, a scenario key, a command or an option has no description,
when a command has no docs page, and when a docs page is missing from the site's navigation.
No site is built here (tests/test_docs_site.py builds one and opens it in a browser)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from harness.cli.main import COMMAND_DOCS, docs_line, main, make_parser
from harness.experiment.scenario import SCENARIO_KEYS
from harness.results.metrics import METRICS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_column_has_a_meaning_and_is_on_the_generated_page():
    page = _hook().render((DOCS / "reference" / "columns.md").read_text())
    for name, metric in METRICS.items():
        assert metric.meaning.strip(), f"summary column {name} has no meaning in harness/results/metrics.py"
        assert f"| `{name}` |" in page, name


def test_every_key_of_the_schema_is_described():
    """SCENARIO_KEYS is the schema's fields (harness.results.scenario_schema.keys_table): every
    key a file may hold has a type and a meaning there, and nothing else is listed."""
    from harness.results import scenario_schema as schema
    tables = {"": schema.Scenario, "vm": schema.VMSettings, "timing": schema.Timing, "steps": schema.Step,
              "arms": schema.Arm, "kernel": schema.KernelTree, "qemu": schema.QemuTree,
              "guest": schema.GuestSettings, "probes": schema.ProbeSettings, "expect": schema.Expectation,
              "host": schema.HostSettings, "vm.backing (a table)": schema.BackingTable,   # issue 29
              **{f"options of {name}": m for name, m in schema.MECHANISM_OPTIONS.items() if m.model_fields}}
    assert "options of virtio-mem" in tables
    assert set(SCENARIO_KEYS) == set(tables)
    for section, model in tables.items():
        fields = {name for name, f in model.model_fields.items()
                  if not (isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("x-hidden"))}
        assert set(SCENARIO_KEYS[section]) == fields, section
    assert sum(len(keys) for keys in SCENARIO_KEYS.values()) > 50
    for section, keys in SCENARIO_KEYS.items():
        for key, (kind, _default, meaning) in keys.items():
            assert kind.strip() and meaning.strip(), f"[{section}] {key}: type and meaning are needed"


def test_expect_keys_are_the_expectation_parser_s():
    from harness.analysis.expectations import KEYS
    assert set(SCENARIO_KEYS["expect"]) == set(KEYS)


def _keys_used(where: str, table: dict, seen: set[tuple[str, str]]) -> None:
    """(section, key) of every key a scenario table holds, by the section SCENARIO_KEYS lists it in."""
    for key, value in table.items():
        seen.add((where, key))
        if where == "" and key in ("vm", "timing", "guest", "kernel") and isinstance(value, dict):
            _keys_used(key, value, seen)
        elif where == "" and key in ("steps", "arms", "expect") and isinstance(value, list):
            for item in value:
                _keys_used(key, item, seen)
        elif where == "arms" and key in ("kernel", "qemu") and isinstance(value, dict):
            _keys_used(key, value, seen)


def test_the_shipped_scenarios_use_only_keys_described_in_their_own_table():
    """Section by section: a key used in [[arms]] must be described under arms, not elsewhere."""
    import tomllib
    seen: set[tuple[str, str]] = set()
    files = sorted((ROOT / "scenarios").glob("*.toml")) + sorted((ROOT / "ci").rglob("*.toml"))
    for path in files:
        _keys_used("", tomllib.loads(path.read_text()), seen)
    assert len(files) >= 10 and len(seen) > 30
    undescribed = sorted((s, k) for s, k in seen if k not in SCENARIO_KEYS.get(s, {}))
    assert not undescribed, f"keys used without a description in their table: {undescribed}"


def test_the_key_reference_page_lists_every_key():
    page = _hook().render((DOCS / "reference" / "scenario-keys.md").read_text())
    for keys in SCENARIO_KEYS.values():
        for key in keys:
            assert f"| `{key}` |" in page, key


def _subcommands(parser):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise AssertionError("balloon-harness has no subcommands")


def test_every_command_and_option_has_help_and_a_docs_page():
    import argparse
    parser = make_parser()
    sub = _subcommands(parser)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, command in sub.choices.items():
        assert (helps.get(name) or "").strip(), f"command {name} has no help line"
        assert name in COMMAND_DOCS, f"command {name} has no docs page in COMMAND_DOCS (harness/cli/main.py)"
        assert (DOCS / COMMAND_DOCS[name]).is_file(), f"{name}: docs/{COMMAND_DOCS[name]} does not exist"
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = "/".join(action.option_strings) or action.dest
            assert (action.help or "").strip(), f"balloon-harness {name} {what} has no help"
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert (action.help or "").strip(), f"balloon-harness {action.option_strings} has no help"


@pytest.mark.parametrize("command", sorted(COMMAND_DOCS))
def test_help_ends_with_the_command_s_docs_page(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last == docs_line(command) and f"docs/{COMMAND_DOCS[command]}" in last


def test_the_cli_reference_lists_every_command_and_option():
    page = _hook().render((DOCS / "reference" / "cli.md").read_text())
    parser = make_parser()
    for name, command in _subcommands(parser).choices.items():
        assert f"## {name}" in page
        for action in command._actions:
            for option in [o for o in action.option_strings if o not in ("-h", "--help")]:
                assert f"`{option}`" in page, (name, option)


def test_every_docs_page_is_in_the_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(items):
        for item in items:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                for value in item.values():
                    yield from ([value] if isinstance(value, str) else pages(value))
    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "hooks" not in p.parts}
    assert on_disk - in_nav == set(), f"pages outside the navigation: {sorted(on_disk - in_nav)}"
    assert in_nav - on_disk == set(), f"navigation names missing pages: {sorted(in_nav - on_disk)}"
    for required in ("decisions.md", "decisions-over-time.md", "own-trees.md"):
        assert required in in_nav


def test_troubleshooting_names_every_error_class():
    import harness.errors as errors
    page = (DOCS / "troubleshooting.md").read_text()
    classes = [name for name, obj in vars(errors).items()
               if isinstance(obj, type) and issubclass(obj, errors.HarnessError) and obj is not errors.HarnessError
               and name not in ("VMError",)]          # VMError: the base of the boot errors the page lists
    missing = [name for name in classes if f"`{name}`" not in page]
    assert not missing, f"docs/troubleshooting.md says nothing of {missing}"


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move the detail into docs/"
    first_screen = "\n".join(lines[:40])
    assert "make reproduce" in first_screen and "make test" in first_screen
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert links, "the README links into the docs"
    broken = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not broken, f"README.md links to missing files: {broken}"
