"""A/A rates of the decision core's families (figures, not assertions).

    .venv/bin/python benchmarks/decide_family_aa.py [--trials 2000] [--arms 5] [--reps 5]

Equal arms (no true difference) drawn in memory and decided through the harness's own
code (``compare``'s ``compare_tested`` + ``decide_family`` on summary frames, ``check``'s
``evaluate_all``), so the numbers are those of the real decision paths without writing
results folders:

- compare: the share of comparisons (``--arms`` arms x ``--reps`` runs, every headline
  figure) with at least one better/worse verdict, for the primary figures (Holm, the new
  rule) and, for reference, for every figure decided alone at alpha (the old rule);
- check: the share of scenarios whose relative expectations (one per primary figure and
  arm, op ``<=``) exit 1 (a FAIL) when the arms are equal.

Each rate is printed with its 95 % Clopper-Pearson interval beside the nominal alpha.
The full A/A and power calibration of every path (history, --until-decided) is
``benchmarks/calibration.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from harness.analysis.compare import compare_tested, decide_family  # noqa: E402
from harness.analysis.decide import BETTER, WORSE, decide  # noqa: E402
from harness.analysis.expectations import Expectation  # noqa: E402
from harness.analysis.groups import HEADLINE_METRICS  # noqa: E402
from harness.analysis.verdicts import FAIL, evaluate_all  # noqa: E402
from harness.results.metrics import DEFAULT_PRIMARY  # noqa: E402

STEP = "balloon 624"
PRIMARY = ["reached_fraction" if m == "reached" else m for m in DEFAULT_PRIMARY]


def summary(rng: np.random.Generator, arms: list[str], reps: int) -> pd.DataFrame:
    """One step's rows: every arm drawn from the same distributions (A/A)."""
    rows = []
    for arm in arms:
        for rep in range(1, reps + 1):
            row = {"run_id": f"{arm}-r{rep}", "arm": arm, "rep": rep, "step": STEP, "kind": "balloon",
                   "reached": bool(rng.random() < 0.9)}
            for m in HEADLINE_METRICS:
                if m != "reached_fraction":
                    row[m] = float(rng.normal(100.0, 10.0))   # floors are far below this spread
            row["thp_split_pmd_delta"] = float(rng.poisson(3))
            rows.append(row)
    return pd.DataFrame(rows)


def interval(k: int, n: int) -> str:
    from scipy.stats import binomtest
    ci = binomtest(k, n).proportion_ci(0.95)
    return f"{k / n:6.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--arms", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    arms = [f"arm{i}" for i in range(args.arms)]
    hits_new = hits_old = fails = 0
    t0 = time.monotonic()
    for _ in range(args.trials):
        a, b = summary(rng, arms, args.reps), summary(rng, arms, args.reps)
        tested = [t for arm in arms for t in compare_tested(a, arm, b, arm, [STEP], HEADLINE_METRICS, 0.05)]
        rows = decide_family(tested, PRIMARY)
        hits_new += any(r["verdict"] in (BETTER, WORSE) for r in rows)
        hits_old += any(decide(t.decision.metric, *_values(a, b, t), 0.05).verdict in (BETTER, WORSE)
                        for t in tested)
        exps = [Expectation(arm, STEP, m, "<=", than=arms[0]) for arm in arms[1:] for m in PRIMARY]
        fails += any(v.status == FAIL for v in evaluate_all(exps, a))
    n = args.trials
    print(f"{n} A/A trials, {args.arms} arms x {args.reps} runs, alpha 0.05 ({time.monotonic() - t0:.0f} s)")
    print(f"compare, primary figures, Holm:      {interval(hits_new, n)}  (nominal <= 0.05)")
    print(f"compare, every figure alone (old):   {interval(hits_old, n)}  (no control)")
    print(f"check, {len(exps)} expectations '<=', Holm: {interval(fails, n)}  (nominal <= 0.05)")
    return 0


def _values(a: pd.DataFrame, b: pd.DataFrame, t) -> tuple[np.ndarray, np.ndarray]:
    from harness.analysis.groups import run_values
    return (run_values(a[(a["arm"] == t.arm_a) & (a["step"] == t.step)], t.decision.metric),
            run_values(b[(b["arm"] == t.arm_b) & (b["step"] == t.step)], t.decision.metric))


if __name__ == "__main__":
    sys.exit(main())
