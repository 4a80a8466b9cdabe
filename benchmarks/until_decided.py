"""Print what ``--until-decided`` spends against a fixed number of repetitions (figures, not
assertions), on synthetic arms whose true difference the benchmark chooses.

    .venv/bin/python benchmarks/until_decided.py [--max-reps 10] [--trials 20]

For each effect size (the candidate's THP ratio against a baseline at 2.0, 5 % noise per
run, as the RFC's arms vary on this host), ``trials`` folders start at 3 repetitions and
grow through :func:`harness.analysis.adaptive.until_decided`; printed: the median runs spent
per arm, how often the comparison ended decided and with which verdict, against
``--max-reps`` runs per arm for a fixed plan. The runs are synthetic (tests/synthetic.py):
this measures the stopping rule, not the guests (a real run costs 19-40 s here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from synthetic import ArmSpec, _run_frames, make_results  # noqa: E402

from harness.analysis.adaptive import until_decided  # noqa: E402
from harness.results import ResultsStore  # noqa: E402

EFFECTS = (1.0, 1.6, 1.9, 1.97, 2.0)     # the candidate's ratio; the baseline's is 2.0


def trial(root: Path, ratio: float, seed: int, max_reps: int) -> tuple[int, str]:
    arms = {"baseline": ArmSpec(ratio=2.0), "candidate": ArmSpec(ratio=ratio)}
    out = make_results(root / f"r{ratio}-{seed}", arms=arms, reps=3, seed=seed, fast=True)
    rng = np.random.default_rng(seed + 1000)

    def run_more(more: dict[str, int]) -> None:
        store = ResultsStore(out)
        for arm, rep in more.items():
            samples, summary = _run_frames(f"{arm}-r{rep}", arm, rep, arms[arm], rng, "kvm")
            store.write_run(f"{arm}-r{rep}", samples, summary, {"run_id": f"{arm}-r{rep}", "arm": arm, "rep": rep})

    result = until_decided(out, run_more, max_reps=max_reps)
    (_, decision), = result.final
    return result.spent["candidate"], decision.verdict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-reps", type=int, default=10)
    p.add_argument("--trials", type=int, default=10)
    args = p.parse_args()
    print(f"until-decided against a fixed {args.max_reps} repetitions per arm "
          f"({args.trials} synthetic trials per effect, start 3 reps, baseline ratio 2.0, 5 % noise)")
    print(f"{'candidate ratio':>15}  {'runs/arm median':>15}  {'max':>4}  {'fixed':>5}  verdicts")
    with tempfile.TemporaryDirectory() as tmp:
        for ratio in EFFECTS:
            spent, verdicts = [], Counter()
            for seed in range(args.trials):
                n, verdict = trial(Path(tmp), ratio, seed, args.max_reps)
                spent.append(n)
                verdicts[verdict] += 1
            print(f"{ratio:>15.2f}  {statistics.median(spent):>15.0f}  {max(spent):>4}  {args.max_reps:>5}  "
                  + ", ".join(f"{v} {k}" for v, k in sorted(((k, v) for v, k in verdicts.items()), reverse=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
