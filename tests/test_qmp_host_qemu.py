"""``harness.vm.qmp`` against the host's real QEMU with no guest (``-machine none``): answers,
QEMU's own errors, a QEMU that stops answering (timeouts), one that dies (a lost connection),
and a socket that is no QMP at all. A second or so: no guest boots, nothing is built."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from harness.artifacts.qemu import stock_qemu
from harness.errors import QMPError
from harness.vm.qmp import QMPConnection


@pytest.fixture
def qemu():
    """A guestless QEMU with QMP on one end of a socketpair, as Machine starts it; yields
    (process, connection)."""
    binary = stock_qemu()
    if not os.access(binary, os.X_OK):
        pytest.skip(f"no host QEMU at {binary} (apt-get install qemu-system-x86)")
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([str(binary), "-machine", "none", "-nodefaults", "-display", "none",
                             "-chardev", f"socket,id=qmp,fd={theirs.fileno()}", "-mon", "chardev=qmp,mode=control"],
                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    theirs.close()
    conn = None
    try:
        conn = QMPConnection(ours, name="test", timeout=60)
        yield proc, conn
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(30)
        if conn:
            conn.close()
        ours.close()


def test_commands_answer_and_qemus_errors_name_the_command(qemu):
    _, conn = qemu
    version = conn.execute("query-version")
    assert version["qemu"]["major"] >= 7
    with pytest.raises(QMPError, match="no-such-command") as info:
        conn.execute("no-such-command")
    assert info.value.command == "no-such-command" and "CommandNotFound" in str(info.value)


def test_a_qemu_that_stops_answering_is_a_timeout_then_answers_again(qemu):
    proc, conn = qemu
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        with pytest.raises(QMPError, match="query-status got no answer within 1s"):
            conn.execute("query-status", timeout=1.0)
        assert time.monotonic() - t < 30
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert conn.execute("query-status", timeout=60)["status"]   # the late answer did not derail the next one


def test_a_qemu_that_dies_is_a_lost_connection_and_close_still_works(qemu):
    proc, conn = qemu
    proc.kill()
    proc.wait(30)
    with pytest.raises(QMPError, match="query-status: connection to QEMU lost"):
        conn.execute("query-status", timeout=30)
    conn.close()
    conn.close()   # twice: nothing left to close, no error


def _until(conn: QMPConnection, name: str, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not conn.events(name) and time.monotonic() < deadline:
        time.sleep(0.02)
    return conn.events(name)


def test_events_are_collected_while_nobody_waits(qemu):
    proc, conn = qemu
    conn.execute("stop")
    assert [e["event"] for e in _until(conn, "STOP")] == ["STOP"]
    assert conn.events("RESUME") == []
    conn.execute("quit")
    assert _until(conn, "SHUTDOWN")
    assert [e["event"] for e in conn.events()][-2:] == ["STOP", "SHUTDOWN"]
    assert all(isinstance(e["time"], float) for e in conn.events())
    assert proc.wait(30) == 0


def test_a_socket_that_is_not_qmp_fails_the_handshake():
    ours, theirs = socket.socketpair()
    theirs.sendall(b"SSH-2.0-dropbear\r\n")
    theirs.close()
    try:
        with pytest.raises(QMPError, match="QMP handshake failed"):
            QMPConnection(ours, name="not-qmp", timeout=30)
    finally:
        ours.close()
