"""The runner: for each arm and repetition, boot, run the steps, sample, write the results.

Runs go one after another by default (isolation: one guest on the host at a time).
``jobs > 1`` runs several guests at once; per-process figures (the QEMU
process's ``smaps_rollup``) stay correct then, host-wide ones mix the guests.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.artifacts import Artifacts
from harness.artifacts.initramfs import build_image
from harness.errors import ConfigError, HarnessError
from harness.experiment.scenario import Arm, Scenario, Step
from harness.probes.sampler import Reading, Sampler
from harness.results import SAMPLE_COLUMNS, SUMMARY_COLUMNS, ResultsStore
from harness.vm import BalloonDevice, Machine, MachineSpec
from harness.vm.machine import stop_all_live


@dataclass(frozen=True)
class PlannedRun:
    arm: Arm
    rep: int
    run_id: str


def plan(scenario: Scenario) -> list[PlannedRun]:
    """Repetition-major order: a run killed midway still has every arm of the first reps."""
    return [PlannedRun(arm, rep, f"{arm.name}-r{rep}")
            for rep in range(1, scenario.repetitions + 1) for arm in scenario.arms]


class Progress:
    """Progress lines on stderr: which run, which phase, elapsed time. Thread-safe."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def say(self, run: PlannedRun, index: int, message: str, throttle: float = 0.0) -> None:
        now = time.monotonic()
        if throttle and now - self._last.get(run.run_id, 0.0) < throttle:
            return
        self._last[run.run_id] = now
        with self._lock:
            print(f"[{now - self.t0:7.1f}s] run {index}/{self.total} {run.arm.name} rep {run.rep}: {message}",
                  file=self.stream, flush=True)


def machine_spec_for(scenario: Scenario, run: PlannedRun, artifacts: Artifacts) -> MachineSpec:
    """Resolve an arm's QEMU and module names to built artifacts (or the user's own paths)."""
    arm = run.arm
    if arm.qemu in artifacts.qemus:
        qemu = artifacts.qemus[arm.qemu]
    elif Path(arm.qemu).exists():
        qemu = Path(arm.qemu)
    else:
        raise ConfigError(f"arm {arm.name}: QEMU {arm.qemu!r} was not built (run `balloon-harness build`)")
    if arm.module in artifacts.images:
        image = artifacts.images[arm.module]
    elif Path(arm.module).exists():
        image = build_image(artifacts.kernel, Path(arm.module), f"custom:{arm.module}")
    else:
        raise ConfigError(f"arm {arm.name}: module {arm.module!r} was not built (run `balloon-harness build`)")
    vm = scenario.vm
    spec = MachineSpec.for_image(
        image, qemu=qemu, memory_mib=vm.memory_mib, vcpus=vm.vcpus, accel=vm.accel,
        guest_thp=vm.guest_thp, boot_timeout=vm.boot_timeout, name=f"bh-{run.run_id}",
        balloon=BalloonDevice(properties=arm.device))
    # A kernel of the user's own boots with our initramfs; its Debian modules only load into
    # the matching Debian kernel, so such a kernel needs virtio built in (=y).
    return dataclasses.replace(spec, kernel=Path(arm.kernel)) if arm.kernel else spec


def _get(r: Reading, source: str, metric: str) -> float:
    return r.get((source, metric), math.nan)


def summary_row(run: PlannedRun, step: Step, before: Reading, after: Reading, accel: str,
                step_seconds: float, balloon=None) -> dict[str, Any]:
    """One summary row from the readings around a step (and the balloon result, if any)."""
    start_mib = _get(before, "balloon", "actual_mib")
    actual_mib = _get(after, "balloon", "actual_mib")
    ballooned = start_mib - actual_mib
    qemu_ahp_b, qemu_ahp_a = _get(before, "qemu", "anon_huge_kib"), _get(after, "qemu", "anon_huge_kib")
    thp_lost = qemu_ahp_b - qemu_ahp_a
    row = {
        "run_id": run.run_id, "arm": run.arm.name, "rep": run.rep, "step": step.label, "kind": step.kind,
        "target_mib": float(step.target_mib) if step.target_mib is not None else math.nan,
        "start_mib": start_mib, "actual_mib": actual_mib,
        "reached": bool(balloon.reached) if balloon else None,
        "outcome": balloon.outcome if balloon else None,
        "ballooned_mib": ballooned,
        "host_ahp_before_kib": _get(before, "host", "anon_huge_kib"),
        "host_ahp_after_kib": _get(after, "host", "anon_huge_kib"),
        "qemu_ahp_before_kib": qemu_ahp_b, "qemu_ahp_after_kib": qemu_ahp_a,
        "qemu_rss_before_kib": _get(before, "qemu", "rss_kib"),
        "qemu_rss_after_kib": _get(after, "qemu", "rss_kib"),
        "rss_freed_kib": _get(before, "qemu", "rss_kib") - _get(after, "qemu", "rss_kib"),
        "thp_lost_kib": thp_lost,
        "thp_lost_per_ballooned_mib": (thp_lost / 1024 / ballooned) if ballooned > 0 else math.nan,
        "settle_seconds": balloon.seconds if balloon else math.nan,
        "step_seconds": step_seconds,
        "guest_ahp_before_kib": _get(before, "guest", "anon_huge_kib"),
        "guest_ahp_after_kib": _get(after, "guest", "anon_huge_kib"),
        "guest_free_order9_before": _get(before, "guest", "free_order9_blocks"),
        "guest_free_order9_after": _get(after, "guest", "free_order9_blocks"),
        "accel": accel,
    }
    for counter in ("thp_split_pmd", "thp_split_page", "thp_fault_alloc", "thp_collapse_alloc"):
        row[f"{counter}_delta"] = _get(after, "host", counter) - _get(before, "host", counter)
    return row


def execute_run(scenario: Scenario, run: PlannedRun, index: int, artifacts: Artifacts,
                store: ResultsStore, progress: Progress) -> dict[str, Any]:
    """Boot, run every step with sampling, write the run's frames. Returns the run info."""
    spec = machine_spec_for(scenario, run, artifacts)
    run_dir = store.run_dir(run.run_id)
    if run_dir.exists():  # a partial run from an interrupted attempt
        shutil.rmtree(run_dir)
    timing = scenario.timing
    started = time.time()
    t0 = time.monotonic()
    seconds = {"boot": 0.0, "run": 0.0, "balloon": 0.0, "sleep": 0.0, "measure": 0.0}
    summary: list[dict[str, Any]] = []
    progress.say(run, index, f"booting ({spec.qemu.name}, module {run.arm.module}, "
                             f"device {BalloonDevice(properties=run.arm.device).arg()})")
    with Machine(spec, run_dir=run_dir / "vm") as m:
        seconds["boot"] = m.boot_seconds or 0.0
        progress.say(run, index, f"booted in {seconds['boot']:.1f}s (accel={m.accel})")
        balloon = m.balloon
        probe_ssh = m.open_ssh()  # the workload keeps m.ssh; dropbear wants one channel at a time
        sampler = Sampler(m.pid, balloon.actual_mib, lambda cmd: probe_ssh.run(cmd, timeout=60).stdout,
                          host_hz=timing.host_sample_hz, guest_seconds=timing.guest_sample_seconds, t0=t0)
        sampler.phase = "idle"
        sampler.snapshot()
        with sampler:
            for step in scenario.steps:
                sampler.phase = step.label
                progress.say(run, index, f"step {step.label}")
                before = sampler.snapshot()
                ts = time.monotonic()
                result = None
                if step.kind == "run":
                    m.ssh.run(step.command, timeout=step.timeout)
                elif step.kind == "balloon":
                    result = balloon.move(
                        step.target_mib, settle=timing.settle_seconds,
                        timeout=timing.balloon_timeout_seconds,
                        poll=1.0 / timing.host_sample_hz,
                        on_sample=lambda t, a: progress.say(
                            run, index, f"{step.label}: actual {a:.0f} MiB after {t:.1f}s", throttle=5.0))
                    progress.say(run, index, f"{step.label}: {result.outcome} at {result.actual_mib:.0f} MiB "
                                             f"in {result.seconds:.1f}s")
                elif step.kind == "sleep":
                    time.sleep(step.seconds)
                m.check_alive()
                seconds[step.kind] += time.monotonic() - ts
                time.sleep(timing.step_pause_seconds)
                after = sampler.snapshot()
                summary.append(summary_row(run, step, before, after, m.accel, time.monotonic() - ts, result))
        accel = m.accel
        errors = sampler.errors
    total = time.monotonic() - t0
    samples = pd.DataFrame([(run.run_id, run.arm.name, run.rep, phase, t, src, metric, value)
                            for t, phase, src, metric, value in sampler.rows], columns=SAMPLE_COLUMNS)
    summary_df = pd.DataFrame(summary, columns=SUMMARY_COLUMNS)
    info = {
        "run_id": run.run_id, "arm": run.arm.name, "rep": run.rep, "status": "complete",
        "accel": accel, "qemu": str(spec.qemu), "module": run.arm.module,
        "module_sha256": artifacts.images[run.arm.module].balloon_module_sha256
        if run.arm.module in artifacts.images else None,
        "device": spec.balloon.arg() if spec.balloon else None,
        "started": started, "wall_seconds": total,
        "seconds": {**seconds, "overhead": total - sum(seconds.values())},
        "sampler_errors": errors[:10],
    }
    store.write_run(run.run_id, samples, summary_df, info)
    progress.say(run, index, f"done in {total:.1f}s -> {run_dir}")
    return info


def run_scenario(scenario: Scenario, artifacts: Artifacts, store: ResultsStore, jobs: int = 1,
                 resume: bool = False) -> list[str]:
    """Run every planned run not yet on disk (with ``resume``). Returns the failed run ids."""
    runs = plan(scenario)
    if resume:
        skipped = [r.run_id for r in runs if store.is_complete(r.run_id)]
        if skipped:
            print(f"resume: skipping {len(skipped)} finished run(s): {', '.join(skipped)}", file=sys.stderr)
        runs = [r for r in runs if not store.is_complete(r.run_id)]
    progress = Progress(len(runs))
    failed: list[str] = []

    def one(i: int, r: PlannedRun) -> None:
        try:
            execute_run(scenario, r, i, artifacts, store, progress)
        except HarnessError as e:
            failed.append(r.run_id)
            d = store.run_dir(r.run_id)
            d.mkdir(parents=True, exist_ok=True)
            (d / "error.txt").write_text(f"{e}\n\n{traceback.format_exc()}")
            progress.say(r, i, f"FAILED: {str(e).splitlines()[0]} (details: {d / 'error.txt'})")

    if jobs <= 1:
        for i, r in enumerate(runs, 1):
            one(i, r)
    else:
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
