"""The runner's bookkeeping without a VM: plan and shards, --resume, failures that stay the
run's own, balloon outcomes with a fake QMP, results on a full filesystem."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import paramiko
import pytest
from qemu.qmp import ExecuteError
from qemu.qmp.message import Message
from qemu.qmp.models import ErrorResponse
from toml_text import arm, step, stock_arms

from harness.errors import ConfigError, GuestDied, ResultsWriteError
from harness.experiment import plan as plans
from harness.experiment import runner
from harness.experiment.plan import Machine, Plan, PlannedRun, Shard, order_seed, plan
from harness.experiment.runner import run_plan
from harness.experiment.scenario import load_scenario, with_order, with_repetitions
from harness.results import ResultsStore, load_results, metrics
from harness.vm.balloon import EXACT_TOLERANCE_MIB, THP_ORDER_TOLERANCE_MIB, Balloon

# Their fake QMPs have no events: the moves skip the wait for QEMU's held-back last one.
pytestmark = pytest.mark.usefixtures("no_event_wait")

# order "fixed": the bookkeeping tests below name runs in the order they start
SCENARIO = 'name = "units"\nrepetitions = 3\norder = "fixed"\n' + step("balloon", target_mib=600) + stock_arms("a", "b")


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "units.toml"
    path.write_text(SCENARIO)
    return load_scenario(path)


def test_plan_is_repetition_major(scenario):
    fixed = with_order(scenario, "fixed")
    assert [r.run_id for r in plan(fixed).runs] == ["a-r1", "b-r1", "a-r2", "b-r2", "a-r3", "b-r3"]
    runs = plan(with_order(scenario, "random")).runs              # shuffled: still one round after another
    assert [r.rep for r in runs] == [1, 1, 2, 2, 3, 3]
    assert [r.position for r in runs] == list(range(1, 7)) and [r.slot for r in runs] == [1, 2] * 3


def _three_arms(tmp_path, extra=""):
    path = tmp_path / "three.toml"
    path.write_text(extra + SCENARIO.replace("repetitions = 3", "repetitions = 60").replace('order = "fixed"', "")
                    + arm("c"))
    return load_scenario(path)


def _orders(scenario):
    rounds: dict[int, list[str]] = {}
    for r in plan(scenario).runs:
        rounds.setdefault(r.rep, []).append(r.arm.name)
    return list(rounds.values())


def test_random_order_shuffles_each_round_from_a_recorded_seed(tmp_path):
    s = _three_arms(tmp_path)
    orders = _orders(s)
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)
    firsts = {a: sum(o[0] == a for o in orders) for a in "abc"}
    assert all(8 <= n <= 35 for n in firsts.values()), firsts       # each arm leads about a third of 60 rounds
    assert len({tuple(o) for o in orders}) == 6                     # every order occurs
    assert _orders(s) == orders                                     # deterministic
    assert _orders(with_order(s, seed=order_seed(s) + 1)) != orders
    # round k's order does not depend on how many rounds there are (--until-decided adds rounds)
    assert _orders(with_repetitions(s, 5)) == orders[:5]


def test_the_scenario_chooses_the_order_and_its_seed(tmp_path):
    s = _three_arms(tmp_path, 'order = "balanced"\norder_seed = 7\n')
    assert s.order == "balanced" and s.order_seed == 7 and order_seed(s) == 7
    orders = _orders(s)
    for slot in range(3):                                           # every arm in every place equally often
        assert {a: sum(o[slot] == a for o in orders) for a in "abc"} == {"a": 20, "b": 20, "c": 20}
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.replace('order = "fixed"', 'order = "alphabetical"'))
    with pytest.raises(ConfigError, match="order"):
        load_scenario(bad)


def test_every_shard_computes_the_same_plan_in_another_process(tmp_path):
    """Shards run as separate processes (other hosts): the seed comes from the scenario file,
    not from this process (string hashing is randomised per process)."""
    s = _three_arms(tmp_path)
    code = ("import sys; from harness.experiment.plan import Shard, plan; "
            "from harness.experiment.scenario import load_scenario; "
            "print(' '.join(r.run_id for r in plan(load_scenario(sys.argv[1]), Shard(2, 3)).runs))")
    out = subprocess.run([sys.executable, "-c", code, str(s.path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.split()
    assert out == [r.run_id for r in plan(s, Shard(2, 3)).runs]
    whole = plan(s).runs
    assert sorted(sum(([r.run_id for r in plan(s, Shard(k, 3)).runs] for k in (1, 2, 3)), [])) == \
        sorted(r.run_id for r in whole)


def test_resume_keeps_the_order_the_folder_was_started_with(tmp_path, scenario):
    from harness.cli.runs import RunRequest, _order
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.json").write_text(json.dumps({"arm_order": {"order": "balanced", "seed": 99}}))
    assert _order(RunRequest(scenario.path, out=out, resume=True), out) == ("balanced", 99)
    assert _order(RunRequest(scenario.path, out=out, resume=True, order_seed=5), out) == ("balanced", 5)
    assert _order(RunRequest(scenario.path, out=out), out) == (None, None)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_shards_partition_the_plan(scenario, n):
    whole = [r.run_id for r in plan(scenario).runs]
    parts = [[r.run_id for r in plan(scenario, Shard(k, n)).runs] for k in range(1, n + 1)]
    assert sorted(sum(parts, [])) == sorted(whole)
    assert len(set(sum(parts, []))) == len(whole)
    assert parts == [[r.run_id for r in plan(scenario, Shard(k, n)).runs] for k in range(1, n + 1)]  # deterministic


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "x", "", "1-2"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ConfigError):
        Shard.parse(text)


def _fake_run(fail: dict[str, BaseException]):
    """An execute_run that writes a minimal finished run, or raises what ``fail`` names."""

    def execute(scenario, run, index, store, progress):
        if run.run_id in fail:
            raise fail[run.run_id]
        row = metrics.summary_row({"run_id": run.run_id, "arm": run.arm.name, "rep": run.rep, "step": "s"},
                                  "balloon", 600, {}, {}, "tcg", 1.0)
        store.write_run(run.run_id, pd.DataFrame(columns=metrics.SAMPLE_COLUMNS),
                        pd.DataFrame([row], columns=metrics.SUMMARY_COLUMNS),
                        {"run_id": run.run_id, "accel": "tcg"})
        return {}

    return execute


@dataclasses.dataclass(frozen=True)
class _Spec:
    accel: str = "tcg"
    qemu: Path = Path("/none")
    kernel: Path = Path("/none")
    firmware_dirs: tuple = ()


@pytest.fixture
def no_vm(monkeypatch):
    """Plans prepare without artifacts: every run gets a machine that boots nothing (the
    tests replace execute_run), so the runner's bookkeeping runs as in a real command."""
    machine = Machine(_Spec(), None)  # type: ignore[arg-type]

    def prepared(self, artifacts):
        return dataclasses.replace(self, runs=tuple(dataclasses.replace(r, machine=machine) for r in self.runs))

    monkeypatch.setattr(plans.Plan, "prepared", prepared)


def run_scenario(scenario, store, jobs=1, resume=False):
    """What `run` does with the plan (no_vm: prepared without a build)."""
    planned = plan(scenario, complete=store.is_complete if resume else None)
    return run_plan(planned.prepared(None), store, jobs=jobs)


def _library_errors() -> dict[str, BaseException]:
    sent = Message({"execute": "balloon"})
    received = Message({"error": {"class": "GenericError", "desc": "no balloon"}})
    key = paramiko.ECDSAKey.generate(bits=256)
    return {
        "a-r1": TimeoutError("SSH to 127.0.0.1:2222 not answering"),
        "b-r1": ExecuteError(ErrorResponse(received), sent, received),
        "a-r2": paramiko.BadHostKeyException("[127.0.0.1]:2222", key, paramiko.ECDSAKey.generate(bits=256)),
    }


def test_library_exceptions_fail_their_run_only(scenario, tmp_path, no_vm, monkeypatch):
    errors = _library_errors()
    monkeypatch.setattr(runner, "execute_run", _fake_run(errors))
    store = ResultsStore(tmp_path / "out")
    failed = run_scenario(scenario, store)
    assert sorted(failed) == sorted(errors)
    for run_id, error in errors.items():
        text = (store.run_dir(run_id) / "error.txt").read_text()
        assert type(error).__name__ in text
    res = load_results(tmp_path / "out")
    assert sorted(r["run_id"] for r in res.runs) == ["a-r3", "b-r2", "b-r3"]


def test_ctrl_c_stops_the_scenario(scenario, tmp_path, no_vm, monkeypatch):
    monkeypatch.setattr(runner, "execute_run", _fake_run({"b-r1": KeyboardInterrupt()}))
    store = ResultsStore(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, store)
    assert [r["run_id"] for r in load_results(tmp_path / "out").runs] == ["a-r1"]


def test_ctrl_c_with_jobs_stops_the_running_guests_and_starts_no_more(scenario, tmp_path, no_vm, monkeypatch):
    """--jobs 2: SIGINT reaches the main thread while two runs are going; the guests of the
    running workers are stopped (stop_all_live), their runs end, nothing more starts, and the
    finished run stays."""
    import signal
    import threading

    from harness.vm import machine
    ok = _fake_run({})
    started: list[str] = []
    both_running = threading.Barrier(2, timeout=60)
    guest_stopped = threading.Event()

    class LiveGuest:   # what a running worker's Machine is to stop_all_live
        def shutdown(self):
            guest_stopped.set()

    def execute(scenario, run, index, *args, **kw):
        started.append(run.run_id)
        if run.run_id == "a-r1":
            return ok(scenario, run, index, *args, **kw)
        both_running.wait()                       # b-r1 and a-r2 are both in their "guests"
        if run.run_id == "b-r1":
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        assert guest_stopped.wait(60), "the guests were never stopped"
        raise GuestDied("QEMU was stopped")

    live = LiveGuest()
    monkeypatch.setattr(machine, "_live", {live})
    monkeypatch.setattr(runner, "execute_run", execute)
    # Python's own SIGINT handler: a job started in the background (CI's `.ci/run &`) inherits
    # SIGINT ignored, and then no KeyboardInterrupt would ever come
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_with_jobs(scenario, tmp_path, started, guest_stopped)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_with_jobs(scenario, tmp_path, started, guest_stopped) -> None:
    store = ResultsStore(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, store, jobs=2)
    assert guest_stopped.is_set()
    deadline = time.monotonic() + 60
    while len([d for d in store.runs_dir.iterdir() if (d / "error.txt").exists()]) < 2:
        assert time.monotonic() < deadline, "the interrupted runs did not end"
        time.sleep(0.05)
    assert sorted(started) == ["a-r1", "a-r2", "b-r1"], "no run starts after Ctrl-C"
    assert [r["run_id"] for r in load_results(tmp_path / "out").runs] == ["a-r1"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_write_error_mid_scenario_stops_it_keeping_finished_runs(scenario, tiny_tmpfs, no_vm,
                                                                        monkeypatch, jobs):
    """The disk fills after the first run: the next run's write fails; that is no run's failure
    but the scenario's end (ResultsWriteError): the first run stays, the plan is not run to its
    end, and no half-written file carries a final name."""
    ok = _fake_run({})
    started: list[str] = []
    ended: list[str] = []

    def execute(scenario, run, index, *args, **kw):
        started.append(run.run_id)
        try:
            if run.run_id != "a-r1":
                deadline = time.monotonic() + 60
                while not store.is_complete("a-r1"):     # with --jobs 2, the disk fills after a-r1 is written
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                try:
                    with open(tiny_tmpfs / "filler", "xb") as f:   # once ("x"): a truncation would free it
                        f.write(b"\0" * (256 * 1024))
                except OSError:
                    pass   # full, as wanted (or filled already)
                time.sleep(0.3)   # a run takes time: the scenario has stopped before the next could start
            return ok(scenario, run, index, *args, **kw)
        finally:
            ended.append(run.run_id)

    monkeypatch.setattr(runner, "execute_run", execute)
    store = ResultsStore(tiny_tmpfs / "out")
    with pytest.raises(ResultsWriteError, match="No space left"):
        run_scenario(scenario, store, jobs=jobs)
    deadline = time.monotonic() + 60
    while len(ended) < len(started):   # with --jobs, a worker's run in progress ends on its own
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(started) < len(plan(scenario).runs), "the scenario went on after its results could not be written"
    if jobs == 1:
        assert started == ["a-r1", "b-r1"]
    assert not any((store.run_dir(r) / "error.txt").exists() for r in started), "it is not a run's failure"
    for r in started[1:]:
        assert not store.is_complete(r)
        for f in store.run_dir(r).glob("*.parquet"):   # a file under its final name is whole (written, renamed)
            pd.read_parquet(f)
    (tiny_tmpfs / "filler").unlink()
    assert [r["run_id"] for r in load_results(tiny_tmpfs / "out").runs] == ["a-r1"]


def test_resume_skips_finished_runs(scenario, tmp_path, no_vm, monkeypatch, caplog):
    caplog.set_level("INFO", logger="harness.run")
    monkeypatch.setattr(runner, "execute_run", _fake_run({"a-r2": RuntimeError("boom")}))
    store = ResultsStore(tmp_path / "out")
    assert run_scenario(scenario, store) == ["a-r2"]
    seen: list[str] = []
    ok = _fake_run({})

    def record(scenario, run, *args, **kw):
        seen.append(run.run_id)
        return ok(scenario, run, *args, **kw)

    monkeypatch.setattr(runner, "execute_run", record)
    assert run_scenario(scenario, store, resume=True) == []
    assert seen == ["a-r2"]
    assert any("skipping 5 finished run(s)" in r.getMessage() for r in caplog.records)


def test_a_command_plans_once_and_runs_exactly_that_plan(tmp_path, no_vm, monkeypatch, capsys):
    """`run`, `run --resume` and `run --shard`: plan() is called once per command (counted on
    the real function), and the runs booted are that plan's runs to do, in its order."""
    from harness.artifacts import build as artifacts
    from harness.cli import main
    from harness.experiment import metadata
    path = tmp_path / "units.toml"
    path.write_text(SCENARIO)
    monkeypatch.setattr(artifacts, "build_all", lambda *a, **k: None)
    monkeypatch.setattr(metadata, "collect", lambda scenario, arts: {"scenario": {"name": scenario.name}})
    import harness.analysis.report
    monkeypatch.setattr(harness.analysis.report, "plot_all", lambda *a, **k: [])
    calls: list[Plan] = []
    real_plan = plans.plan

    def counted(*args, **kwargs):
        calls.append(real_plan(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(plans, "plan", counted)
    booted: list[str] = []
    ok = _fake_run({"b-r2": RuntimeError("boom")})

    def execute(scenario, run, *args):
        booted.append(run.run_id)
        return ok(scenario, run, *args)

    monkeypatch.setattr(runner, "execute_run", execute)
    out = tmp_path / "out"
    for argv, runs in ((["--shard", "2/2"], 3), (["--resume"], 6), (["--resume"], 6)):
        calls.clear()
        booted.clear()
        main(["run", str(path), "--out", str(out), *argv])
        assert len(calls) == 1, f"run {' '.join(argv)}: plan() called {len(calls)} times"
        assert booted == [r.run_id for r in calls[0].todo] and len(calls[0].runs) == runs
        assert f"({runs} run(s)" in capsys.readouterr().err
    assert booted == ["b-r2"]    # the last --resume: only the run that failed before


def test_cli_names_failed_runs_and_exits_nonzero(tmp_path, no_vm, monkeypatch, capsys):
    from harness.artifacts import build as artifacts
    from harness.cli import main
    from harness.experiment import metadata
    path = tmp_path / "units.toml"
    path.write_text(SCENARIO)
    monkeypatch.setattr(artifacts, "build_all", lambda *a, **k: None)
    monkeypatch.setattr(metadata, "collect", lambda scenario, arts: {"scenario": {"name": scenario.name}})
    monkeypatch.setattr(runner, "execute_run", _fake_run(_library_errors()))
    import harness.analysis.report
    monkeypatch.setattr(harness.analysis.report, "plot_all", lambda *a, **k: [])   # the report's text is enough
    rc = main(["run", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "3 run(s) failed: a-r1, b-r1, a-r2" in err and "Traceback" not in err


# ---- balloon outcomes with a fake QMP -------------------------------------------------------

class FakeQMP:
    """query-balloon answers from a script of ``actual`` values (MiB), then the last forever."""

    def __init__(self, values: list[float]):
        self.values = values
        self.sent: list[tuple[str, object]] = []

    def execute(self, command, arguments=None, timeout=30.0):
        self.sent.append((command, arguments))
        if command == "query-balloon":
            v = self.values.pop(0) if len(self.values) > 1 else self.values[0]
            return {"actual": int(v * (1 << 20))}
        return {}

    def events(self, name=None):
        return []


@pytest.mark.parametrize("values, settle, timeout, outcome", [
    ([1024, 900, 700, 624], 5.0, 30.0, "reached"),
    ([1024, 900, 902, 902], 0.2, 30.0, "settled"),
    ([1024, 1000, 990, 980, 970, 960, 950, 940, 930, 920, 910], 5.0, 0.3, "timeout"),
])
def test_balloon_wait_outcomes(values, settle, timeout, outcome):
    qmp = FakeQMP(list(values))
    b = Balloon(qmp, guest_mib=1024)  # type: ignore[arg-type]
    result = b.move(624, settle=settle, timeout=timeout, poll=0.05)
    assert result.outcome == outcome
    assert result.reached == (outcome == "reached")
    assert result.start_mib == 1024 and result.trajectory[0] == (0.0, 1024)
    assert ("balloon", {"value": 624 << 20}) in qmp.sent


def test_thp_order_tolerance_is_only_for_its_arm():
    assert Balloon(FakeQMP([623]), 1024, tolerance_mib=2.0).move(624, settle=1, timeout=5, poll=0.01).reached
    exact = Balloon(FakeQMP([1024, 622]), 1024).move(624, settle=0.1, timeout=5, poll=0.01)
    assert not exact.reached and exact.outcome == "settled"


@pytest.mark.parametrize("props, tolerance", [
    ((), EXACT_TOLERANCE_MIB),
    ((("thp-order", "on"),), THP_ORDER_TOLERANCE_MIB),
    ((("thp-order", "off"),), EXACT_TOLERANCE_MIB),
    ((("balloon-order", "9"),), THP_ORDER_TOLERANCE_MIB),
    ((("balloon-order", "0"),), EXACT_TOLERANCE_MIB),
    ((("free-page-reporting", "on"),), EXACT_TOLERANCE_MIB),
])
def test_machine_picks_the_balloon_tolerance_from_the_device_properties(tmp_path, monkeypatch, props, tolerance):
    """The machine (not the caller) decides from the arm's device which balloon may land a 2 MiB
    block off its target: one MiB short of 624 is reached with it and settled short without."""
    from harness.vm.machine import Machine
    from harness.vm.spec import BalloonDevice, MachineSpec
    spec = MachineSpec(kernel=tmp_path / "k", initrd=tmp_path / "i", host_key="ssh-ed25519 AAAA",
                       qemu=tmp_path / "qemu", balloon=BalloonDevice(properties=props))
    m = Machine(spec)
    m._qmp = FakeQMP([1024, 623])  # type: ignore[assignment]
    monkeypatch.setattr(m, "is_running", lambda: True)
    b = m.balloon
    assert b.tolerance_mib == tolerance
    assert b.move(624, settle=0.1, timeout=5, poll=0.01).reached == (tolerance == THP_ORDER_TOLERANCE_MIB)


# ---- results on a full filesystem -----------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 256 KiB filesystem. Mounting needs root or passwordless sudo: without either the
    test skips saying so (as the other host-dependent tests do); as root a failed mount fails."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    opts = f"size=256k,uid={os.getuid()},gid={os.getgid()},mode=0755"
    try:
        proc = subprocess.run([*sudo, "mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                              capture_output=True, text=True)
        why = proc.stderr.strip() if proc.returncode else ""
    except OSError as e:  # no sudo, or not ours to run
        why = str(e)
    if why and sudo:
        pytest.skip(f"mounting a tmpfs needs root or passwordless sudo ({' '.join(sudo + ['mount'])}: {why})")
    if why:
        pytest.fail(f"cannot mount a tmpfs as root: {why}")
    try:
        yield mnt
    finally:
        subprocess.run([*sudo, "umount", "-l", str(mnt)], check=False)


def test_full_filesystem_is_a_clear_error_and_leaves_nothing_half_written(tiny_tmpfs):
    store = ResultsStore(tiny_tmpfs / "out")
    run = PlannedRun(None, 1, "a-r1")  # type: ignore[arg-type]
    big = pd.DataFrame({"run_id": ["a-r1"] * 40_000, "arm": "a", "rep": 1, "phase": "p",
                        "t": [float(i) for i in range(40_000)], "source": "qemu", "metric": "rss_kib",
                        "value": [float(i * 7919 % 104729) for i in range(40_000)]})
    summary = pd.DataFrame(columns=metrics.SUMMARY_COLUMNS)
    with pytest.raises(ResultsWriteError, match="No space left|cannot write"):
        store.write_run(run.run_id, big, summary, {"run_id": "a-r1"})
    d = store.run_dir("a-r1")
    assert not (d / "run.json").exists()
    assert not (d / "samples.parquet").exists(), "a truncated Parquet must never carry the final name"
    assert load_results(tiny_tmpfs / "out").runs == []


def test_cli_on_a_full_filesystem_says_so_in_one_line(tiny_tmpfs, tmp_path, no_vm, monkeypatch, capsys):
    from harness.artifacts import build as artifacts
    from harness.cli import main
    from harness.experiment import metadata
    path = tmp_path / "units.toml"
    path.write_text(SCENARIO)
    try:
        (tiny_tmpfs / "filler").write_bytes(b"\0" * (256 * 1024))  # fills it
    except OSError:
        pass  # ENOSPC: full, as wanted
    monkeypatch.setattr(artifacts, "build_all", lambda *a, **k: None)
    monkeypatch.setattr(metadata, "collect", lambda s, a: {"padding": "x" * 10_000})
    rc = main(["run", str(path), "--out", str(tiny_tmpfs / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and "No space left on device" in err and "Traceback" not in err


def test_json_of_a_failed_run_is_not_taken_for_a_finished_one(scenario, tmp_path, no_vm, monkeypatch):
    """A run that fails after a step leaves, by the runner's own code, error.txt and its partial
    results (partial-summary.csv, partial-samples.csv, partial-moves.json): they keep what it
    measured, and nothing reads them as a finished run (results, resume, the combined frames)."""
    arm = scenario.arms[0]
    store = ResultsStore(tmp_path / "out")
    ok = _fake_run({})
    ok(scenario, PlannedRun(scenario.arms[1], 1, "b-r1"), 0, store, None)

    run = PlannedRun(arm, 1, "a-r1")
    row = metrics.summary_row({"run_id": run.run_id, "arm": arm.name, "rep": 1, "step": "balloon 600"},
                              "balloon", 600, {}, {}, "tcg", 1.0)
    move = {"target_mib": 600, "reached": False, "outcome": "timeout", "trajectory": [[0.0, 1024], [1.0, 800]]}

    class Say:
        def say(self, run, index, message, throttle=0.0):
            pass

    ctx = runner.RunContext(scenario, run, 0, None, Say(), store.run_dir(run.run_id), None,  # type: ignore[arg-type]
                            moves={"balloon 600": move}, summary=[row])
    ctx.run_dir.mkdir(parents=True)

    class Rows:   # what _keep_partial reads of a Sampler: its rows, and its frame map (none here)
        rows = [(0.2, "balloon 600", "qemu", "rss_kib", 1234.0)]
        frames = None

    runner._keep_partial(ctx, Rows())  # type: ignore[arg-type]
    try:
        raise RuntimeError("the guest stopped answering")
    except RuntimeError as e:
        runner._record_failure(store, run, e)

    d = store.run_dir("a-r1")
    assert "RuntimeError: the guest stopped answering" in (d / "error.txt").read_text()
    assert json.loads((d / "partial-moves.json").read_text()) == {"balloon 600": move}
    partial = pd.read_csv(d / "partial-summary.csv")
    assert list(partial.columns) == metrics.SUMMARY_COLUMNS and list(partial["run_id"]) == ["a-r1"]
    assert list(pd.read_csv(d / "partial-samples.csv")["value"]) == [1234.0]

    assert not store.is_complete("a-r1") and store.is_complete("b-r1")
    res = load_results(tmp_path / "out")
    assert [r["run_id"] for r in res.runs] == ["b-r1"]
    assert set(res.summary["run_id"]) == {"b-r1"}
    _, combined = store.combine()
    assert set(combined["run_id"]) == {"b-r1"}
    seen: list[str] = []

    def record(scenario, run, *args, **kw):
        seen.append(run.run_id)
        return ok(scenario, run, *args, **kw)

    monkeypatch.setattr(runner, "execute_run", record)
    assert run_scenario(scenario, store, resume=True) == []
    assert "a-r1" in seen and "b-r1" not in seen


# ---- kernel problems in the guest's console --------------------------------------------------

KERNEL_PROBLEMS = [
    "[   12.345678] WARNING: CPU: 0 PID: 87 at mm/page_alloc.c:5525 __alloc_pages+0x2a1/0x330",
    "[    3.210000] BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "[    8.100000] BUG: Bad page state in process usemem  pfn:1f2a3",
    "[    9.000001] Oops: 0002 [#1] PREEMPT SMP NOPTI",
    "[    9.500000] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1]",
    "[   10.000000] Kernel panic - not syncing: Out of memory and no killable processes...",
]
NOT_PROBLEMS = [
    "[    0.000000] Kernel command line: console=ttyS0 panic=-1 loglevel=4 bh.thp=always",
    "[    1.200000] virtio_balloon: loading out-of-tree module taints kernel.",
    "[    2.000000] Out of memory: Killed process 123 (usemem) total-vm:524288kB",
    "warning: usemem: 64 MiB less than asked",
    "[    0.100000] x86/fpu: x87 FPU will use FXSAVE",
]


def test_console_problems_finds_kernel_warnings_bugs_oopses_and_panics_only():
    from harness.experiment.runner import console_problems
    console = "\n".join(NOT_PROBLEMS[:2] + KERNEL_PROBLEMS + NOT_PROBLEMS[2:])
    assert console_problems(console) == KERNEL_PROBLEMS
    for line in NOT_PROBLEMS:
        assert console_problems(line) == [], line
    many = "\n".join(f"[ {i}.0] WARNING: CPU: 0 PID: {i} at x.c:1 f+0x1/0x2" for i in range(30))
    assert len(console_problems(many)) == 10 and console_problems(many, limit=3) == many.splitlines()[:3]
