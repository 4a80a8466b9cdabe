"""A killed multi-run scenario keeps its finished runs and leaves no QEMU; --resume completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import qemu_pids
from toml_text import arm, preamble, step

from harness.results import load_results

pytestmark = pytest.mark.vm

SCENARIO = (preamble("resume-test", repetitions=2) + step("run", "usemem", command="usemem -d -s -1 128m")
            + step("balloon", "balloon 400", target_mib=400) + arm("stock"))


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def test_kill_midway_then_resume(tmp_path, artifacts):
    scenario = tmp_path / "resume.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    before = qemu_pids(str(tmp_path))
    proc = subprocess.Popen(_harness("run", str(scenario), "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (out / "runs/stock-r1/run.json").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "first run never finished"
            time.sleep(0.5)
        time.sleep(3)  # the second run is booting now
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: QEMU must still go
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(1)
    assert qemu_pids(str(tmp_path)) <= before, "a QEMU outlived the killed harness"
    res = load_results(out)
    assert [r["run_id"] for r in res.runs] == ["stock-r1"]
    assert set(res.summary["run_id"]) == {"stock-r1"}

    done = subprocess.run(_harness("run", str(scenario), "--out", str(out), "--resume"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "skipping 1 finished run" in done.stderr
    res = load_results(out)
    assert sorted(r["run_id"] for r in res.runs) == ["stock-r1", "stock-r2"]
    assert len(res.summary[res.summary["kind"] == "balloon"]) == 2
    assert (out / "summary.parquet").exists() and (out / "samples.csv").exists()
    assert qemu_pids(str(tmp_path)) <= before
    meta = res.metadata
    for key in ("harness_revision", "host", "qemu", "guest_kernel", "guest_modules", "scenario",
                "build_manifest"):
        assert meta.get(key), key
    assert meta["host"]["thp"]["enabled"] and meta["host"]["cpu"] and meta["host"]["kernel"]
    assert set(meta["accelerator"]) == {"stock-r1", "stock-r2"}
    assert set(meta["accelerator"].values()) <= {"kvm", "tcg"}
    assert "resume-test" in meta["scenario"]["text"]


# Two guests that differ in what they hold: rep 1 touches 128 MiB, rep 2 384 MiB; each then
# sleeps long enough that the other's figures are taken while both QEMUs run.
JOBS_TOUCH_MIB = {1: 128, 2: 384}
JOBS_SCENARIO = (preamble("jobs-test", repetitions=2)
                 + step("run", "usemem", command=". /run/bh-run.env; if [ $BH_REP = 1 ]; then m=128; else m=384; fi; "
                                                 "usemem -d -s -1 ${m}m")
                 + step("sleep", "both alive", seconds=20) + arm("stock"))
# What a QEMU process holds beyond its guest's RAM (code, TCG's translation cache, libraries):
# the bound that keeps one 512 MiB guest's figure apart from two guests' sum. Measured here
# (TCG): the guest that touched 384 MiB had 627 MiB, the other 366 MiB, so QEMU's own is
# 115 MiB or more; summed, they read 1012 and 822 MiB.
QEMU_OWN_MIB = 256


def test_jobs_runs_guests_at_once_with_per_process_figures(tmp_path, artifacts):
    scenario = tmp_path / "jobs.toml"
    scenario.write_text(JOBS_SCENARIO)
    out = tmp_path / "out"
    done = subprocess.run(_harness("run", str(scenario), "--out", str(out), "--jobs", "2"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    res = load_results(out)
    runs = sorted(res.runs, key=lambda r: r["started"])
    assert len(runs) == 2
    first, second = runs
    assert second["started"] < first["started"] + first["wall_seconds"], "the runs did not overlap"
    # Each run's QEMU figures are its own process's: at least what its own guest touched, at
    # most one 512 MiB guest and its QEMU (two guests' sum is more: 384 + 128 MiB touched plus
    # two booted kernels), and the guest that touched 256 MiB more shows it.
    rss = {}
    for rep, touched in JOBS_TOUCH_MIB.items():
        row = res.summary[(res.summary["run_id"] == f"stock-r{rep}") & (res.summary["kind"] == "run")].iloc[0]
        rss[rep] = row["qemu_rss_after_kib"] / 1024
        assert touched <= rss[rep] < 512 + QEMU_OWN_MIB, (rep, rss)
    assert rss[2] - rss[1] >= 0.75 * (JOBS_TOUCH_MIB[2] - JOBS_TOUCH_MIB[1]), rss


def test_arm_with_own_qemu_binary_and_kernel_paths(tmp_path, artifacts):
    """Arms may name a QEMU binary and a guest kernel by path instead of the built ones."""
    from harness.experiment.plan import plan
    from harness.experiment.scenario import load_scenario
    text = SCENARIO.replace('qemu = "stock"', f'qemu = "{artifacts.qemus["stock"]}"').replace(
        'module = "stock"', f'module = "stock"\nkernel = "{artifacts.kernel.vmlinuz}"')
    path = tmp_path / "own.toml"
    path.write_text(text)
    scenario = load_scenario(path)
    machine = plan(scenario).prepared(artifacts).runs[0].machine
    assert machine is not None
    spec = machine.spec
    assert spec.qemu == artifacts.qemus["stock"] and spec.kernel == artifacts.kernel.vmlinuz
    from harness.guest import Guest
    with Guest(spec) as m:
        assert m.ssh.run("uname -r").stdout.strip() == artifacts.kernel.release


def test_two_shards_in_two_processes_merge_into_the_whole_plan(tmp_path, artifacts):
    """Shards 1/2 and 2/2 run at once in two processes, each with its own --out; merged,
    they are the unsharded plan: the same run ids and the same columns."""
    from harness.experiment.plan import plan
    from harness.experiment.scenario import load_scenario
    from harness.results.metrics import SUMMARY_COLUMNS
    scenario = tmp_path / "shards.toml"
    scenario.write_text(SCENARIO + arm("stock2"))
    procs = [subprocess.Popen(_harness("run", str(scenario), "--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    for p in procs:
        assert p.wait(timeout=900) == 0, p.stderr.read()
    merged = subprocess.run(_harness("merge", str(tmp_path / "all"), str(tmp_path / "s1"), str(tmp_path / "s2")),
                            capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    res = load_results(tmp_path / "all")
    want = sorted(r.run_id for r in plan(load_scenario(scenario)).runs)
    assert sorted(r["run_id"] for r in res.runs) == want == ["stock-r1", "stock-r2", "stock2-r1", "stock2-r2"]
    assert list(res.summary.columns) == SUMMARY_COLUMNS
    assert sorted(set(res.summary["run_id"])) == want


def test_guest_files_are_built_into_the_image_before_the_first_boot(tmp_path, artifacts):
    """A scenario with guest files of its own: their image is built in the build phase (the
    plan's preparation), never once a guest has booted. Measured on the real command's log
    (-v: the cache's "building" records and the runner's "booting" ones, in the order they
    happened); the file's content is new, so its image cannot come from the cache."""
    import uuid
    token = uuid.uuid4().hex
    (tmp_path / "token").write_text(token + "\n")
    scenario = tmp_path / "files.toml"
    scenario.write_text(preamble("files-before-boot", memory_mib=256, files={"/etc/bh-token": tmp_path / "token"})
                        + step("run", "token", command=f"grep -qx {token} /etc/bh-token") + arm("stock"))
    done = subprocess.run(_harness("-v", "run", str(scenario), "--out", str(tmp_path / "out")),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]   # the step found the file in the guest
    lines = done.stderr.splitlines()
    builds = [i for i, line in enumerate(lines) if "cache: building" in line]
    boots = [i for i, line in enumerate(lines) if "booting (" in line]
    assert any("cache: building initrd" in lines[i] for i in builds), "the image with the file was not built"
    assert boots and max(builds) < min(boots), "a build started after the first boot:\n" + "\n".join(
        lines[i] for i in sorted(builds + boots))
