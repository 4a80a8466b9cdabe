"""MkDocs hook: the reference pages are generated from the code when the site is built.

A page holds a marker line, ``<!-- generated: NAME -->``, and this hook replaces it with the
Markdown that :data:`GENERATORS` makes from the code's own definitions:

- ``columns``: every summary column, from ``harness.results.metrics.METRICS``;
- ``scenario-keys``: every scenario key, from ``harness.experiment.scenario.SCENARIO_KEYS``;
- ``cli``: every command and option, from the argparse parser (``harness.cli.main.make_parser``).

So the reference cannot drift from the code: a column, key or option added without a
description shows up here without one, and ``tests/test_docs_reference.py`` fails on it.
A MkDocs hook (``hooks:`` in mkdocs.yml, MkDocs >= 1.4) rather than a plugin package: it is one
file, and runs in the venv where the harness is installed.
"""

from __future__ import annotations

import argparse
import re
from typing import Callable

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _cell(text: str) -> str:
    """A Markdown table cell: no pipe or newline breaks the row, no <word> becomes an HTML tag."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def columns_markdown() -> str:
    """The summary columns as a Markdown table, from their one declaration each
    (``harness.results.metrics.METRICS``): unit, kind, meaning, the better direction, the
    effect floor and where the report's tables show the column (under which header)."""
    from harness.results.metrics import METRICS
    lines = ["| column | unit | kind | meaning | better | effect floor | tables |", "|---|---|---|---|---|---|---|"]
    for m in METRICS.values():
        better = (m.better or "-") + (" (headline)" if m.headline else "")
        shown = ([f"wide: {m.header}"] if m.wide else []) + ([f"narrow: {m.short}"] if m.narrow else [])
        kind = m.kind if m.unit else "-"
        lines.append(f"| `{m.name}` | {_cell(m.unit or '-')} | {kind} | {_cell(m.meaning)} | {better} | "
                     f"{f'{m.floor:g}' if m.has_floor else '-'} | {_cell('; '.join(shown)) or '-'} |")
    return "\n".join(lines)


SECTION_TITLES = {
    "": "Top level",
    "vm": "`[vm]`",
    "timing": "`[timing]`",
    "steps": "`[[steps]]`",
    "arms": "`[[arms]]`",
    "kernel": "`kernel = { ... }`: a Linux tree (top level or an arm)",
    "qemu": "`qemu = { ... }`: a QEMU tree (an arm)",
    "guest": "`[guest]`",
    "probes": "`[probes]`: guest counters and tracepoints per sample (docs/guest-probes.md)",
    "expect": "`[[expect]]`",
}


def scenario_keys_markdown() -> str:
    """Every scenario key by table, with its type, default and meaning."""
    from harness.experiment.scenario import SCENARIO_KEYS
    out = []
    for section, keys in SCENARIO_KEYS.items():
        out += [f"## {SECTION_TITLES.get(section, f'`{section}`')}", "",
                "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, (kind, default, meaning) in keys.items():
            out.append(f"| `{key}` | {_cell(kind)} | {_cell(default) or '-'} | {_cell(meaning)} |")
        out.append("")
    return "\n".join(out)


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    takes = ""
    if action.option_strings and action.nargs != 0:
        takes = f" `{action.metavar or action.dest.upper()}`"
    default = action.default
    shown = "-" if default in (None, False, argparse.SUPPRESS) else f"`{default}`"
    return f"| {names}{takes} | {_cell(action.help or '')} | {shown} |"


def commands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``balloon-harness``, by name."""
    from harness.cli.main import make_parser
    p = parser or make_parser()
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_help(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Each subcommand's one-line help (what ``balloon-harness --help`` lists)."""
    from harness.cli.main import make_parser
    p = parser or make_parser()
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def cli_markdown() -> str:
    """Every command: its help line, usage, description, options and docs page."""
    from harness.cli.main import COMMAND_DOCS, make_parser
    p = make_parser()
    lines = ["## Global options", "", "| option | meaning | default |", "|---|---|---|"]
    lines += [_option_row(a) for a in p._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction)]
    lines.append("")
    helps = command_help(p)
    for name, sub in commands(p).items():
        page = COMMAND_DOCS.get(name)
        lines += [f"## {name}", "", _cell(helps.get(name, "")), "",
                  "```text", sub.format_usage().strip(), "```", ""]
        if sub.description:
            lines += [_cell(sub.description), ""]
        rows = [_option_row(a) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        if rows:
            lines += ["| argument | meaning | default |", "|---|---|---|", *rows, ""]
        if page:
            lines += [f"Its page: [docs/{page}](../{page}).", ""]
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[], str]] = {
    "columns": columns_markdown,
    "scenario-keys": scenario_keys_markdown,
    "cli": cli_markdown,
}


def render(markdown: str) -> str:
    """The page with every marker replaced; an unknown marker is an error, not an empty page."""
    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated section {name!r} (known: {', '.join(GENERATORS)})")
        # in a div of its own (md_in_html) so the stylesheet keeps the names in one piece
        return f'<div class="bh-reference" markdown="1">\n\n{GENERATORS[name]()}\n\n</div>'
    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:   # MkDocs hook event
    return render(markdown)
