"""The sampler without a guest: its guest reading parses what the guest's command prints
(here the same command run on the host, whose /proc has the same formats), the balloon's
debugfs counters after the mark, and its loops keep sampling through a failing read."""

from __future__ import annotations

import os
import subprocess
import time

from harness.errors import GuestCommandError
from harness.probes.sampler import Sampler, read_guest
from harness.results.metrics import GUEST_COUNTERS


def _sh(command: str) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout


def _buddy_order9(text: str) -> int:
    """Free 2 MiB blocks, counted independently: 'Node 0, zone Normal c0 c1 ... c10'."""
    total = 0
    for line in text.splitlines():
        if line.startswith("Node ") and ", zone " in line:
            counts = [int(x) for x in line.split(",", 1)[1].split()[2:]]
            total += sum(c << (order - 9) for order, c in enumerate(counts) if order >= 9)
    return total


def test_guest_reading_parses_the_commands_output():
    commands: list[str] = []
    captured: dict[str, str] = {}

    def run(command: str) -> str:
        commands.append(command)
        captured["out"] = _sh(command)
        return captured["out"]

    r = read_guest(run)
    assert len(commands) == 1, "one round trip per reading"
    out = captured["out"]
    meminfo = {l.split(":")[0]: int(l.split()[1]) for l in out.splitlines() if l.endswith(" kB")}
    assert r[("guest", "mem_total_kib")] == meminfo["MemTotal"]
    assert r[("guest", "anon_kib")] == meminfo["AnonPages"]
    assert r[("guest", "anon_huge_kib")] == meminfo["AnonHugePages"]
    assert r[("guest", "free_order9_blocks")] == _buddy_order9(out)
    vmstat = {l.split()[0]: int(l.split()[1]) for l in out.splitlines() if len(l.split()) == 2
              and l.split()[1].isdigit() and ":" not in l}
    for name in GUEST_COUNTERS:
        assert r.get(("guest", name)) == vmstat.get(name), name
    assert not any(m.startswith("balloon_") and m[8:] in ("small", "huge", "order") for _, m in r)


def test_design_balloon_counters_come_from_after_the_mark():
    def run(command: str) -> str:
        mark = command.split("echo ", 1)[1].split(";", 1)[0]
        return _sh("cat /proc/meminfo /proc/buddyinfo /proc/vmstat") + f"{mark}\nsmall 1536\nhuge 177\norder 9\n"

    r = read_guest(run)
    assert (r[("guest", "balloon_small")], r[("guest", "balloon_huge")], r[("guest", "balloon_order")]) == \
        (1536, 177, 9)
    assert r[("guest", "mem_total_kib")] > 0


def test_sampling_goes_on_through_failing_guest_reads():
    calls = {"n": 0}

    def flaky(command: str) -> str:
        calls["n"] += 1
        if calls["n"] % 2:
            raise GuestCommandError("ssh: connection reset", command)
        return _sh(command)

    s = Sampler(os.getpid(), lambda: 512.0, flaky, host_hz=20, guest_seconds=0.1)
    s.phase = "a"
    with s:
        time.sleep(1.0)
        s.phase = "b"
        time.sleep(0.5)
    phases = {ph for _, ph, *_ in s.rows}
    assert phases == {"a", "b"}
    host_a = [t for t, ph, src, m, _ in s.rows if (src, m) == ("qemu", "rss_kib") and ph == "a"]
    assert len(host_a) >= 5, "the host loop samples at its own rate"
    assert any(src == "guest" for _, _, src, _, _ in s.rows), "the good guest reads were recorded"
    assert s.errors and all(e.startswith("guest: ") for e in s.errors)
    assert all(v == 512.0 for _, _, src, m, v in s.rows if (src, m) == ("balloon", "actual_mib"))
    assert not any(t.is_alive() for t in s._threads)
