"""A fleet run (issue 30, docs/fleet.md): N guests booted together, the steps in lockstep.

One planned run of an arm with ``guests = N`` boots N guests of the scenario's [vm], each its
own QEMU (own SSH port, console, sampler and frame map) in ``runs/<run>/guest-<i>/``. Step k
runs on every guest still running at once (a thread each), and step k+1 starts when all have
finished step k. Each guest's summary rows carry ``guest = i``; after each step the fleet's
row (``<step> [fleet]``, harness.results.fleet) sums the guests that finished it.

A guest that fails (its QEMU died, a workload died, a step's command failed) fails only its
part: its ``guest-<i>/error.txt`` says why, its finished steps are kept as partial files, its
QEMU is stopped through the Machine's cleanup funnel, and the other guests go on. The run is
written with the surviving guests' rows (run.json ``status = "partial"``) and then reported
failed, so the command's exit status says a part is missing. Every guest's QEMU is stopped
on every ending (``finally``), Ctrl-C included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from harness.errors import GuestDied, HarnessError
from harness.experiment import runner
from harness.experiment.plan import PlannedRun
from harness.experiment.scenario import Scenario, Step
from harness.experiment.workload import require_memory_cgroup
from harness.guest import Guest
from harness.probes.sampler import Sampler
from harness.results import ResultsStore, fleet, layout, metrics
from harness.results.store import write_frame, write_text

log = logging.getLogger(__name__)

GUEST_INFO = "guest.json"


class FleetGuestFailed(HarnessError):
    """Some guests of a fleet failed: their parts are missing, the others' are written."""


def guest_dir_name(number: int) -> str:
    """``guest-<i>``: a fleet guest's folder inside its run's."""
    return f"guest-{number}"


@dataclass
class Member:
    """One guest of a fleet and everything its part of the run holds."""

    number: int
    guest: Guest
    ctx: runner.RunContext
    seconds: dict[str, float] = field(default_factory=lambda: {"boot": 0.0})
    sampler: Optional[Sampler] = None
    sampling: bool = False
    error: Optional[BaseException] = None
    failed_at: str = ""
    kernel_log: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def fail(self, error: BaseException, when: str) -> None:
        """This guest's part failed: keep what it measured, say why, stop its QEMU now."""
        self.error, self.failed_at = error, when
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        self.ctx.say(f"FAILED {when}: {type(error).__name__}: {first}")
        self.stop_sampling()
        if self.sampler is not None:
            runner._keep_partial(self.ctx, self.sampler)
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
            (self.ctx.run_dir / layout.ERROR).write_text(f"{type(error).__name__} {when}: {error}\n\n{trace}")
        except OSError as e:
            log.warning("guest %d: cannot write its error.txt: %s", self.number, e)
        self.guest.shutdown()

    def stop_sampling(self) -> None:
        if self.sampler is not None and self.sampling:
            self.sampling = False
            self.sampler.__exit__(None, None, None)


def _boot(member: Member, t0: float) -> None:
    """Boot one guest and start its sampler (runner.execute_run's opening, per guest)."""
    ctx, guest = member.ctx, member.guest
    guest.__enter__()
    member.seconds["boot"] = guest.boot_seconds or 0.0
    ctx.say(f"booted in {member.seconds['boot']:.1f}s (accel={guest.accel}, pid {guest.pid})")
    require_memory_cgroup(guest.ssh)
    ctx.mechanism.attach(guest)
    member.sampler = runner.start_sampler(ctx, t0, BH_GUEST=member.number)
    member.sampler.__enter__()
    member.sampling = True


def _together(members: list[Member], what: Callable[[Member], Any], when: str,
              at_once: bool = True) -> dict[int, Any]:
    """``what(member)`` on every guest still running, at once (a thread each; ``at_once=False``:
    one after another in this thread); a guest whose call raises fails (only its part).
    Returns each surviving guest's result by number."""
    live = [m for m in members if m.ok]
    if not live:
        return {}
    outcomes: dict[int, tuple[Any, Optional[BaseException]]] = {}
    if at_once:
        with ThreadPoolExecutor(max_workers=len(live)) as pool:
            futures = {m.number: pool.submit(what, m) for m in live}
        for number, f in futures.items():
            e = f.exception()
            outcomes[number] = (None if e is not None else f.result(), e)
    else:
        for m in live:
            try:
                outcomes[m.number] = (what(m), None)
            except Exception as error:   # this guest's failure, the others go on
                outcomes[m.number] = (None, error)
    out: dict[int, Any] = {}
    for m in live:
        result, e = outcomes[m.number]
        if e is None:
            out[m.number] = result
            continue
        if not isinstance(e, GuestDied) and m.guest.machine.wait_exit(2.0):   # its QEMU died under the step
            e = m.guest.machine.died(f"the guest died {when} ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''})")
        m.fail(e, when)
    return out


def _stepper(step: Step, t0: float) -> Callable[[Member], tuple[metrics.Reading, metrics.Reading]]:
    """Step ``step`` on one guest (runner.run_step), as :func:`_together` calls it."""
    def one(m: Member) -> tuple[metrics.Reading, metrics.Reading]:
        assert m.sampler is not None
        return runner.run_step(m.ctx, m.sampler, t0, m.seconds, step)
    return one


def _finish(member: Member) -> None:
    """The end of a guest's part: its logs, its kernel's log, the problems the kernel reported."""
    ctx, guest = member.ctx, member.guest
    member.stop_sampling()
    for cmd in ctx.commands:
        if guest.is_running():
            runner._keep_log(ctx, cmd)
    member.kernel_log = runner._fetch_dmesg(guest, ctx.run_dir)


def _member(scenario: Scenario, run: PlannedRun, index: int, number: int, run_dir: Path,
            progress: runner.Progress) -> Member:
    assert run.machine is not None
    spec = dataclasses.replace(run.machine.spec, name=f"{run.machine.spec.name}-g{number}")
    # each guest has its own mechanism (it holds its guest); the planned one is guest 1's
    mechanism = run.machine.mechanism if number == 1 else run.arm.make_mechanism(scenario.vm.memory_mib)
    d = run_dir / guest_dir_name(number)
    guest = Guest(spec, run_dir=d / "vm")
    ctx = runner.RunContext(scenario, run, index, guest, progress, d, mechanism, identity={"guest": str(number)})
    return Member(number, guest, ctx)


def _guest_frames(member: Member) -> tuple[pd.DataFrame, pd.DataFrame]:
    run, sampler = member.ctx.run, member.sampler
    assert sampler is not None
    samples = pd.DataFrame([(run.run_id, run.arm.name, run.rep, phase, t, src, metric, value)
                            for t, phase, src, metric, value in sampler.rows], columns=metrics.SAMPLE_COLUMNS)
    return samples, pd.DataFrame(member.ctx.summary, columns=metrics.SUMMARY_COLUMNS)


def _write_member(member: Member, info: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A finished guest's own files in ``guest-<i>/``: samples, summary, frames, guest.json."""
    samples, summary = _guest_frames(member)
    d = member.ctx.run_dir
    for name, frame in ((layout.SAMPLES, samples), (layout.SUMMARY, summary)):
        write_frame(frame, d / name)
    if member.sampler is not None and member.sampler.frames:
        member.sampler.frames.write(d)
    write_text(d / GUEST_INFO, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return samples, summary


def _run_samples(parts: list[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """The run's samples: the host's once (the first guest's sampler), every guest's own
    sources as ``guest-<i>/<source>`` (each guest's are whole in its own folder)."""
    out = []
    for k, (number, s) in enumerate(parts):
        s = s.copy()
        host = s["source"] == fleet.HOST_SOURCE
        if k > 0:
            s = s[~host]
        s.loc[s["source"] != fleet.HOST_SOURCE, "source"] = f"{guest_dir_name(number)}/" + s["source"].astype(str)
        out.append(s)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=metrics.SAMPLE_COLUMNS)


def execute_fleet_run(scenario: Scenario, run: PlannedRun, index: int, store: ResultsStore,
                      progress: runner.Progress) -> dict[str, Any]:
    """Boot the run's ``guests`` guests together, run every step in lockstep, write each
    guest's part and the fleet's rows. Raises :class:`FleetGuestFailed` (after writing what
    the others measured) when any guest failed."""
    if run.machine is None:
        raise ValueError(f"run {run.run_id} was not prepared: Plan.prepared() resolves its machine")
    n = scenario.guests_of(run.arm)
    run_dir = store.run_dir(run.run_id)
    if run_dir.exists():  # a partial run from an interrupted attempt
        shutil.rmtree(run_dir)
    started, t0 = time.time(), time.monotonic()
    progress.say(run, index, f"booting a fleet of {n} guests ({run.machine.spec.qemu.name}, module "
                             f"{run.arm.module}, mechanism {run.machine.mechanism.name})")
    members = [_member(scenario, run, index, i, run_dir, progress) for i in range(1, n + 1)]
    fleet_rows: list[dict[str, Any]] = []
    try:
        # one after another in this thread: QEMU dies with the thread that started it
        # (setpriv --pdeathsig, harness.vm.lifeline), so no short-lived thread may boot one
        _together(members, lambda m: _boot(m, t0), "at boot", at_once=False)
        for step in scenario.steps:
            ts = time.monotonic()
            readings = _together(members, _stepper(step, t0), f"in step {step.label!r}")
            if readings:
                done = [m for m in members if m.number in readings]
                first = done[0]
                identity = {"run_id": run.run_id, "arm": run.arm.name, "rep": run.rep, "step": step.label,
                            "mechanism": first.ctx.mechanism.name}
                target = runner.deflate_target(first.ctx, step) if step.kind == "deflate" else step.target_mib
                row = fleet.fleet_row(identity, step.kind, target, [readings[m.number][0] for m in done],
                                      [readings[m.number][1] for m in done], first.guest.accel or "",
                                      time.monotonic() - ts, scenario.vm.memory_mib)
                fleet_rows.append(row)
                progress.say(run, index, f"{step.label}: fleet of {len(done)} returned "
                                         f"{row['fleet_returned_mib']:.0f} MiB, keeps {row['fleet_thp_kept_kib']:.0f} "
                                         f"kB of huge pages; more guests fit: {row['fleet_more_guests_fit']:.0f}")
        _together(members, _finish, "at the run's end")
    finally:
        for m in members:   # every guest's QEMU stops here, whatever ended the run
            m.stop_sampling()
            m.guest.shutdown()
    for m in members:
        if not m.ok:
            continue
        console = m.guest.machine.console_log.read_text(errors="replace") \
            if m.guest.machine.console_log.exists() else ""
        problems = runner.console_problems(console + "\n" + m.kernel_log)
        if problems:
            m.fail(HarnessError("the guest kernel reported problems (its figures are suspect):\n"
                                + "\n".join(problems)), "in its kernel log")
    total = time.monotonic() - t0
    parts, summaries, guests_info = [], [], []
    for m in members:
        g: dict[str, Any] = {"guest": m.number, "status": "complete" if m.ok else "failed",
                             "qemu_ending": m.guest.ending.as_dict(), "seconds": m.seconds,
                             "qemu": str(m.guest.spec.qemu), "device": m.guest.spec.balloon.arg()
                             if m.guest.spec.balloon else None, "mechanism": m.ctx.mechanism.info()}
        if m.ok:
            g.update({"moves": m.ctx.moves, "workloads": [w.info() for w in m.ctx.workloads],
                      "sampler_errors": m.sampler.errors[:10] if m.sampler else [],
                      "frame_map": m.sampler.frames.info() if m.sampler and m.sampler.frames else None})
            samples, summary = _write_member(m, g)
            parts.append((m.number, samples))
            summaries.append(summary)
        else:
            g.update({"failed": f"{type(m.error).__name__} {m.failed_at}: "
                                f"{str(m.error).splitlines()[0] if str(m.error) else ''}",
                      "error": str(m.ctx.run_dir / layout.ERROR)})
        guests_info.append(g)
    failed = [g for g in guests_info if g["status"] == "failed"]
    if len(failed) == n:
        raise FleetGuestFailed(f"all {n} guests of the fleet failed: " + "; ".join(
            f"guest {g['guest']}: {g['failed']}" for g in failed))
    # the fleet's rows sum the guests that finished each step; a guest that failed later is
    # in the early rows' sums but not in the run's guest rows (its partial files keep them)
    summary_df = pd.concat([*summaries, pd.DataFrame(fleet_rows, columns=metrics.SUMMARY_COLUMNS)],
                           ignore_index=True)
    info = {
        "run_uid": uuid.uuid4().hex, "run_id": run.run_id, "arm": run.arm.name, "rep": run.rep,
        "status": "partial" if failed else "complete", "stack": run.arm.stack, "position": run.position,
        "slot": run.slot, "order": scenario.order, "accel": members[0].guest.accel,
        "qemu": str(run.machine.spec.qemu), "module": run.arm.module, "module_sha256": run.machine.module_sha256,
        "device": run.machine.spec.balloon.arg() if run.machine.spec.balloon else None,
        "mechanism": run.machine.mechanism.info(), "started": started, "wall_seconds": total,
        "fleet": {"guests": n, "guest_memory_mib": scenario.vm.memory_mib, "members": guests_info},
        # issue 32: the first guest's knobs and probes (every guest of a fleet boots the same kernel)
        "guest_knobs": members[0].ctx.guest_knobs, "probes": members[0].ctx.probes,
    }
    store.write_run(run.run_id, _run_samples(parts), summary_df, info)
    progress.say(run, index, f"fleet done in {total:.1f}s -> {run_dir}")
    if failed:
        raise FleetGuestFailed(f"{len(failed)} of {n} guests of the fleet failed (the others' results are "
                               f"written): " + "; ".join(f"guest {g['guest']}: {g['failed']}" for g in failed))
    return info
