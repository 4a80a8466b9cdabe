"""The guest's network is what the harness promises: the guest reaches nothing but itself (no
host service through the slirp gateway, not slirp's DNS, no outside address), every attempt
fails within its few seconds, and the only socket QEMU listens on is the forwarded SSH port
on 127.0.0.1. A real guest, the harness's own command line (``restrict=on``)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.guest import Guest
from harness.vm import MachineSpec

pytestmark = pytest.mark.vm

ATTEMPT_SECONDS = 3          # nc's connect timeout in the guest
LISTEN = "0A"                # TCP_LISTEN in /proc/net/tcp's st column


@pytest.fixture(scope="module")
def host_listener():
    """A service on the host's 127.0.0.1 the guest must not reach; yields (port, connections)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[tuple] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def guest(stock_image):
    with Guest(MachineSpec.for_image(stock_image)) as g:
        yield g


def test_the_guest_can_connect_to_itself(guest):
    """The check below is meaningful: nc in this guest does connect where something listens."""
    out = guest.ssh.run(f"timeout 10 nc -w {ATTEMPT_SECONDS} 127.0.0.1 22 </dev/null | head -c 64", timeout=60,
                        check=False).stdout
    assert out.startswith("SSH-"), out


def test_the_guest_reaches_no_address_but_itself(guest, host_listener):
    port, accepted = host_listener
    targets = [("10.0.2.2", port),                 # the host's 127.0.0.1 through the slirp gateway
               ("10.0.2.2", guest.machine.host_port),
               ("10.0.2.2", 22), ("10.0.2.3", 53), ("10.0.2.4", 445),   # slirp's gateway, DNS, SMB slots
               ("1.1.1.1", 80), ("8.8.8.8", 53), ("192.168.1.1", 80)]   # the outside
    for address, p in targets:
        t = time.monotonic()
        out = guest.ssh.run(f"timeout {ATTEMPT_SECONDS + 3} nc -w {ATTEMPT_SECONDS} {address} {p} "
                            f"</dev/null >/tmp/nc.out 2>&1; echo rc=$?; head -c 200 /tmp/nc.out", timeout=60,
                            check=False).stdout
        rc = int(re.search(r"rc=(\d+)", out).group(1))
        assert rc != 0, f"the guest connected to {address}:{p}: {out}"
        assert time.monotonic() - t < ATTEMPT_SECONDS + 3 + 5, f"{address}:{p}: the attempt hung"
    assert accepted == [], f"the host's 127.0.0.1:{port} accepted a connection from the guest: {accepted}"


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(int(m.group(1)))
    return inodes


def _sockets(table: str, inodes: set[int]) -> list[tuple[str, str, str]]:
    """(local address, remote address, state) of ``/proc/net/<table>`` rows with these inodes."""
    rows = []
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) > 9 and int(f[9]) in inodes:
            rows.append((f[1], f[2], f[3]))
    return rows


def test_qemu_listens_only_on_the_forwarded_port_of_127_0_0_1(guest):
    inodes = _socket_inodes(guest.pid)
    tcp = _sockets("tcp", inodes)
    listening = [local for local, _, state in tcp if state == LISTEN]
    port = guest.machine.host_port
    assert listening, f"QEMU {guest.pid} listens on nothing: {tcp}"
    for local in listening:
        address, _, hexport = local.partition(":")
        assert address == "0100007F", f"QEMU listens on {local} (not 127.0.0.1)"
        assert int(hexport, 16) == port
    assert len(listening) == 1, listening
    assert not [s for s in _sockets("tcp6", inodes) if s[2] == LISTEN], "QEMU listens on IPv6"
    for table in ("udp", "udp6"):
        bound = [local for local, _, _ in _sockets(table, inodes)]
        assert all(local.split(":")[0] in ("0100007F", "00000000000000000000000001000000") for local in bound), \
            f"QEMU has {table} sockets beyond loopback: {bound}"
