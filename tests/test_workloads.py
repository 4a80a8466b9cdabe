"""Workloads the harness watches whatever they do, and files of the user's own in the guest
image, on real guests: a workload that detaches itself is kept and measured; one that dies
or silently frees its memory fails the run naming it, never silently.

One scenario, four boots of one arm (``BH_REP`` picks each boot's case):
rep 1 all is well: a tool that forks away with a plain fork() and writes after its parent
exited, a double-forking daemon (its stdio closed), both as `run` steps, beside a
`background` usemem; a `stop` step ends the daemon. rep 2: the background workload ends at
once (exit 7). rep 3: the forked-away tool is killed mid-run (SIGKILL from a later step).
rep 4: it silently frees most of its memory (SIGUSR1 tells it when), and so the guest falls
below holds_mib too.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_scenario_cli
from toml_text import arm, preamble, step

from harness.errors import UnsupportedGuest
from harness.experiment.plan import Machine, plan
from harness.experiment.runner import Progress, execute_run
from harness.experiment.scenario import load_scenario
from harness.results import ResultsStore, load_results

pytestmark = pytest.mark.vm

HELLO_C = r"""
#include <stdio.h>
int main(void) { puts("hello from a file of the user's own"); return 0; }
"""

# bh-forker [-d] [-p PIDFILE] MIB: hands its work to a child and exits at once. Plain:
# fork(); the parent prints and exits; the child waits a second (its parent and the command
# are gone by then), writes MIB of anonymous memory, prints to the stdout it was given (the
# SSH channel, had the harness given it that), writes its PID to PIDFILE and holds the
# memory. -d: a daemon: fork, setsid, fork again, stdio on /dev/null. On SIGUSR1 the holder
# frees 90% of its memory without a word and keeps running (the scenario sends it: a free
# at a known moment, after the harness has seen the memory held).
FORKER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
static volatile sig_atomic_t free_now;
static void on_usr1(int sig) { (void)sig; free_now = 1; }
int main(int argc, char **argv) {
    int opt, daemonize = 0; const char *pidfile = NULL;
    while ((opt = getopt(argc, argv, "dp:")) != -1) {
        if (opt == 'd') daemonize = 1;
        else if (opt == 'p') pidfile = optarg;
        else return 2;
    }
    if (optind >= argc) return 2;
    size_t bytes = (size_t)atol(argv[optind]) << 20;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid > 0) { printf("parent: forked %d, exiting\n", (int)pid); return 0; }
    if (daemonize) {
        setsid();
        if (fork() != 0) _exit(0);
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0); dup2(fd, 1); dup2(fd, 2);
    }
    signal(SIGUSR1, on_usr1);
    sleep(1);
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    memset(p, 0x5a, bytes);
    printf("child %d: wrote %zu MiB after my parent exited\n", (int)getpid(), bytes >> 20);
    fflush(stdout);
    if (pidfile) { FILE *f = fopen(pidfile, "w"); if (f) { fprintf(f, "%d\n", (int)getpid()); fclose(f); } }
    for (;;) {
        pause();
        if (free_now) { madvise(p, bytes / 10 * 9, MADV_DONTNEED); free_now = 0; }
    }
}
"""

FORKER_MIB, DAEMON_MIB, BG_MIB = 64, 48, 200   # usemem --punch-holes keeps half of BG_MIB

SIGNAL = """. /run/bh-run.env; i=0
while [ ! -s /run/forker.pid ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done
case $BH_REP in 3) kill -KILL $(cat /run/forker.pid);; 4) kill -USR1 $(cat /run/forker.pid);; esac"""


def scenario_text(hello: Path, forker: Path) -> str:
    """Four repetitions of one stock arm: a guest tool of our own, a background workload that
    dies in rep 2, a forker killed (rep 3) or signalled (rep 4), a daemon stopped at the end."""
    return (preamble("workloads", repetitions=4, files={"/usr/bin/bh-hello": hello, "/usr/bin/bh-forker": forker})
            + step("run", "tool", command="bh-hello | grep -q 'user.s own'")
            + step("background", "wl", command=". /run/bh-run.env; if [ $BH_REP = 2 ]; then echo dying; exit 7; fi; "
                                               f"usemem --punch-holes -s -1 {BG_MIB}m",
                   ready="punch holes done", holds_mib=80)
            + step("run", "forker", command=f"bh-forker -p /run/forker.pid {FORKER_MIB}")
            + step("run", "daemon", command=f"bh-forker -d {DAEMON_MIB}")
            + step("sleep", "wait", seconds=4)
            + step("run", "signal", command=SIGNAL, holds_mib=180)
            + step("balloon", "balloon 400", target_mib=400)
            + step("stop", "stop daemon", workload="daemon")
            + step("measure", "after stop")
            + arm("stock"))


@pytest.fixture(scope="module")
def workload_results(tmp_path_factory, artifacts):
    tmp = tmp_path_factory.mktemp("workloads")
    for name, src in (("hello", HELLO_C), ("forker", FORKER_C)):
        (tmp / f"{name}.c").write_text(src)
        subprocess.run(["cc", "-static", "-O2", "-o", str(tmp / name), str(tmp / f"{name}.c")], check=True)
    return run_scenario_cli(tmp, scenario_text(tmp / "hello", tmp / "forker"))


def _row(summary: pd.DataFrame, run_id: str, step: str) -> pd.Series:
    return summary[(summary["run_id"] == run_id) & (summary["step"] == step)].iloc[0]


def _workload_anon_kib(samples: pd.DataFrame, label: str, phase: str) -> float:
    s = samples[(samples["source"] == f"workload:{label}") & (samples["metric"] == "anon_kib")
                & (samples["phase"] == phase)]
    return float(s.sort_values("t")["value"].iloc[-1])


def test_a_healthy_workload_is_kept_and_its_log_copied(workload_results):
    proc, out = workload_results
    res = load_results(out)
    assert [r["run_id"] for r in res.runs] == ["stock-r1"], proc.stderr
    row = _row(res.summary, "stock-r1", "balloon 400")
    assert row["guest_anon_after_kib"] >= 180 * 1024
    assert row["reached"]
    log = (out / "runs/stock-r1/steps/wl.log").read_text()
    assert "punch holes done" in log
    info = res.runs[0]
    assert info["workloads"][0]["pid"] > 1 and info["qemu_ending"]["how"] == "quit"


def test_a_tool_that_forks_away_stays_alive_and_is_measured(workload_results):
    """The plain-fork tool's child wrote after its parent (and the step's command) had
    returned: it printed into the step's log, still ran at the end, and its cgroup held
    what it wrote, step after step."""
    _, out = workload_results
    res = load_results(out)
    log = (out / "runs/stock-r1/steps/forker.log").read_text()
    assert "parent: forked" in log and "wrote 64 MiB after my parent exited" in log
    forker = next(w for w in res.runs[0]["workloads"] if w["label"] == "forker")
    assert forker["kind"] == "run" and forker["stopped_at"] is None
    # its own memory, from its cgroup, at the step boundaries: what it wrote (its first
    # readings may come before it wrote: it waits a second after its parent exited)
    held = [r["anon_kib"] for r in forker["readings"]]
    assert max(held) >= 0.95 * FORKER_MIB * 1024 and held[-1] >= 0.95 * FORKER_MIB * 1024
    assert _workload_anon_kib(res.samples, "forker", "after stop") >= 0.95 * FORKER_MIB * 1024


def test_watched_memory_is_in_the_summary_per_step(workload_results):
    _, out = workload_results
    s = load_results(out).summary
    row = _row(s, "stock-r1", "balloon 400")
    assert row["workloads_after"] == 3   # wl, forker, daemon
    held = row["workload_anon_after_kib"]
    assert held >= 0.9 * (BG_MIB / 2 + FORKER_MIB + DAEMON_MIB) * 1024
    assert row["workload_current_after_kib"] >= held
    assert 0 <= row["workload_anon_thp_after_kib"] <= held
    # the guest-wide AnonPages holds the workloads' own memory and a little more
    assert row["guest_anon_after_kib"] >= 0.95 * held
    assert pd.isna(_row(s, "stock-r1", "tool")["workload_anon_after_kib"])   # nothing watched yet


def test_a_double_forking_daemon_is_watched_and_stop_ends_it(workload_results):
    _, out = workload_results
    res = load_results(out)
    daemon = next(w for w in res.runs[0]["workloads"] if w["label"] == "daemon")
    assert daemon["stopped_at"] == "stop daemon"
    assert max(r["anon_kib"] for r in daemon["readings"]) >= 0.95 * DAEMON_MIB * 1024
    s = res.summary
    before, after = _row(s, "stock-r1", "balloon 400"), _row(s, "stock-r1", "after stop")
    assert before["workloads_after"] == 3 and after["workloads_after"] == 2
    # the guest's own AnonPages: beside the watched workloads' cgroups it held the daemon's
    # memory before the stop step and holds nothing of it after (a few MiB of shells and sshd)
    assert before["guest_anon_after_kib"] - before["workload_anon_after_kib"] < 8 * 1024
    assert after["guest_anon_after_kib"] - after["workload_anon_after_kib"] < 8 * 1024
    assert "daemon" not in set(res.samples[res.samples["phase"] == "after stop"]["source"].str[9:])


def test_user_file_in_the_image_ran(workload_results):
    _, out = workload_results
    s = load_results(out).summary
    assert "tool" in set(s[s["run_id"] == "stock-r1"]["step"])  # the step `bh-hello | grep` passed


def test_dead_workload_fails_the_run_with_status_and_log(workload_results):
    proc, out = workload_results
    err = (out / "runs/stock-r2/error.txt").read_text()
    assert "WorkloadDied" in err and "exit status 7" in err and "dying" in err
    # what the run measured before it failed is kept beside the error, not as a result
    partial = pd.read_csv(out / "runs/stock-r2/partial-summary.csv")
    assert list(partial["step"]) == ["tool"]
    assert (out / "runs/stock-r2/dmesg.log").stat().st_size > 0


def test_a_forked_away_tool_killed_mid_run_fails_the_run_naming_it(workload_results):
    _, out = workload_results
    err = (out / "runs/stock-r3/error.txt").read_text()
    assert err.startswith("WorkloadDied")
    assert "workload 'forker' left running by its run step" in err
    assert "after step 'signal'" in err and "killed by signal 9 (SIGKILL)" in err
    assert "wrote 64 MiB" in err   # its log tail
    partial = pd.read_csv(out / "runs/stock-r3/partial-summary.csv")
    assert list(partial["step"]) == ["tool", "wl", "forker", "daemon", "wait"]


def test_a_workload_that_silently_frees_its_memory_fails_naming_the_numbers(workload_results):
    _, out = workload_results
    err = (out / "runs/stock-r4/error.txt").read_text()
    assert err.startswith("GuestStateError")
    m = re.search(r"workload 'forker' left running by its run step \(`[^`]*`\) holds ([\d.]+) MiB of anonymous "
                  r"memory after step '([^']+)', down from ([\d.]+) MiB", err)
    assert m, err
    now, peak = float(m.group(1)), float(m.group(3))
    assert peak >= 0.95 * FORKER_MIB and now < 0.8 * peak   # the numbers are the cgroup's, as measured
    assert "anon_drop_fraction" in err
    assert "holds_mib" in err   # the explicit floor names its own numbers beside it


def test_command_exits_nonzero_naming_the_failed_runs(workload_results):
    proc, _ = workload_results
    assert proc.returncode == 1
    assert "3 run(s) failed: stock-r2, stock-r3, stock-r4" in proc.stderr


def test_a_guest_kernel_without_memcg_is_refused_at_boot(tmp_path, artifacts):
    """The runner's own boot path, on a kernel whose memory controller is switched off
    (``cgroup_disable=memory``): refused before the first step, saying why."""
    path = tmp_path / "scenario.toml"
    path.write_text('name = "no-memcg"\n[vm]\nmemory_mib = 256\n'
                    '[[steps]]\nkind = "run"\nlabel = "never"\ncommand = "true"\n'
                    '[[arms]]\nname = "stock"\nqemu = "stock"\nmodule = "stock"\n')
    scenario = load_scenario(path)
    run = plan(scenario).prepared(artifacts).runs[0]
    assert run.machine is not None
    spec = dataclasses.replace(run.machine.spec, append=f"{run.machine.spec.append} cgroup_disable=memory".strip())
    run = dataclasses.replace(run, machine=Machine(spec, run.machine.mechanism, run.machine.module_sha256))
    store = ResultsStore(tmp_path / "out")
    with pytest.raises(UnsupportedGuest, match="no memory controller.*cgroup_disable=memory"):
        execute_run(scenario, run, 1, store, Progress(1))
    assert not (store.run_dir(run.run_id) / "steps").exists()   # no step ran
