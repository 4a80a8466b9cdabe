"""How often the harness's decisions cry wolf, and how often they see a real effect:
A/A and power on synthetic arms, through the harness's own compare, check, check
--against-history and --until-decided code (figures printed, not asserted).

    .venv/bin/python benchmarks/calibration.py [--trials 2000] [--reps 5] [--quick]

Each trial draws fresh synthetic runs (tests/synthetic.py: each run's figures through the
runner's own ``summary_row``, 5 % run-to-run noise, as the RFC's arms vary on this host) and
asks the real code for its decision:

* compare A/A: two equal arms, ``--reps`` runs each; a false alarm is any primary figure
  called better or worse (family-wise; primary: the rows compare marks primary when it
  does, else the headline three: THP lost per returned MiB, reached, returned fraction);
* check A/A: the same folders with ``[[expect]]`` "b no worse than a" on the primary
  figures; a false alarm is exit code 1;
* check --against-history: 14 past nights and tonight, each night's level drawn with a
  night-to-night spread equal to the within-night spread (5 %); a false alarm is exit 1
  (any figure of any arm worse), and per figure a "worse" for the THP ratio (nominal 2.5 %:
  the worse half of a two-sided 5 %);
* --until-decided from 3 runs per arm to --max-reps 10 and 20 (2 arms: one question; and 3
  arms at 10: two questions, family-wise); a false alarm is any question decided better or
  worse.

Power: the same with arm b (or tonight) worse by 20 % and 50 % in its THP ratio (the
figure the RFC is about) at the default repetitions.

The folders hold the balloon step only (the figures decided on) and are held in memory:
``open_folder`` and the history reader are pointed at them (a trial on disk costs 0.1-1 s
in Parquet, far too slow for 2000 trials x 8 cases);
everything from the summary rows on is the harness's own code. Rates are printed with
their 95 % Clopper-Pearson interval beside the nominal rate; "ok" when the interval's upper
bound is at most 1.2 x nominal (issue 26's bar).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from synthetic import BALLOON_STEP, ArmSpec, metadata, run_rows, scenario_text  # noqa: E402

from harness.analysis import adaptive, check, compare, history  # noqa: E402
from harness.analysis.defaults import DEFAULT_ALPHA, DEFAULT_LAST  # noqa: E402
from harness.results import folder as folder_module  # noqa: E402
from harness.results.folder import ResultsFolder, scenario_info  # noqa: E402
from harness.results.metrics import SUMMARY_COLUMNS  # noqa: E402

RATIO = "thp_lost_per_ballooned_mib"
PRIMARY = ("thp_lost_per_returned_mib", "reached_fraction", "returned_fraction")
NOISE = 0.05
BASE = 2.0
DECIDED = ("better", "worse", "higher", "lower")

# --- folders in memory --------------------------------------------------------------------

FOLDERS: dict[str, ResultsFolder] = {}
HISTORIES: dict[str, pd.DataFrame] = {}


def _open(path: Any) -> ResultsFolder:
    return FOLDERS[str(path)]


def _load_history(history_dir: Any, scenario: Any = None, columns: Any = None) -> pd.DataFrame:
    return HISTORIES[str(history_dir)]


def point_readers_at_memory() -> None:
    """open_folder (in every analysis module that imported it) and the history reader."""
    for mod in (folder_module, adaptive, check, compare, history):
        if hasattr(mod, "open_folder"):
            mod.open_folder = _open                       # type: ignore[attr-defined]
    history.load_history = _load_history                  # type: ignore[assignment]
    if hasattr(check, "compare_history"):                 # keep what check decided from, to read one figure
        real = check.compare_history

        def recorded(*a: Any, **kw: Any) -> Any:
            SEEN.append(real(*a, **kw))
            return SEEN[-1]
        check.compare_history = recorded                  # type: ignore[assignment]
    history.check_history_dir = lambda h, create=False: True   # type: ignore[assignment]


def rows_of(arms: dict[str, ArmSpec], reps: range, rng: np.random.Generator) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rep in reps:
        for arm, spec in arms.items():
            out.append(run_rows(f"{arm}-r{rep}", arm, rep, spec, rng, "kvm")[0][1])   # the balloon step
    return out


def frame(rows: list[dict[str, Any]], columns: Any = SUMMARY_COLUMNS) -> pd.DataFrame:
    """Rows as a summary frame (column by column: several times faster than from dicts)."""
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows[:1] for k in r))
    return pd.DataFrame({c: [r.get(c) for r in rows] for c in cols})


def make_folder(path: str, arms: dict[str, ArmSpec], reps: int, rng: np.random.Generator,
                expect: list[dict[str, Any]] = (), created: str = "2024-05-01T02:00:00+0000") -> ResultsFolder:
    text = scenario_text("cal", arms, reps, list(expect))
    meta = metadata("cal", text, created=created)
    summary = frame(rows_of(arms, range(1, reps + 1), rng))
    runs = [{"run_id": r, "arm": r.rsplit("-r", 1)[0], "rep": int(r.rsplit("-r", 1)[1]), "run_uid": f"{path}/{r}"}
            for r in dict.fromkeys(summary["run_id"])]
    f = ResultsFolder(Path(path), summary, meta, runs, scenario_info(Path("/nonexistent"), meta))
    FOLDERS[path] = f
    return f


def grow(path: str, arms: dict[str, ArmSpec], rng: np.random.Generator) -> Callable[[dict[str, int]], None]:
    """run_more for until_decided: the asked repetitions appended to the in-memory folder."""
    def run_more(more: dict[str, int]) -> None:
        f = FOLDERS[path]
        new: list[dict[str, Any]] = []
        for arm, rep in more.items():
            new.append(run_rows(f"{arm}-r{rep}", arm, rep, arms[arm], rng, "kvm")[0][1])
        f.summary = pd.concat([f.summary, frame(new)], ignore_index=True)
        f.runs = f.runs + [{"run_id": f"{a}-r{r}", "arm": a, "rep": r} for a, r in more.items()]
    return run_more


# --- the cases: each returns 1 when the trial's decision is an alarm ------------------------

def arms_ab(effect: float) -> dict[str, ArmSpec]:
    return {"a": ArmSpec(ratio=BASE, noise=NOISE), "b": ArmSpec(ratio=BASE * (1 + effect), noise=NOISE)}


def primary_rows(c: Any) -> pd.DataFrame:
    rows = c.rows
    if "primary" in rows.columns:
        return rows[rows["primary"].astype(bool)]
    return rows[rows["metric"].isin(PRIMARY)]


def trial_compare(i: int, reps: int, effect: float) -> tuple[int]:
    rng = np.random.default_rng(10_000 + i)
    f = make_folder(f"/mem/compare-{i}", arms_ab(effect), reps, rng)
    try:
        c = compare.compare(compare.Side(f, "a"), compare.Side(f, "b"), metrics=list(PRIMARY))
    except TypeError:        # a compare that chooses its figures itself
        c = compare.compare(compare.Side(f, "a"), compare.Side(f, "b"))
    rows = primary_rows(c)
    rows = rows[rows["step"] == BALLOON_STEP]
    if effect:       # power: the ratio's primary figure called worse (b loses more per MiB)
        return (int(((rows["metric"] == "thp_lost_per_returned_mib") & (rows["verdict"] == "worse")).any()),)
    return (int(rows["verdict"].isin(DECIDED).any()),)


NO_WORSE = [{"arm": "b", "step": BALLOON_STEP, "metric": "thp_lost_per_returned_mib", "op": "<=", "than": "a"},
            {"arm": "b", "step": BALLOON_STEP, "metric": "returned_fraction", "op": ">=", "than": "a"},
            {"arm": "b", "step": BALLOON_STEP, "metric": "reached_fraction", "op": ">=", "than": "a"}]


def trial_check(i: int, reps: int, effect: float) -> tuple[int]:
    rng = np.random.default_rng(20_000 + i)
    make_folder(f"/mem/check-{i}", arms_ab(effect), reps, rng, expect=NO_WORSE)
    return (int(check.check_results(f"/mem/check-{i}", stream=io.StringIO()) == 1),)


def _night(rng: np.random.Generator, effect: float = 0.0) -> dict[str, ArmSpec]:
    level = 1 + NOISE * rng.standard_normal()          # night-to-night spread = within-night spread
    return {"a": ArmSpec(ratio=BASE * level * (1 + effect), noise=NOISE),
            "b": ArmSpec(ratio=1.1 * level * (1 + effect), noise=NOISE)}


def history_frame(i: int, rng: np.random.Generator, reps: int) -> pd.DataFrame:
    rows = []
    for k in range(DEFAULT_LAST):
        day = f"2024-04-{k + 1:02d}"
        for r in rows_of(_night(rng), range(1, reps + 1), rng):
            rows.append({**r, "folder": f"night-{k}", "created": f"{day}T02:00:00+0000", "date": day,
                         "run_uid": f"night-{k}/{r['run_id']}", "scenario": "cal", "host": "testhost"})
    return frame(rows, None)


SEEN: list[Any] = []     # the HistoryCheck each check_results made (see point_readers_at_memory)


def trial_history(i: int, reps: int, effect: float) -> tuple[int, int]:
    """(check --against-history exits 1, arm a's THP ratio called worse)."""
    rng = np.random.default_rng(30_000 + i)
    h = f"/mem/history-{i}"
    HISTORIES[h] = history_frame(i, rng, reps)
    make_folder(f"/mem/tonight-{i}", _night(rng, effect), reps, rng, created="2024-04-30T02:00:00+0000")
    SEEN.clear()
    code = check.check_results(f"/mem/tonight-{i}", against_history=h, stream=io.StringIO())
    rows = (SEEN[-1] if SEEN else history.against_history(f"/mem/tonight-{i}", h)).rows
    rows = rows[(rows["metric"] == RATIO) & (rows["step"] == BALLOON_STEP) & (rows["arm"] == "a")]
    return int(code == 1), int((rows["verdict"] == "worse").any())


def trial_until(i: int, reps: int, effect: float, max_reps: int = 10, n_arms: int = 2) -> tuple[int]:
    rng = np.random.default_rng(40_000 + 97 * max_reps + 7 * n_arms + i * 1000)
    arms = arms_ab(effect)
    if n_arms == 3:
        arms["c"] = ArmSpec(ratio=BASE, noise=NOISE)
    path = f"/mem/until-{i}"
    make_folder(path, arms, 3, rng)
    result = adaptive.until_decided(Path(path), grow(path, arms, rng), max_reps=max_reps, reader=_open)
    verdicts = [d.verdict for _, d in result.final]
    if effect:
        return (int(any(q.arm == "b" and d.verdict == "worse" for q, d in result.final)),)
    return (int(any(v in DECIDED for v in verdicts)),)


# --- running and printing -------------------------------------------------------------------

def _run(job: tuple[str, int, int, dict[str, Any]]) -> tuple[int, ...]:
    name, i, reps, kw = job
    fn = {"compare": trial_compare, "check": trial_check, "history": trial_history, "until": trial_until}[name]
    out = fn(i, reps, **kw)
    FOLDERS.clear()
    HISTORIES.clear()
    return out


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def measure(pool: Any, name: str, trials: int, reps: int, **kw: Any) -> list[int]:
    """Alarms per outcome of the case's trials (summed over ``trials``)."""
    jobs = [(name, i, reps, kw) for i in range(trials)]
    totals: list[int] = []
    for out in pool.imap_unordered(_run, jobs, chunksize=max(1, trials // 40)):
        totals = [a + b for a, b in zip(totals, out)] if totals else list(out)
    return totals


def line(label: str, k: int, n: int, nominal: float | None, seconds: float) -> str:
    lo, hi = clopper_pearson(k, n)
    rate = k / n
    if nominal is None:
        return f"{label:<58} {rate:7.3f}  [{lo:.3f}, {hi:.3f}]  {'':>8}  {'':<4}  {seconds:5.1f}s"
    # ok: at or under the bar; HIGH: surely over the nominal rate; wide: too few trials to tell
    verdict = "ok" if hi <= 1.2 * nominal else ("HIGH" if lo > nominal else "wide")
    return f"{label:<58} {rate:7.3f}  [{lo:.3f}, {hi:.3f}]  {nominal:8.3f}  {verdict:<4}  {seconds:5.1f}s"


def revision() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=2000, help="trials per false-alarm case (default 2000)")
    p.add_argument("--power-trials", type=int, default=0, help="trials per power case (default: trials / 4)")
    p.add_argument("--reps", type=int, default=5, help="runs per arm for compare, check and history (default 5)")
    p.add_argument("--until-trials", type=int, default=0,
                   help="trials per --until-decided A/A case (default: --trials): its rate sits near alpha "
                        "by design (the boundary spends it), so telling 4.5 %% from 6 %% takes more trials")
    p.add_argument("--quick", action="store_true", help="200 trials, 50 per power case (CI)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    trials = 200 if args.quick else args.trials
    until_trials = trials if args.quick else (args.until_trials or trials)
    power_trials = 50 if args.quick else (args.power_trials or max(50, trials // 10))
    alpha = DEFAULT_ALPHA
    t0 = time.monotonic()
    print(f"calibration: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, harness {revision()}, "
          f"{trials} trials per A/A case ({until_trials} for until-decided), {power_trials} per power case, "
          f"{args.reps} runs per arm "
          f"(until-decided: from 3), {NOISE:.0%} run-to-run noise, alpha {alpha:g}")
    print(f"{'case':<58} {'rate':>7}  {'95% CI':<14}  {'nominal':>8}  {'':<4}  {'time':>6}")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.workers, initializer=point_readers_at_memory) as pool:
        # (what is measured, trial kind, trials, {outcome index: (label, nominal)}, arguments)
        cases: list[tuple[str, int, dict[int, tuple[str, float | None]], dict[str, Any]]] = [
            ("compare", trials, {0: ("A/A compare: any primary figure better/worse", alpha)}, {"effect": 0.0}),
            ("check", trials, {0: ("A/A check (b no worse than a): exit 1", alpha)}, {"effect": 0.0}),
            ("history", trials, {0: ("A/A check --against-history, nights vary: exit 1", alpha),
                                 1: ("A/A against history, one figure (THP ratio): worse", alpha / 2)},
             {"effect": 0.0}),
            ("until", until_trials, {0: ("A/A --until-decided, max-reps 10: better/worse", alpha)},
             {"effect": 0.0, "max_reps": 10}),
            ("until", until_trials, {0: ("A/A --until-decided, max-reps 20: better/worse", alpha)},
             {"effect": 0.0, "max_reps": 20}),
            ("until", trials, {0: ("A/A --until-decided, 3 arms, max-reps 10: any", alpha)},
             {"effect": 0.0, "max_reps": 10, "n_arms": 3}),
        ]
        for effect in (0.2, 0.5):
            pct = f"{effect:.0%}"
            cases += [
                ("compare", power_trials, {0: (f"power compare, b's THP ratio {pct} worse: worse", None)},
                 {"effect": effect}),
                ("check", power_trials, {0: (f"power check, b {pct} worse: exit 1", None)}, {"effect": effect}),
                ("history", power_trials, {1: (f"power against history, tonight {pct} worse: worse", None)},
                 {"effect": effect}),
                ("until", power_trials, {0: (f"power --until-decided max 10, b {pct} worse: worse", None)},
                 {"effect": effect, "max_reps": 10}),
            ]
        for name, n, outcomes, kw in cases:
            t = time.monotonic()
            totals = measure(pool, name, n, args.reps, **kw)
            for k, (label, nominal) in outcomes.items():
                print(line(label, totals[k], n, nominal, time.monotonic() - t), flush=True)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"total {time.monotonic() - t0:.0f}s (load average {load}); ok: the interval's upper bound is at most "
          f"1.2 x nominal; HIGH: its lower bound is above nominal; wide: too few trials to tell")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
