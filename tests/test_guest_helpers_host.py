"""The two guest helpers besides usemem, compiled on the host with the image's own flags and
run here: ``images/bh-step.c`` (a step command in its own cgroup, how each of its processes
ended) and ``images/framemap.c`` (what each 2 MiB frame holds, from /proc/kpageflags).

Assertions are on what the kernel says (the cgroup's cgroup.procs, /proc/self/pagemap) and
on the harness's own parsers of their output (harness.experiment.workload.parse_state,
harness.probes.guestmap.parse), so a change to a helper's output that its parser does not
follow fails here, not in a guest. bh-step needs a cgroup v2 hierarchy it may write (root);
framemap needs root (kpageflags): without either the tests skip saying so.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from harness.artifacts.initramfs import USEMEM_CFLAGS
from harness.experiment.workload import parse_state
from harness.probes import guestmap

REPO = Path(__file__).resolve().parents[1]
HUGE = 2 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def _compile(tmp: Path, source: str) -> Path:
    cc = shutil.which("cc") or pytest.skip("no C compiler (cc) on this host")
    out = tmp / Path(source).stem
    subprocess.run([cc, *USEMEM_CFLAGS, "-o", str(out), str(REPO / source)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def bh_step(tmp_path_factory) -> Path:
    return _compile(tmp_path_factory.mktemp("bh-step"), "images/bh-step.c")


def _cgroup2_root() -> Path:
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mnt, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return Path(mnt)
    pytest.skip("no cgroup v2 hierarchy mounted on this host")


@pytest.fixture
def cgroups(tmp_path):
    """A parent cgroup of the test's own (removed after, once its processes are gone)."""
    if os.geteuid() != 0:
        pytest.skip("bh-step makes cgroups: root only")
    parent = _cgroup2_root() / f"bh-test-{os.getpid()}-{tmp_path.name}"
    parent.mkdir()
    yield parent
    for child in sorted(parent.iterdir(), reverse=True):
        if child.is_dir():
            for pid in (child / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while (child / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            child.rmdir()
    parent.rmdir()


def _status(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _run(bh_step: Path, cgroup: Path, status: Path, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(bh_step), str(cgroup), str(status), command], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def test_bh_step_records_the_command_s_end_and_the_harness_reads_it(bh_step, cgroups, tmp_path):
    status = tmp_path / "status"
    proc = _run(bh_step, cgroups / "step-1", status, "echo out; echo err >&2; exit 3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "out\n" and proc.stderr == "err\n"     # the stdio it was given
    lines = _status(status)
    assert lines[0].startswith("start ") and lines[-1] == "done"
    main_pid = int(lines[0].split()[1])
    assert lines[1] == f"main {main_pid} exit 3"
    state = parse_state("\n".join(lines))
    assert state.main_pid == main_pid and state.done and state.main_end is not None
    assert state.main_end.failed and "exit status 3" in state.why_ended()


def test_bh_step_waits_for_what_the_command_left_and_says_how_each_ended(bh_step, cgroups, tmp_path):
    status, pidfile = tmp_path / "status", tmp_path / "orphan.pid"
    cg = cgroups / "step-1"
    runner = subprocess.Popen([str(bh_step), str(cg), str(status),
                               f"sleep 60 & echo $! > {pidfile}; sleep 0.2 & exit 0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        orphan = int(pidfile.read_text())
        # the workload it left runs in the step's cgroup, bh-step itself outside it
        assert orphan in {int(p) for p in (cg / "cgroup.procs").read_text().split()}
        assert str(runner.pid) not in (cg / "cgroup.procs").read_text().split()
        runner.send_signal(signal.SIGHUP)        # the SSH channel closing: ignored
        time.sleep(0.5)
        assert runner.poll() is None and "done" not in _status(status)
        os.kill(orphan, signal.SIGKILL)
        assert runner.wait(10) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    state = parse_state("\n".join(_status(status)))
    assert state.done and state.main_end is not None and not state.main_end.failed
    orphans = {e.pid: e for e in state.ends if e.role == "orphan"}
    assert orphans[orphan].how == "signal" and orphans[orphan].value == signal.SIGKILL
    assert len(orphans) == 2 and all(e.how == "exit" and e.value == 0 for p, e in orphans.items() if p != orphan)
    assert "killed by signal 9 (SIGKILL)" in state.why_ended()


@pytest.mark.parametrize("case", ["exists", "no parent", "not a cgroup", "usage"])
def test_bh_step_refuses_with_an_error_line_and_its_own_exit_status(bh_step, cgroups, tmp_path, case):
    status = tmp_path / "status"
    if case == "exists":
        (cgroups / "step-1").mkdir()
        cg = cgroups / "step-1"
    elif case == "no parent":
        cg = cgroups / "missing" / "step-1"
    else:
        cg = tmp_path / "plain-folder"           # a folder, but no cgroup.procs to write
    argv = [str(bh_step), str(cg), str(status)] + ([] if case == "usage" else ["touch ran"])
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 125, proc
    assert not (tmp_path / "ran").exists(), "the command ran though bh-step refused"
    if case == "usage":
        assert "usage: bh-step" in proc.stderr
        return
    state = parse_state("\n".join(_status(status)))
    assert state.error and ("mkdir" in state.error or "cannot enter cgroup" in state.error), state
    assert state.why_ended().startswith("bh-step could not run it")


# ---- framemap ------------------------------------------------------------------------------

def _pfn(address: int) -> int:
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(address // PAGE * 8)
        entry = struct.unpack("<Q", f.read(8))[0]
    assert entry >> 63, "page not present"
    return entry & ((1 << 55) - 1)


def test_framemap_classifies_this_process_s_huge_and_4k_pages_and_the_parser_reads_it(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("framemap reads /proc/kpageflags and PFNs from pagemap: root only")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    framemap = _compile(tmp_path, "images/framemap.c")
    # a huge page (if the host gives one) and 4 KiB anonymous pages, both touched and pinned in place
    m = mmap.mmap(-1, 3 * HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = (-base) % HUGE
    small = mmap.mmap(-1, 64 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    small_base = ctypes.addressof(ctypes.c_char.from_buffer(small))
    try:
        m.madvise(mmap.MADV_HUGEPAGE, off, HUGE)
        small.madvise(mmap.MADV_NOHUGEPAGE)
        for p in range(0, HUGE, PAGE):
            m[off + p] = 1
        for p in range(0, 64 * PAGE, PAGE):
            small[p] = 1
        huge_pfn, small_pfn = _pfn(base + off), _pfn(small_base)
        with open("/proc/self/smaps") as f:
            smaps = f.read()
        out = subprocess.run([str(framemap)], capture_output=True, text=True, timeout=120, check=True).stdout
        huge_pfn_after, small_pfn_after = _pfn(base + off), _pfn(small_base)
    finally:
        del base, small_base
        m.close()
        small.close()
    frames = guestmap.parse(out)
    end = int(out.rstrip().splitlines()[-1].split()[1])
    assert end > 0 and max(frames) < end and len(frames) >= end * 0.5
    assert all(int(c.sum()) == guestmap.FRAME_PAGES for c in frames.values())
    cls = {name: i for i, name in enumerate(guestmap.GUEST_CLASSES)}
    if small_pfn == small_pfn_after:   # not migrated meanwhile (compaction)
        assert frames[small_pfn >> 9][cls["anon"]] >= 1, frames[small_pfn >> 9]
    is_huge = "[never]" not in thp and huge_pfn % 512 == 0 and huge_pfn_after == huge_pfn and "AnonHugePages:" in smaps
    if is_huge and frames[huge_pfn >> 9][cls["thp"]] != guestmap.FRAME_PAGES:
        pytest.fail(f"frame {huge_pfn >> 9} of this process's huge page: {frames[huge_pfn >> 9].tolist()}")
    if not is_huge:
        pytest.skip("the host backed the mapping with 4 KiB pages: the huge page case was not tried")
