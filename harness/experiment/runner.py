"""The runner: for each planned run, boot, run the steps, sample, write the results.

It executes exactly the plan it is given (:mod:`harness.experiment.plan`: the runs, each
with its machine resolved and built before the first boot); it plans, builds and probes
nothing itself.

Runs go one after another by default (isolation: one guest on the host at a time).
``jobs > 1`` runs several guests at once; per-process figures (the QEMU
process's ``smaps_rollup``) stay correct then, host-wide ones mix the guests.

A run that fails for any reason but Ctrl-C/SIGTERM is that run's failure, never
the scenario's: its ``error.txt`` says why (with the guest's console tail when
the guest died) and the next run starts. Only a results folder that cannot be
written stops the scenario, since nothing after it could be kept either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import shlex
import shutil
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from harness.errors import (
    GuestCommandError,
    GuestDied,
    GuestStateError,
    ResultsWriteError,
    WorkloadDied,
)
from harness.experiment import guest_knobs
from harness.experiment.plan import UNMOUNTED, Plan, PlannedRun, check_host_room
from harness.experiment.scenario import Scenario, Step
from harness.experiment.watch import WatchedWorkload, workload_reading
from harness.experiment.workload import (
    CommandState,
    StepCommand,
    read_states,
    require_memory_cgroup,
    usemem_throughput_mb_s,
)
from harness.guest import Guest
from harness.host import knobs, room
from harness.mechanisms import Mechanism
from harness.mechanisms.virtio_mem import move_neighbour, wait_neighbour_plugged
from harness.probes import backing_usage, framemap
from harness.probes.guest_events import arm_probes
from harness.probes.ramlayout import qmp_hmp, read_layout
from harness.probes.sampler import Sampler
from harness.results import ResultsStore, layout, metrics, recovery
from harness.vm import MachineSpec
from harness.vm.follow import MoveResult
from harness.vm.machine import stop_all_live

log = logging.getLogger("harness.run")

# Step commands may read which run they are in: `. /run/bh-run.env` sets BH_ARM, BH_REP, BH_RUN_ID.
RUN_ENV = "/run/bh-run.env"
# Kernel messages that make a run's figures suspect: the run fails and names them.
CONSOLE_PROBLEMS = re.compile(r"(WARNING: |BUG: |Kernel panic|Oops: |general protection fault)")


class Progress:
    """Progress records (logger ``harness.run``): which run, which phase, elapsed time.
    Thread-safe; the CLI decides where they go (stderr) and how loud (-v/-q)."""

    def __init__(self, total: int):
        self.total = total
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def say(self, run: PlannedRun, index: int, message: str, throttle: float = 0.0) -> None:
        now = time.monotonic()
        if throttle and now - self._last.get(run.run_id, 0.0) < throttle:
            return
        self._last[run.run_id] = now
        with self._lock:
            log.info("[%7.1fs] run %d/%d %s rep %d: %s", now - self.t0, index, self.total, run.arm.name,
                     run.rep, message)


@dataclass
class RunContext:
    """What a step handler may use: the booted guest, the sampler, the run's own state."""

    scenario: Scenario
    run: PlannedRun
    index: int
    guest: Guest
    progress: Progress
    run_dir: Path
    mechanism: Mechanism
    commands: list[StepCommand] = field(default_factory=list)      # every step command, in order
    workloads: list[WatchedWorkload] = field(default_factory=list)  # every workload watched (stopped too)
    moves: dict[str, dict] = field(default_factory=dict)   # step label -> MoveResult.as_dict(), for run.json
    summary: list[dict[str, Any]] = field(default_factory=list)  # one row per finished step
    holds_mib: Optional[int] = None            # declared by a run/background step, checked after each step
    # after the balloon (deflate, retouch, observe): the frame map, the sampler's clock origin,
    # and the MiB the last deflate gave back (a retouch's default size)
    frames: Optional[framemap.FrameMap] = None
    t0: float = 0.0
    given_back_mib: Optional[float] = None
    ram_mappings: list[int] = field(default_factory=list)   # issue 29: host addresses of guest-RAM mappings
    identity: dict[str, Any] = field(default_factory=dict)   # issue 30: a fleet guest's {"guest": i}
    # issue 32: the guest knobs written (path -> requested, read back), the guest probes armed
    # (harness.probes.guest_events' info), and figures a handler measured beside its result
    guest_knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    probes: Optional[dict[str, Any]] = None
    extra_figures: metrics.Reading = field(default_factory=dict)

    def say(self, message: str, throttle: float = 0.0) -> None:
        if self.identity:   # issue 30: which guest of a fleet
            message = f"guest {self.identity.get('guest')}: {message}"
        self.progress.say(self.run, self.index, message, throttle)

    @property
    def watching(self) -> list[WatchedWorkload]:
        """The workloads watched now: not ended by a stop step."""
        return [w for w in self.workloads if w.stopped_at is None]

    def new_command(self, step: Step) -> StepCommand:
        assert step.command is not None
        cmd = StepCommand(self.guest.ssh, step.label, step.command, len(self.commands) + 1, step.kind)
        self.commands.append(cmd)
        return cmd


@dataclass(frozen=True)
class Throughput:
    """What a ``throughput = true`` run step measured."""

    mb_s: float


def _step_run(ctx: RunContext, step: Step) -> Optional[Throughput]:
    """Run the command in its own cgroup and wait until it returns; its output is kept in
    ``runs/<run>/steps/<label>.log``. What it leaves running is watched from here on."""
    cmd = ctx.new_command(step)
    cmd.start()
    state = cmd.wait(step.timeout)
    output = cmd.read_log()
    _keep_log(ctx, cmd, output)
    end = state.main_end
    if end is None or end.failed:
        if end is None:
            how = f"did not run ({state.error or 'bh-step recorded no end'})"
        elif end.how == "exit":
            how = f"exited with {end.value}"
        else:
            how = f"was killed by signal {end.value}"
        raise GuestCommandError(f"`{step.command}` {how} in the guest\n--- last lines of its output "
                                f"({cmd.log_path}) ---\n{_last_lines(output)}", cmd.command,
                                end.value if end is not None and end.how == "exit" else None)
    if state.populated:
        _watch_detached(ctx, step, cmd, state)
    if not step.throughput:
        return None
    try:
        mb_s = usemem_throughput_mb_s(output)
    except ValueError as e:
        raise GuestStateError(f"step {step.label!r} declares throughput = true: {e}") from None
    ctx.say(f"{step.label}: {mb_s:.0f} MB/s")
    return Throughput(mb_s)


def _watch_detached(ctx: RunContext, step: Step, cmd: StepCommand, state: CommandState) -> None:
    """Processes a run step's command left in its cgroup are its detached workload: watched
    like a background one from here on."""
    ctx.workloads.append(WatchedWorkload(cmd, step.anon_drop_fraction))
    ctx.say(f"{step.label}: left pid(s) {', '.join(map(str, state.pids[:8]))} running: watched from here on")


def _last_lines(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _keep_log(ctx: RunContext, cmd: StepCommand, text: Optional[str] = None) -> None:
    """The command's guest log, as ``runs/<run>/steps/<label>.log`` (refreshed at the run's end)."""
    cmd.fetch_log(ctx.run_dir / "steps", text)


def _step_background(ctx: RunContext, step: Step) -> None:
    cmd = ctx.new_command(step)
    pid = cmd.start()
    ctx.workloads.append(WatchedWorkload(cmd, step.anon_drop_fraction))
    ctx.say(f"{step.label}: started pid {pid}" + (f", waiting for /{step.ready}/" if step.ready else ""))
    seconds = cmd.wait_ready(step.ready, step.timeout)
    if step.ready:
        ctx.say(f"{step.label}: ready after {seconds:.1f}s")


def _step_resize(ctx: RunContext, step: Step) -> MoveResult:
    """Bring the guest to the target with the arm's mechanism (harness.mechanisms)."""
    assert step.target_mib is not None
    what = ctx.mechanism.follows
    neighbour = _start_neighbour(ctx, step)
    try:
        result = ctx.mechanism.resize(
            step.target_mib, ctx.scenario.timing,
            on_sample=lambda t, a: ctx.say(f"{step.label}: {what} {a:.0f} MiB after {t:.1f}s", throttle=5.0))
    finally:
        moved = neighbour.result() if neighbour is not None else None
    ctx.say(f"{step.label}: {result.outcome} at {result.actual_mib:.0f} MiB in {result.seconds:.1f}s")
    ctx.moves[step.label] = result.as_dict()
    if moved is not None:
        ctx.say(f"{step.label}: neighbour virtio-mem {moved.outcome} at {moved.actual_mib:.0f} MiB "
                f"(asked {step.neighbour_mib}) in {moved.seconds:.1f}s")
        ctx.moves[step.label]["neighbour"] = {**moved.as_dict(), "start_mib": moved.start_mib,
                                              "actual_mib": moved.actual_mib}
        ctx.extra_figures.update({
            metrics.NEIGHBOUR_REACHED_KEY: float(bool(moved.reached)),
            metrics.NEIGHBOUR_SECONDS_KEY: moved.seconds,
            metrics.NEIGHBOUR_MOVED_KEY: moved.start_mib - moved.actual_mib})
    return result


def _start_neighbour(ctx: RunContext, step: Step) -> Optional[Future]:
    """issue 32: the neighbour virtio-mem device's move, started beside the step's resize
    (a future; None when the step asks for none)."""
    if step.neighbour_mib is None:
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"neighbour-{ctx.run.run_id}")
    future = pool.submit(move_neighbour, ctx.guest, step.neighbour_mib, ctx.scenario.timing)
    pool.shutdown(wait=False)
    return future


def _step_stop(ctx: RunContext, step: Step) -> None:
    """End a watched workload (a background step's, or what a run step left running); its
    memory is free from here on (so no holds_mib either)."""
    wl = next((w for w in ctx.watching if w.label == step.workload), None)
    if wl is None:
        raise GuestStateError(f"step {step.label!r}: step {step.workload!r} left no workload running to stop "
                              f"(its command returned with nothing left in its cgroup)")
    seconds = wl.command.stop()
    wl.stopped_at = step.label
    ctx.holds_mib = None
    ctx.say(f"{step.label}: {wl.label} ended in {seconds:.1f}s")


def _step_sleep(ctx: RunContext, step: Step) -> None:
    time.sleep(step.seconds)


def _step_measure(ctx: RunContext, step: Step) -> None:
    return None


# ---- after the balloon: deflate, retouch, observe (docs/recovery.md) ----------------------

@dataclass(frozen=True)
class StepFigures:
    """Figures a step measured itself, added to its after-reading (a source of their own:
    ``retouch``, ``recovery``) for the summary's metrics to read."""

    reading: metrics.Reading


RETOUCH_MARK = "bh-retouch-uptime"


def deflate_target(ctx: RunContext, step: Step) -> int:
    """A deflate's target: its own target_mib, else the guest's full size."""
    return step.target_mib if step.target_mib is not None else ctx.mechanism.memory_mib


def _step_deflate(ctx: RunContext, step: Step) -> MoveResult:
    """Give the memory back: a resize to the guest's full size (or target_mib), timed like any."""
    result = _step_resize(ctx, step.model_copy(update={"target_mib": deflate_target(ctx, step)}))
    ctx.given_back_mib = result.actual_mib - result.start_mib
    return result


def retouch_command(ctx: RunContext, step: Step) -> tuple[str, Optional[int]]:
    """The retouch's command and the MiB it touches: the step's command (MiB unknown), or
    ``usemem <N>m`` over touch_mib, else over what the last deflate gave back."""
    if step.command is not None:
        return step.command, None
    mib = step.touch_mib if step.touch_mib is not None else (
        int(ctx.given_back_mib) if ctx.given_back_mib is not None and ctx.given_back_mib >= 1 else None)
    if mib is None:
        raise GuestStateError(f"step {step.label!r}: a retouch without command or touch_mib touches what the last "
                              f"deflate gave back, but no deflate before it gave anything back")
    return f"usemem {mib}m", mib


def _step_retouch(ctx: RunContext, step: Step) -> StepFigures:
    """The guest touches memory again (by default ``usemem`` over what the deflate gave back):
    a run step whose command is timed in the guest (its uptime before and after, so the SSH
    round trips are not in it)."""
    command, mib = retouch_command(ctx, step)
    # /proc/uptime (10 ms steps): the guest's busybox `date` has no sub-second format
    timed = (f"read bh_t0 bh_rest < /proc/uptime; {command}; bh_rc=$?; read bh_t1 bh_rest < /proc/uptime; "
             f"echo \"{RETOUCH_MARK} $bh_t0 $bh_t1\"; exit $bh_rc")
    _step_run(ctx, step.model_copy(update={"command": timed}))
    found = re.findall(rf"^{RETOUCH_MARK} ([0-9.]+) ([0-9.]+)$", ctx.commands[-1].read_log(), re.MULTILINE)
    if not found:
        raise GuestStateError(f"step {step.label!r}: the retouch's output has no {RETOUCH_MARK} line")
    seconds = float(found[-1][1]) - float(found[-1][0])
    ctx.say(f"{step.label}: touched {f'{mib} MiB' if mib else 'its memory'} in {seconds:.2f}s "
            f"(accel={ctx.guest.accel})")
    return StepFigures({metrics.RETOUCH_SECONDS_KEY: seconds,
                        metrics.RETOUCH_MIB_KEY: float(mib) if mib else math.nan})


def breaking_step(ctx: RunContext, step: Step) -> Optional[str]:
    """The label of the last resize (not deflate) before ``step``: the one whose broken huge
    pages an observe step follows."""
    before = ctx.scenario.steps[:ctx.scenario.steps.index(step)]
    moves = [s.label for s in before if s.kind in ("resize", "balloon")]
    return moves[-1] if moves else None


def _step_observe(ctx: RunContext, step: Step) -> StepFigures:
    """Act on nothing for ``seconds``: the sampler keeps reading the host figures at its rate,
    and the host side of the frame map is read here at ``sample_hz`` (fixed times from the
    step's start, not drifting with the read's own time). Returns what became of the huge
    pages the last resize broke (harness.results.recovery), from the map so far."""
    period, start = 1.0 / step.sample_hz, time.monotonic()
    n = 0
    while True:
        due = start + n * period
        if due - start > step.seconds + 1e-9:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        if ctx.frames is not None:
            ctx.frames.sample_observed(step.label, time.monotonic() - ctx.t0)
        n += 1
        ctx.say(f"{step.label}: {time.monotonic() - start:.0f}s of {step.seconds:g}s", throttle=15.0)
    time.sleep(max(0.0, start + step.seconds - time.monotonic()))
    broke = breaking_step(ctx, step)
    if ctx.frames is None or broke is None:
        return StepFigures({})
    frames = ctx.frames.frame()
    # this step's end reading is taken after the handler: the recovery so far ends at its last observed reading
    try:
        rec = recovery.broken_by(frames, broke)
    except ValueError as e:
        log.warning("step %r: no recovery figures: %s", step.label, e)
        return StepFigures({})
    ctx.say(f"{step.label}: of {rec.broken} huge pages {broke!r} broke, "
            + ", ".join(f"{rec.count(f)} {f.replace('_', ' ')}" for f in recovery.FATES))
    return StepFigures({("recovery", k): v for k, v in rec.figures().items()})


# One handler per step kind; a handler that moves guest memory returns a MoveResult.
STEP_HANDLERS: dict[str, Callable[[RunContext, Step], Any]] = {
    "run": _step_run, "background": _step_background, "resize": _step_resize, "balloon": _step_resize,
    "stop": _step_stop, "sleep": _step_sleep, "measure": _step_measure,
    "deflate": _step_deflate, "retouch": _step_retouch, "observe": _step_observe,
}


def _oom_lines(guest: Guest) -> str:
    """The guest OOM killer's lines from the console tail, as a paragraph of an error (or "")."""
    oom = [line for line in guest.console_tail(200).splitlines() if "Out of memory" in line]
    return "\nthe guest's OOM killer acted:\n" + "\n".join(oom[-5:]) if oom else ""


def watch_workloads(ctx: RunContext, when: str) -> tuple[dict[str, CommandState], metrics.Reading]:
    """Read every watched workload's cgroup (one SSH round trip); a dead one fails the run
    (how its processes ended, its log tail, the guest's OOM lines). Returns the states and
    their memory as a reading (recorded as ``workload`` samples)."""
    watching = ctx.watching
    states = read_states(ctx.guest.ssh, [w.command for w in watching])
    deaths = [w.death(states[w.slug], when, w.command.log_tail()) for w in watching if w.dead(states[w.slug])]
    if deaths:
        raise WorkloadDied("\n".join(deaths) + _oom_lines(ctx.guest))
    return states, workload_reading(watching, states)


def check_guest_state(ctx: RunContext, step: Step, after: metrics.Reading,
                      states: Optional[dict[str, CommandState]] = None) -> None:
    """The cheap sanity checks after a step: the watched workloads kept their anonymous
    memory, the guest holds what the scenario declares (holds_mib). Every failed check is
    named in one error."""
    when = f"after step {step.label!r}"
    problems = [p for w in ctx.watching if w.slug in (states or {})
                for p in [w.observe((states or {})[w.slug], when)] if p]
    if ctx.holds_mib is not None:
        anon_kib = after.get(("guest", "anon_kib"))
        if anon_kib is not None and anon_kib < ctx.holds_mib * 1024:
            problems.append(
                f"{when} the guest holds {anon_kib / 1024:.0f} MiB of anonymous memory, "
                f"but the scenario declares the workload holds at least {ctx.holds_mib} MiB "
                f"(holds_mib): the workload's memory is gone, the figures would describe an idle guest")
    if problems:
        raise GuestStateError("\n".join(problems) + _oom_lines(ctx.guest))


def _fetch_dmesg(guest: Guest, run_dir: Path) -> str:
    """The guest kernel's whole log, kept as ``runs/<run>/dmesg.log``."""
    try:
        text = guest.ssh.run("dmesg", timeout=60, check=False).stdout
    except GuestCommandError:
        return ""
    (run_dir / "dmesg.log").write_text(text)
    return text


def console_problems(text: str, limit: int = 10) -> list[str]:
    """Kernel warnings, BUGs, oopses and panics in a console log."""
    return [line for line in text.splitlines() if CONSOLE_PROBLEMS.search(line)][:limit]


def _run_steps(ctx: RunContext, sampler: Sampler, t0: float, seconds: dict[str, float]) -> list[dict]:
    for step in ctx.scenario.steps:
        run_step(ctx, sampler, t0, seconds, step)
    return ctx.summary


def run_step(ctx: RunContext, sampler: Sampler, t0: float, seconds: dict[str, float],
             step: Step) -> tuple[metrics.Reading, metrics.Reading]:
    """One step on one guest, with its readings just before and after; its summary row goes to
    ``ctx.summary``. Returns the two readings (a fleet sums its guests', harness.experiment.fleet)."""
    run, timing = ctx.run, ctx.scenario.timing
    _, watched_before = watch_workloads(ctx, f"before step {step.label!r}")
    sampler.phase = step.label
    ctx.say(f"step {step.label}")
    before = sampler.snapshot()
    before.update(backing_reading(ctx))      # issue 29
    sampler.record(watched_before)
    before.update(watched_before)
    ts = time.monotonic()
    result = STEP_HANDLERS[step.kind](ctx, step)
    ctx.guest.check_alive()
    seconds[step.kind] = seconds.get(step.kind, 0.0) + time.monotonic() - ts
    time.sleep(timing.step_pause_seconds)
    after = sampler.snapshot()
    after.update(backing_reading(ctx))       # issue 29
    states, watched_after = watch_workloads(ctx, f"after step {step.label!r}")
    sampler.record(watched_after)
    after.update(watched_after)
    if isinstance(result, StepFigures):
        after.update(result.reading)
    after.update(ctx.extra_figures)          # issue 32: the neighbour's figures
    ctx.extra_figures = {}
    if step.holds_mib is not None:
        ctx.holds_mib = step.holds_mib
    check_guest_state(ctx, step, after, states)
    identity = {"run_id": run.run_id, "arm": run.arm.name, "rep": run.rep, "step": step.label,
                "mechanism": ctx.mechanism.name, "backing": ctx.guest.spec.backing.label,
                **ctx.identity}
    ctx.summary.append(metrics.summary_row(
        identity, step.kind, deflate_target(ctx, step) if step.kind == "deflate" else step.target_mib,
        before, after, ctx.guest.accel or "", time.monotonic() - ts,
        result if isinstance(result, MoveResult) else None, series=sampler.series(step.label),
        start_t=ts - t0, workload_mb_s=result.mb_s if isinstance(result, Throughput) else float("nan")))
    return before, after


def execute_run(scenario: Scenario, run: PlannedRun, index: int, store: ResultsStore,
                progress: Progress, set_knobs: bool = True) -> dict[str, Any]:
    """The run inside the host room its backing and knobs need (issue 29:
    :func:`harness.host.room.prepared` reserves hugetlb pages, mounts, sets the THP knobs
    and gives everything back however the run ends). ``set_knobs``: False when the caller
    set the knobs for every run at once (``--jobs > 1``)."""
    if run.machine is None:
        raise ValueError(f"run {run.run_id} was not prepared: Plan.prepared() resolves its machine")
    machine = run.machine
    thp = dict(machine.thp)
    with room.prepared(machine.spec.backing if machine.spec.backing.mem_path != UNMOUNTED
                       else dataclasses.replace(machine.spec.backing, mem_path=None),
                       machine.ram_mib, thp if set_knobs else None) as host:
        record = {**host.metadata(), "thp_requested": thp}
        progress.say(run, index, f"host: backing {host.backing.label}"
                                 + (f", knobs {', '.join(f'{k}={v}' for k, v in thp.items())}" if thp else ""))
        return _execute_booted(scenario, run, index, store, progress, machine.with_backing(host.backing), record)


def _execute_booted(scenario: Scenario, run: PlannedRun, index: int, store: ResultsStore,
                    progress: Progress, spec: MachineSpec, host_record: dict[str, Any]) -> dict[str, Any]:
    """Boot the run's planned machine (:meth:`harness.experiment.plan.Plan.prepared`), run
    every step with sampling, write the run's frames. Returns the run info."""
    assert run.machine is not None
    machine = run.machine
    mechanism = machine.mechanism
    run_dir = store.run_dir(run.run_id)
    if run_dir.exists():  # a partial run from an interrupted attempt
        shutil.rmtree(run_dir)
    started = time.time()
    t0 = time.monotonic()
    seconds: dict[str, float] = {"boot": 0.0}
    progress.say(run, index, f"booting ({spec.qemu.name}, module {run.arm.module}, mechanism {mechanism.name}"
                             + (f", device {spec.balloon.arg()})" if spec.balloon else ")"))
    guest = Guest(spec, run_dir=run_dir / "vm")
    ctx = RunContext(scenario, run, index, guest, progress, run_dir, mechanism)
    sampler: Optional[Sampler] = None
    try:
        with guest:
            seconds["boot"] = guest.boot_seconds or 0.0
            ctx.say(f"booted in {seconds['boot']:.1f}s (accel={guest.accel})")
            require_memory_cgroup(guest.ssh)  # every step command runs in a memory cgroup of its own
            mechanism.attach(guest)
            sampler = start_sampler(ctx, t0)
            try:
                with sampler:
                    summary = _run_steps(ctx, sampler, t0, seconds)
            except Exception as e:
                _keep_partial(ctx, sampler)
                if guest.machine.wait_exit(2.0):  # the guest died under the step: say so, with its console
                    raise guest.machine.died(f"the guest died during the run ({type(e).__name__}: "
                                             f"{str(e).splitlines()[0] if str(e) else ''})") from e
                _fetch_dmesg(guest, run_dir)  # the evidence the console's loglevel hides (OOM reports)
                raise
            finally:
                for cmd in ctx.commands:  # what detached workloads printed since their step, too
                    if guest.is_running():
                        _keep_log(ctx, cmd)
            kernel_log = _fetch_dmesg(guest, run_dir)
    finally:
        ending = guest.ending
        if not ending.clean:
            ctx.say(f"QEMU did not quit cleanly: {ending.describe()}")
    # The console shows messages below loglevel 4 only; WARN() prints at level 4, so the
    # guest's whole kernel log (dmesg, taken before shutdown) is scanned too.
    console = guest.machine.console_log.read_text(errors="replace") if guest.machine.console_log.exists() else ""
    problems = console_problems(console + "\n" + kernel_log)
    if problems:
        raise GuestDied("the guest kernel reported problems (its figures are suspect):\n" + "\n".join(problems),
                        guest.console_tail())
    total = time.monotonic() - t0
    assert sampler is not None
    samples = pd.DataFrame([(run.run_id, run.arm.name, run.rep, phase, t, src, metric, value)
                            for t, phase, src, metric, value in sampler.rows], columns=metrics.SAMPLE_COLUMNS)
    summary_df = pd.DataFrame(summary, columns=metrics.SUMMARY_COLUMNS)
    cmd_sh = run_dir / "vm" / "cmd.sh"
    info = {
        # run_uid: this boot's identity, whatever folder it is copied into (merge, history count it once)
        "run_uid": uuid.uuid4().hex,
        "run_id": run.run_id, "arm": run.arm.name, "rep": run.rep, "status": "complete", "stack": run.arm.stack,
        "position": run.position, "slot": run.slot, "order": scenario.order,
        "accel": guest.accel, "qemu": str(spec.qemu), "module": run.arm.module,
        "module_sha256": machine.module_sha256,
        "device": spec.balloon.arg() if spec.balloon else None,
        "mechanism": mechanism.info(),
        "started": started, "wall_seconds": total,
        "seconds": {**seconds, "overhead": total - sum(seconds.values())},
        "qemu_ending": ending.as_dict(),
        "qemu_cmdline": cmd_sh.read_text() if cmd_sh.exists() else None,
        "moves": ctx.moves,
        "workloads": [w.info() for w in ctx.workloads],
        "sampler_errors": sampler.errors[:10],
        "frame_map": sampler.frames.info() if sampler.frames else None,
        "backing": spec.backing.label,           # issue 29: the backing, the host's knobs and pools
        "host": host_record,
        "guest_knobs": ctx.guest_knobs,          # issue 32: written and read back
        "probes": ctx.probes,                    # issue 32: the guest probes armed, and those absent
        "append": spec.append,
    }
    if sampler.frames:
        sampler.frames.write(run_dir)
    store.write_run(run.run_id, samples, summary_df, info)
    progress.say(run, index, f"done in {total:.1f}s -> {run_dir}")
    return info


# ---- issue 29: the guest RAM's host memory, read the backing's way ------------------------------

def start_sampler(ctx: RunContext, t0: float, **env: object) -> Sampler:
    """A booted guest's sampler, its first reading taken (phase "idle"), and the run's identity
    in the guest's RUN_ENV file (``BH_ARM``, ``BH_REP``, ``BH_RUN_ID`` and ``env``, e.g. a fleet's
    ``BH_GUEST``); the guest-RAM mappings read after the mechanism attached (virtio-mem has
    plugged its memory by then). One opening for a run's guest and each guest of a fleet."""
    guest, scenario, run = ctx.guest, ctx.scenario, ctx.run
    if scenario.vm.neighbour_virtio_mem_mib:   # issue 32: plugged at boot, before any figure
        wait_neighbour_plugged(guest, scenario.vm.neighbour_virtio_mem_mib)
    ctx.ram_mappings = ram_mappings(guest)    # issue 29: each guest's RAM, read its backing's way
    # issue 32: the arm's guest knobs, written before the first reading; a refused write fails the run
    ctx.guest_knobs = guest_knobs.apply(lambda cmd: guest.ssh.run(cmd, timeout=60).stdout,
                                        scenario.arm_guest_knobs(run.arm))
    if ctx.guest_knobs:
        ctx.say("guest knobs: " + ", ".join(f"{k}={v['read_back']}" for k, v in ctx.guest_knobs.items()))
    probe_ssh = guest.open_ssh()  # the steps keep guest.ssh; dropbear wants one channel at a time
    probe = None
    if scenario.probes.active:   # issue 32: the scenario's counters and tracepoints, checked against this kernel
        probe = arm_probes(lambda cmd: probe_ssh.run(cmd, timeout=60).stdout, scenario.probes.guest_vmstat,
                           scenario.probes.guest_trace)
        ctx.probes = probe.info()
    sampler = Sampler(guest.pid, ctx.mechanism.size_mib, lambda cmd: probe_ssh.run(cmd, timeout=60).stdout,
                      host_hz=scenario.timing.host_sample_hz,
                      guest_seconds=scenario.timing.guest_sample_seconds, t0=t0,
                      frames=framemap.for_guest(guest, lambda cmd: probe_ssh.run(cmd, timeout=180).stdout,
                                                scenario.steps), probe=probe)
    values = {"BH_ARM": run.arm.name, "BH_REP": run.rep, "BH_RUN_ID": run.run_id, **env}
    form = "".join(f"{name}=%s\\n" for name in values)
    guest.ssh.run(f"printf '{form}' {' '.join(shlex.quote(str(v)) for v in values.values())} > {RUN_ENV}",
                  timeout=30)
    ctx.frames, ctx.t0 = sampler.frames, t0
    sampler.phase = "idle"
    sampler.snapshot()
    return sampler


def ram_mappings(guest: Guest) -> list[int]:
    """The start address of each QEMU mapping holding guest RAM (boot RAM, a virtio-mem
    device's memory), from QEMU's flat view of the guest's memory."""
    starts: dict[int, None] = {}
    for span in read_layout(qmp_hmp(guest.qmp)):
        try:
            starts[backing_usage.mapping_at(guest.pid, span.hva).start] = None
        except LookupError:
            continue
    return list(starts)


def backing_reading(ctx: RunContext) -> metrics.Reading:
    """Host memory held by guest RAM and the host huge pages under it, summed over the RAM
    mappings (:func:`harness.probes.backing_usage.read_usage`); {} when it cannot be read."""
    backing = ctx.guest.spec.backing
    held = huge = 0
    try:
        for start in ctx.ram_mappings:
            u = backing_usage.read_usage(ctx.guest.pid, start, backing.kind, backing.page_kib)
            held, huge = held + u.held_kib, huge + u.huge_kib
    except (OSError, LookupError) as e:
        log.warning("backing usage of %s: %s", ctx.run.run_id, e)
        return {}
    if not ctx.ram_mappings:
        return {}
    return {metrics.BACKING_HELD_KEY: float(held), metrics.BACKING_HUGE_KEY: float(huge)}


def _keep_partial(ctx: RunContext, sampler: Sampler) -> None:
    """A failed run's finished steps, kept beside its error.txt (``partial-summary.csv``,
    ``partial-samples.csv``, ``partial-moves.json``): never read as results (the run did not
    finish), but what it measured before it failed is not lost."""
    import json
    try:
        pd.DataFrame(ctx.summary, columns=metrics.SUMMARY_COLUMNS).to_csv(ctx.run_dir / layout.PARTIAL_SUMMARY,
                                                                          index=False)
        pd.DataFrame([(ctx.run.run_id, ctx.run.arm.name, ctx.run.rep, phase, t, src, metric, value)
                      for t, phase, src, metric, value in sampler.rows],
                     columns=metrics.SAMPLE_COLUMNS).to_csv(ctx.run_dir / layout.PARTIAL_SAMPLES, index=False)
        (ctx.run_dir / layout.PARTIAL_MOVES).write_text(json.dumps(ctx.moves, indent=1, default=str))
        if sampler.frames:
            sampler.frames.write(ctx.run_dir)
    except OSError as e:  # the run's own error matters more than this
        ctx.say(f"could not keep the failed run's partial results: {e}")


def _record_failure(store: ResultsStore, run: PlannedRun, error: BaseException) -> Path:
    d = store.run_dir(run.run_id)
    d.mkdir(parents=True, exist_ok=True)
    path = d / layout.ERROR
    try:
        path.write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
    except OSError as e:
        raise ResultsWriteError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def run_plan(planned: Plan, store: ResultsStore, jobs: int = 1,
             on_run_end: Optional[Callable[[str, bool], None]] = None) -> list[str]:
    """Run the plan's runs to do, exactly as prepared (nothing is planned, built or probed
    here). Returns the failed run ids.

    A run's failure (any ``Exception``) is recorded in its ``error.txt`` and the next run
    goes on; Ctrl-C, SIGTERM and an unwritable results folder stop the scenario.
    ``on_run_end(run_id, ok)`` is called as each run ends (the CLI's progress bar).
    """
    if not planned.is_prepared:
        raise ValueError("the plan was not prepared: Plan.prepared(artifacts) resolves its machines")
    scenario, runs = planned.scenario, planned.todo
    check_host_room(planned, jobs)     # issue 29: refused before the first boot
    progress = Progress(len(runs))
    failed: list[str] = []
    # issue 29: under --jobs > 1 every run sets the same knobs (check_host_room): set once for
    # all, since runs that overlap would each restore the knobs under the others.
    shared_knobs = dict(runs[0].machine.thp) if jobs > 1 and runs and runs[0].machine else {}

    def one(i: int, r: PlannedRun) -> None:
        ok = False
        try:
            if scenario.guests_of(r.arm) > 1:   # issue 30: a fleet (docs/fleet.md)
                # fleet.py builds on this module's step handlers: imported here, so imports stay one-way
                from harness.experiment.fleet import execute_fleet_run
                execute_fleet_run(scenario, r, i, store, progress)
            elif shared_knobs:     # set once around the pool below
                execute_run(scenario, r, i, store, progress, set_knobs=False)
            else:
                execute_run(scenario, r, i, store, progress)
            ok = True
        except ResultsWriteError:
            raise
        except Exception as e:  # the run's failure, never the scenario's
            failed.append(r.run_id)
            path = _record_failure(store, r, e)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            progress.say(r, i, f"FAILED: {type(e).__name__}: {first} (details: {path})")
        if on_run_end is not None:
            on_run_end(r.run_id, ok)

    if jobs <= 1:
        for i, r in enumerate(runs, 1):
            one(i, r)
        store.combine()
        return failed
    with knobs.apply(shared_knobs) if shared_knobs else contextlib.nullcontext():
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [pool.submit(one, i, r) for i, r in enumerate(runs, 1)]
            for f in as_completed(futures):
                f.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_all_live()  # the workers' guests die, so their runs end now
            raise
        pool.shutdown()
    store.combine()
    return failed
