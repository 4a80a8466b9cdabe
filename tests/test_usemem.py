"""Tests for images/usemem.c (the guest-side memory hog).

The program is compiled on the host with exactly the command used for the
guest image and exercised here; assertions are made on what the kernel
reports for the processes (/proc/PID/smaps_rollup, /proc/PID/pagemap, ...),
not on canned output.  Every test kills whatever it started; an autouse
fixture additionally checks that no usemem process outlives a test.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = "images/usemem.c"
COMPILE = ["cc", "-static", "-O2", "-Wall", "-Wextra", "-o"]  # + out, SOURCE

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
# Resident memory of the process besides the region: the static binary,
# stack, libc data. Generous, but far below any region size we test with.
OVERHEAD = 4 * MiB

THROUGHPUT_RE = re.compile(
    r"^(?P<intro>read again )?(?P<bytes>\d+) bytes / (?P<usecs>\d+) usecs = "
    r"(?P<kbs>\d+) KB/s$",
    re.M,
)
PID_RE = re.compile(r"^PID (\d+)$", re.M)


# --------------------------------------------------------------------------
# helpers

def _proc_state(pid: int) -> str | None:
    """State letter from /proc/PID/stat, None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2:].split()[0]


def _stat_fields(pid: int) -> list[str]:
    data = Path(f"/proc/{pid}/stat").read_text()
    # fields after "(comm)": state ppid pgrp session ...
    return data[data.rindex(")") + 2:].split()


def is_alive(pid: int) -> bool:
    # Detached tasks are re-parented to init, which may reap them lazily:
    # a zombie counts as dead.
    return _proc_state(pid) not in (None, "Z", "X")


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.02)
    return not is_alive(pid)


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    assert wait_dead(pid), f"usemem task {pid} survived SIGKILL"


def instances(binary: Path) -> list[int]:
    """Live processes running our freshly built binary (and only it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
        except OSError:
            continue
        if exe == str(binary) and is_alive(int(entry)):
            pids.append(int(entry))
    return pids


def rss_bytes(pid: int) -> int:
    """Resident set size from smaps_rollup (exact page-table walk)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        key = "Rss:"
    except FileNotFoundError:  # very old kernels
        text = Path(f"/proc/{pid}/status").read_text()
        key = "VmRSS:"
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}")


def region_present_bits(pid: int, size: int) -> list[bool]:
    """Per-page 'present' bits (pagemap bit 63) of the anonymous VMA that
    holds the region of `size` bytes."""
    vmas = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if len(parts) == 5 and "w" in parts[1] and end - start >= size:
            vmas.append((start, end))
    assert len(vmas) == 1, f"expected one anonymous VMA >= {size}: {vmas}"
    start, end = vmas[0]
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        raw = f.read((end - start) // PAGE * 8)
    entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
    return [bool(e >> 63 & 1) for e in entries]


def _program_header_types(binary: Path) -> set[int]:
    """p_type of every program header of a little-endian ELF64 file."""
    data = binary.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return {struct.unpack_from("<I", data, phoff + i * phentsize)[0]
            for i in range(phnum)}


def run(binary: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=timeout
    )


def throughput_lines(stdout: str) -> list[dict]:
    return [
        {
            "read_again": bool(m["intro"]),
            "bytes": int(m["bytes"]),
            "usecs": int(m["usecs"]),
            "kbs": int(m["kbs"]),
        }
        for m in THROUGHPUT_RE.finditer(stdout)
    ]


class Detached:
    """Run `usemem -d ...`; always kill the tasks it reports on exit."""

    def __init__(self, binary: Path, *args: str):
        self.binary = binary
        self.args = args
        self.pids: list[int] = []

    def __enter__(self):
        before = set(instances(self.binary))
        t0 = time.monotonic()
        try:
            self.proc = run(self.binary, "-d", *self.args, timeout=60)
        finally:
            # Whatever happens, know which tasks to kill.
            self.elapsed = time.monotonic() - t0
            self.started = sorted(set(instances(self.binary)) - before)
        self.pids = [int(p) for p in PID_RE.findall(self.proc.stdout)]
        return self

    def __exit__(self, *exc):
        for pid in set(self.pids) | set(self.started):
            kill_pid(pid)
        return False


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("usemem") / "usemem"
    res = subprocess.run(
        [*COMPILE, str(out), SOURCE], cwd=REPO, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return out, res


@pytest.fixture
def usemem(build):
    binary = build[0]
    yield binary
    leftovers = instances(binary)
    for pid in leftovers:
        kill_pid(pid)
    assert not leftovers, f"test left usemem processes behind: {leftovers}"


# --------------------------------------------------------------------------
# build / usage

def test_compiles_static_without_warnings(build):
    binary, res = build
    assert res.stderr.strip() == "", res.stderr
    assert os.access(binary, os.X_OK)
    # static: no program interpreter (no PT_INTERP program header)
    assert _program_header_types(binary) and 3 not in _program_header_types(binary)


def test_help(usemem):
    res = run(usemem, "--help")
    assert res.returncode == 0
    assert "Usage" in res.stdout
    assert "PER TASK" in res.stdout  # the size semantics are documented
    res = run(usemem, "-h")
    assert res.returncode == 0 and "Usage" in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-option", "1m"],
        ["-X", "1m"],
        [],  # missing SIZE
        ["1m", "2m"],  # extra argument
        ["-n", "0", "1m"],
        ["-n", "two", "1m"],
        ["-s", "soon", "1m"],
    ],
)
def test_usage_errors_exit_2(usemem, args):
    res = run(usemem, *args)
    assert res.returncode == 2
    assert res.stderr.strip()
    assert not throughput_lines(res.stdout)


# --------------------------------------------------------------------------
# sizes

@pytest.mark.parametrize(
    "size, expected",
    [
        ("10m", 10 * MiB),
        ("10M", 10 * MiB),
        ("2048k", 2 * MiB),
        ("2048K", 2 * MiB),
        ("3145728", 3 * MiB),
        ("0x100000", 1 * MiB),  # strtoull base 0, like vm-scalability
    ],
)
def test_size_suffixes(usemem, size, expected):
    res = run(usemem, "-s", "0", size)
    assert res.returncode == 0, res.stderr
    (line,) = throughput_lines(res.stdout)
    assert line["bytes"] == expected


@pytest.mark.parametrize("size", ["1g", "1G"])
def test_size_gigabytes(usemem, size):
    # A 1 GiB region written only every 2 MiB (-j) keeps the test cheap.
    res = run(usemem, "-j", "2m", "-s", "0", size)
    assert res.returncode == 0, res.stderr
    (line,) = throughput_lines(res.stdout)
    assert line["bytes"] == 1 << 30


@pytest.mark.parametrize("size", ["16m", "16384k", str(16 * MiB)])
def test_size_is_what_becomes_resident(usemem, size):
    with Detached(usemem, "-s", "-1", size) as d:
        assert d.proc.returncode == 0, d.proc.stderr
        (pid,) = d.pids
        rss = rss_bytes(pid)
        assert 16 * MiB * 0.95 <= rss <= 16 * MiB + OVERHEAD


@pytest.mark.parametrize("size", ["10x", "10mb", "1.5m", "m", "-5m", "", "99999999999999t"])
def test_bad_size_exits_2(usemem, size):
    res = run(usemem, "-s", "0", "--", size)  # "--": "-5m" is no option
    assert res.returncode == 2
    assert "size" in res.stderr
    assert res.stdout == ""


# --------------------------------------------------------------------------
# timed (foreground) runs

def test_timed_run_prints_consistent_throughput(usemem):
    res = run(usemem, "-s", "0", "32m")
    assert res.returncode == 0, res.stderr
    (line,) = throughput_lines(res.stdout)
    assert line["bytes"] == 32 * MiB
    assert line["usecs"] > 0 and line["kbs"] > 0
    expected = line["bytes"] * 1e6 / 1024 / line["usecs"]
    assert abs(line["kbs"] - expected) <= 1 + expected * 1e-6


def test_sleep_seconds_then_exit(usemem):
    t0 = time.monotonic()
    res = run(usemem, "-s", "1", "4m")
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert 1.0 <= elapsed < 20


def test_nr_task_timed_run(usemem):
    res = run(usemem, "-n", "2", "-s", "0", "8m")
    assert res.returncode == 0, res.stderr
    lines = throughput_lines(res.stdout)
    assert len(lines) == 2
    for line in lines:
        assert line["bytes"] == 8 * MiB  # SIZE is per task
        assert line["usecs"] > 0 and line["kbs"] > 0


def test_nr_task_starts_separate_processes(usemem):
    with Detached(usemem, "-n", "2", "-s", "-1", "32m") as d:
        assert d.proc.returncode == 0, d.proc.stderr
        assert len(d.pids) == 2 and len(set(d.pids)) == 2
        assert sorted(d.pids) == d.started
        for pid in d.pids:
            assert is_alive(pid)
            rss = rss_bytes(pid)
            assert 32 * MiB * 0.95 <= rss <= 32 * MiB + OVERHEAD


@pytest.mark.parametrize(
    "opts", [["-R"], ["-a"], ["-Z"], ["-R", "-a", "-Z"], ["--random", "--malloc", "--read-again"]]
)
def test_access_options_run(usemem, opts):
    res = run(usemem, *opts, "-s", "0", "16m")
    assert res.returncode == 0, res.stderr
    lines = throughput_lines(res.stdout)
    writes = [ln for ln in lines if not ln["read_again"]]
    reads = [ln for ln in lines if ln["read_again"]]
    assert len(writes) == 1 and writes[0]["bytes"] == 16 * MiB
    read_again = "-Z" in opts or "--read-again" in opts
    assert len(reads) == (1 if read_again else 0)


@pytest.mark.parametrize("opts", [["-R"], ["-a"], ["-Z"]])
def test_access_options_touch_every_page(usemem, opts):
    # -R visits every page once (a permutation), -a/-Z keep it all resident.
    with Detached(usemem, *opts, "-s", "-1", "32m") as d:
        assert d.proc.returncode == 0, d.proc.stderr
        (pid,) = d.pids
        rss = rss_bytes(pid)
        assert 32 * MiB * 0.95 <= rss <= 32 * MiB + OVERHEAD


def test_foreground_hold_forever(usemem):
    proc = subprocess.Popen(
        [str(usemem), "-s", "-1", "16m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        rss = 0
        while time.monotonic() < deadline:
            rss = rss_bytes(proc.pid)
            if rss >= 16 * MiB * 0.95:
                break
            time.sleep(0.05)
        assert rss >= 16 * MiB * 0.95
        time.sleep(1.0)
        assert proc.poll() is None  # still holding
        assert rss_bytes(proc.pid) >= 16 * MiB * 0.95
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_foreground_tasks_die_with_parent(usemem):
    proc = subprocess.Popen(
        [str(usemem), "-n", "2", "-s", "-1", "8m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = [p for p in instances(usemem)
                        if int(_stat_fields(p)[1]) == proc.pid]
            if len(children) == 2 and all(
                rss_bytes(c) >= 8 * MiB * 0.95 for c in children
            ):
                break
            time.sleep(0.05)
        assert len(children) == 2
        proc.kill()
        proc.wait(timeout=10)
        for c in children:
            assert wait_dead(c), f"task {c} outlived its parent"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for c in children:
            kill_pid(c)


# --------------------------------------------------------------------------
# detached runs

def test_detached_returns_promptly_and_holds(usemem):
    with Detached(usemem, "-s", "-1", "64m") as d:
        # run() captured stdout/stderr through pipes: it could only return
        # because the task released them.
        assert d.proc.returncode == 0, d.proc.stderr
        assert d.elapsed < 15
        (pid,) = d.pids
        assert d.started == [pid]
        assert is_alive(pid)
        rss = rss_bytes(pid)
        assert 64 * MiB * 0.95 <= rss <= 64 * MiB + OVERHEAD

        # detached from the caller: own session, stdio on /dev/null,
        # no other inherited descriptors
        fields = _stat_fields(pid)
        assert int(fields[3]) == pid  # session id
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}")
               for fd in os.listdir(f"/proc/{pid}/fd")}
        assert fds == {0: "/dev/null", 1: "/dev/null", 2: "/dev/null"}

        # still holding a while later
        time.sleep(1.0)
        assert is_alive(pid)
        assert rss_bytes(pid) >= 64 * MiB * 0.95
    assert not is_alive(pid)


def test_detached_punch_holes_leaves_half(usemem):
    size = 64 * MiB
    with Detached(usemem, "--punch-holes", "-s", "-1", "64m") as d:
        assert d.proc.returncode == 0, d.proc.stderr
        (pid,) = d.pids
        rss = rss_bytes(pid)
        assert 0.40 * size <= rss <= 0.60 * size + OVERHEAD

        present = region_present_bits(pid, size)
        npages = size // PAGE
        # half of the region's pages are mapped ...
        assert abs(sum(present) - npages / 2) <= npages * 0.01 + 16
        # ... and they alternate with holes ("every other page")
        adjacent = sum(1 for a, b in zip(present, present[1:]) if a and b)
        assert adjacent <= npages * 0.01


def test_detached_sleep_zero_exits(usemem):
    with Detached(usemem, "-s", "0", "8m") as d:
        assert d.proc.returncode == 0, d.proc.stderr
        (pid,) = d.pids
        assert wait_dead(pid)


def test_detached_pid_file(usemem, tmp_path):
    pid_file = tmp_path / "pids"
    with Detached(usemem, "-n", "2", "-p", str(pid_file), "-s", "-1", "4m") as d:
        assert d.proc.returncode == 0, d.proc.stderr
        assert sorted(int(x) for x in pid_file.read_text().split()) == sorted(d.pids)


def test_detached_failure_exits_nonzero(usemem):
    # Far beyond any address space: mmap() fails in the task.
    with Detached(usemem, "-n", "2", "-s", "-1", "1000000g") as d:
        assert d.proc.returncode not in (0, 2)
        assert d.proc.stderr.strip()
        assert d.pids == []
    for pid in d.started:
        assert not is_alive(pid)
