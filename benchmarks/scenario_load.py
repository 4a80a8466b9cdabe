"""What loading a scenario costs: every shipped scenario through ``load_scenario``, and the
``--help`` of the command line (what a user waits for before anything else happens).

Prints (asserts nothing): the median of 20 loads per file, in milliseconds, and the median
of 5 ``balloon-harness --help`` processes. Run it in two checkouts to compare them:

    .venv/bin/python benchmarks/scenario_load.py [CHECKOUT]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.errors import ConfigError
from harness.experiment.scenario import load_scenario

# the checkout whose scenarios are loaded (default: this one; another: compare two checkouts)
ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]


def main() -> None:
    files = sorted((ROOT / "scenarios").glob("*.toml")) + sorted((ROOT / "ci").rglob("*.toml"))
    total = []
    for path in files:
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            try:
                load_scenario(path)
            except ConfigError:
                pass
            times.append(time.perf_counter() - t0)
        total.append(statistics.median(times))
        print(f"{path.relative_to(ROOT)}: {statistics.median(times) * 1000:.2f} ms")
    print(f"all {len(files)} files: {sum(total) * 1000:.1f} ms (sum of medians)")
    helps = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", "--help"], check=True, capture_output=True)
        helps.append(time.perf_counter() - t0)
    print(f"balloon-harness --help: {statistics.median(helps) * 1000:.0f} ms (median of 5)")


if __name__ == "__main__":
    main()
