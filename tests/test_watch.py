"""What the guest's cgroup and bh-step status files say, read the way the runner reads them,
and the anonymous-memory drop rule on readings (no guest: the rule's arithmetic; the real
guests are in tests/test_workloads.py)."""

from __future__ import annotations

from harness.experiment.watch import WatchedWorkload, workload_reading
from harness.experiment.workload import StepCommand, parse_state

# The shape `state_script` prints for one step command: cgroup.events, memory.current,
# memory.stat lines, memory.events oom_kill, the PIDs, then bh-step's status lines.
BLOCK = """populated 1
frozen 0
current 70254592
anon 67108864
anon_thp 62914560
file 1048576
oom_kill 0
procs 212 230
start 205
main 205 exit 0
orphan 231 signal 9
"""


def test_a_running_detached_workload_parses():
    st = parse_state(BLOCK)
    assert st.populated and st.pids == (212, 230) and st.main_pid == 205
    assert st.main_end is not None and not st.main_end.failed
    assert st.memory is not None
    assert (st.memory.current_kib, st.memory.anon_kib, st.memory.anon_thp_kib, st.memory.file_kib) == \
        (68608, 65536, 61440, 1024)
    assert "pid 231 (left running by it) killed by signal 9 (SIGKILL)" in st.why_ended()


def test_a_removed_cgroup_reads_as_empty_and_says_what_ended():
    st = parse_state("current \nprocs\nstart 9\nmain 9 exit 7\ndone\n")
    assert not st.exists and not st.populated and st.memory is None and st.done
    assert st.why_ended() == "pid 9 (the command) exit status 7"
    assert "could not run it: cannot enter cgroup" in parse_state("error cannot enter cgroup x: EBUSY\n").why_ended()


def _workload(fraction: float) -> WatchedWorkload:
    return WatchedWorkload(StepCommand(None, "w", "tool", 1, "run"), fraction)  # type: ignore[arg-type]


def _with_anon(anon_bytes: int):
    return parse_state(BLOCK.replace("anon 67108864", f"anon {anon_bytes}"))


def test_a_drop_beyond_the_fraction_of_the_peak_fails_naming_the_numbers():
    w = _workload(0.2)
    assert w.observe(_with_anon(64 << 20), "after step 'a'") is None
    assert w.observe(_with_anon(100 << 20), "after step 'b'") is None      # growing is fine
    assert w.observe(_with_anon(81 << 20), "after step 'c'") is None       # 19% below the peak
    msg = w.observe(_with_anon(10 << 20), "after step 'd'")
    assert msg is not None and "10.0 MiB" in msg and "down from 100.0 MiB after step 'b'" in msg
    assert "lost 90%" in msg and "20%" in msg
    assert [r["anon_kib"] for r in w.readings] == [65536, 102400, 82944, 10240]


def test_a_fraction_of_one_never_fails():
    w = _workload(1.0)
    assert w.observe(_with_anon(64 << 20), "x") is None and w.observe(_with_anon(0), "y") is None


def test_the_reading_sums_the_watched_cgroups():
    a, b = _workload(0.2), WatchedWorkload(StepCommand(None, "v", "tool", 2, "background"))  # type: ignore[arg-type]
    r = workload_reading([a, b], {"step-1": _with_anon(64 << 20), "step-2": _with_anon(32 << 20)})
    assert r[("workload", "count")] == 2 and r[("workload", "anon_kib")] == 96 * 1024
    assert r[("workload:v", "anon_kib")] == 32 * 1024
    assert workload_reading([], {}) == {("workload", "count"): 0.0}


# ---- dead() and death(): when a watched workload counts as gone, and what the run says -------

def _watched(kind: str) -> WatchedWorkload:
    cmd = StepCommand(None, "held", "usemem -d 400m", 3, kind)  # type: ignore[arg-type]
    cmd.main_pid = 205
    return WatchedWorkload(cmd)


def test_a_populated_cgroup_is_alive_whatever_the_kind():
    for kind in ("run", "background"):
        assert not _watched(kind).dead(parse_state(BLOCK)), kind


def test_an_empty_cgroup_is_dead_whatever_the_kind():
    empty = parse_state(BLOCK.replace("populated 1", "populated 0").replace("procs 212 230", "procs"))
    for kind in ("run", "background"):
        assert _watched(kind).dead(empty), kind


def test_a_background_command_that_failed_is_dead_though_what_it_forked_runs():
    failed_main = parse_state(BLOCK.replace("main 205 exit 0", "main 205 exit 1"))
    killed_main = parse_state(BLOCK.replace("main 205 exit 0", "main 205 signal 15"))
    assert failed_main.populated and killed_main.populated
    assert _watched("background").dead(failed_main) and _watched("background").dead(killed_main)
    # a run step's command ends by design (its detached workload is what is watched): not dead
    assert not _watched("run").dead(failed_main)


def test_death_says_which_workload_when_how_it_ended_and_its_log_tail():
    state = parse_state(BLOCK.replace("populated 1", "populated 0").replace("procs 212 230", "procs")
                        + "orphan 212 signal 9\noom_kill 2\ndone\n")
    msg = _watched("background").death(state, "after step 'balloon 624'", "line 1\nKilled\n\n")
    first, *rest = msg.splitlines()
    assert first.startswith("background workload 'held' (`usemem -d 400m`, pid 205) is not running "
                            "after step 'balloon 624': ")
    assert "pid 212 (left running by it) killed by signal 9 (SIGKILL)" in first
    assert "the OOM killer killed 2 of its processes" in first
    assert rest == ["--- last lines of its log (/var/log/bh-steps/step-3.log) ---", "line 1", "Killed"]
    run_msg = _watched("run").death(state, "before step 'x'", "")
    assert run_msg.startswith("workload 'held' left running by its run step (`usemem -d 400m`) is not running")
