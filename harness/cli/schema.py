"""``schema``: the JSON Schema of a scenario file, for editors that complete and check TOML.

Generated from the models every scenario is loaded with (harness.results.scenario_schema),
so it states the same keys, types, defaults and bounds as the loader. An editor with a TOML
language server (taplo: VS Code's Even Better TOML, Helix, Neovim) uses it with a first line

    #:schema ./scenario.schema.json

in the scenario file, or for every file under scenarios/ through its settings
(docs/scenarios.md: "Editor support"). What only the running machine can check (which
stacks, designs and paths exist) stays with `run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_schema(args: argparse.Namespace) -> int:
    from harness.artifacts.stacks import STACKS
    from harness.results.scenario_schema import json_schema

    text = json.dumps(json_schema(stacks=list(STACKS)), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    s = sub.add_parser("schema", help="print the JSON Schema of scenario files (for editors)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--out", type=Path, metavar="FILE", help="write it to FILE instead of standard output")
    s.set_defaults(func=_cmd_schema)
