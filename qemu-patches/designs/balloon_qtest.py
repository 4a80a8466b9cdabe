"""Guest-less qtest driver for virtio-balloon-pci, shared by the design checks.

Adapted from ../verify_thp_order.py (same approach: -accel qtest, a legacy
virtio-pci balloon programmed by hand, virtqueues laid out in guest RAM,
optional strace of madvise/fallocate), generalised to any number of
virtqueues, bulk PFN buffers (b64write), a modern-interface feature probe
and per-range attribution of the madvise calls seen by strace.

Used by fallback/verify_fallback.py and host-pbp/verify_host_pbp.py.
"""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import time

KiB = 1 << 10
MiB = 1 << 20
THP = 2 * MiB
PAGE = 4 * KiB
BAR = 0xC000                 # legacy virtio I/O BAR we assign
MMIO_BAR = 0xE0000000        # modern virtio MMIO BAR we assign (probe only)
SLOT = 4                     # PCI slot of the balloon
CFG = 20                     # legacy device config offset (MSI-X off)
QSIZE = 128
QMAX = 1024                  # VIRTQUEUE_MAX_SIZE: the largest ring a queue can report
# Ring of queue q at RINGS + q * QSPAN: room for a legacy ring of QMAX entries (desc 16 KiB,
# avail, used at the next 4 KiB: 32 KiB). The queue size is read from the device, and QEMU
# 10.0.13 gives every queue QMAX entries whatever the device asks for (see ring_span()); a
# 16 KiB spacing made queue q's descriptor table overwrite queue q-1's avail ring there.
QSPAN = 0x8000
RINGS = 0x100000             # 7 queues: up to 0x138000
PFNBUF = 0x140000            # PFN buffers (up to 0x40000 bytes)

failures = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class QTest:
    def __init__(self, sock):
        self.f = sock.makefile("rw", buffering=1)

    def cmd(self, line):
        self.f.write(line + "\n")
        self.f.flush()
        while True:
            resp = self.f.readline().strip()
            if resp.startswith("IRQ"):
                continue
            if not resp.startswith("OK"):
                raise RuntimeError(f"qtest {line[:80]!r} -> {resp!r}")
            parts = resp.split()
            return int(parts[1], 16) if len(parts) > 1 else None

    def pci_w32(self, reg, val):
        self.cmd(f"outl 0xcf8 {0x80000000 | (SLOT << 11) | reg:#x}")
        self.cmd(f"outl 0xcfc {val:#x}")

    def pci_r32(self, reg):
        self.cmd(f"outl 0xcf8 {0x80000000 | (SLOT << 11) | reg:#x}")
        return self.cmd("inl 0xcfc")

    def pci_r8(self, reg):
        return (self.pci_r32(reg & ~3) >> (8 * (reg & 3))) & 0xff

    def read_bytes(self, addr, size):
        self.f.write(f"b64read {addr:#x} {size:#x}\n")
        self.f.flush()
        while True:
            resp = self.f.readline().split()
            if resp and resp[0] == "IRQ":
                continue
            break
        if resp[0] != "OK":
            raise RuntimeError(f"qtest b64read -> {resp!r}")
        return base64.b64decode(resp[1])

    def write_bytes(self, addr, data):
        b64 = base64.b64encode(data).decode()
        self.cmd(f"b64write {addr:#x} {len(data):#x} {b64}")


class QMP:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rw", buffering=1)
        json.loads(self.f.readline())            # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error']}")
            return r["return"]


class Vm:
    def __init__(self, qemu, devopts, ram, use_strace=False, legacy_only=True):
        self.tmp = tempfile.mkdtemp(prefix="balqt.")
        qt_path = os.path.join(self.tmp, "qtest.sock")
        qmp_path = os.path.join(self.tmp, "qmp.sock")
        self.log = os.path.join(self.tmp, "guest_errors.log")
        self.strace_out = os.path.join(self.tmp, "strace.out")
        self.use_strace = use_strace
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(qt_path)
        srv.listen(1)
        dev = f"virtio-balloon-pci,id=bal,addr={SLOT:#x}.0"
        if legacy_only:
            dev += ",disable-modern=on"
        if devopts:
            dev += "," + devopts
        argv = [qemu, "-machine", "pc", "-accel", "qtest", "-nodefaults",
                "-display", "none", "-m", f"{ram // MiB}M",
                "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
                "-qtest", f"unix:{qt_path}", "-qtest-log", "/dev/null",
                "-qmp", f"unix:{qmp_path},server=on,wait=off",
                "-d", "guest_errors", "-D", self.log, "-device", dev]
        if use_strace:
            argv = ["strace", "-f", "-e", "trace=madvise,fallocate",
                    "-o", self.strace_out] + argv
        self.errf = open(os.path.join(self.tmp, "stderr.log"), "w+")
        self.proc = subprocess.Popen(argv, stderr=self.errf, text=True)
        srv.settimeout(20)
        try:
            conn, _ = srv.accept()
            conn.settimeout(30)   # a hung device (e.g. a looping PFN) fails
            self.qt = QTest(conn)
            for _ in range(100):
                if os.path.exists(qmp_path):
                    break
                time.sleep(0.1)
            self.qmp = QMP(qmp_path)
        except (OSError, ValueError) as e:
            time.sleep(0.5)
            self.errf.seek(0)
            raise RuntimeError(f"QEMU did not start ({e}): "
                               f"{self.errf.read().strip()}") from None
        self.pid = self.qemu_pid()
        self.ram_start, self.ram_end = self.smaps()[:2]

    def qemu_pid(self):
        if not self.use_strace:
            return self.proc.pid
        for _ in range(50):
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)],
                                 capture_output=True, text=True).stdout.split()
            if out:
                return int(out[0])
            time.sleep(0.1)
        return self.proc.pid

    def close(self):
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errf.seek(0)
        return self.errf.read()

    def smaps(self):
        """(start, end, Rss kB, AnonHugePages kB) of the guest RAM mapping,
        i.e. the largest mapping of the QEMU process."""
        maps, cur = [], None
        with open(f"/proc/{self.pid}/smaps") as f:
            for line in f:
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
                if m:
                    cur = [int(m.group(1), 16), int(m.group(2), 16), 0, 0]
                    maps.append(cur)
                elif line.startswith("Rss:"):
                    cur[2] = int(line.split()[1])
                elif line.startswith("AnonHugePages:"):
                    cur[3] = int(line.split()[1])
        return max(maps, key=lambda m: m[1] - m[0])

    def rss_kb(self):
        return self.smaps()[2]

    def guest_errors(self):
        with open(self.log) as f:
            return f.read()

    def madvise_calls(self):
        """After close(): [(guest-physical offset, size, advice)] of the
        madvise calls on guest RAM (pc: RAM below 4G is gpa == offset), in
        order.  glibc's madvise on its own heaps/stacks is filtered out."""
        with open(self.strace_out) as f:
            st = f.read()
        # No closing parenthesis: with -f, strace splits a call that another thread
        # interrupts into "madvise(0x..., 4096, MADV_DONTNEED <unfinished ...>" and a
        # later "<... madvise resumed>) = 0" line.
        calls = re.findall(r"madvise\((0x[0-9a-f]+), (\d+), (MADV_\w+)", st)
        return [(int(a, 16) - self.ram_start, int(n), adv) for a, n, adv in calls
                if self.ram_start <= int(a, 16) < self.ram_end and
                adv in ("MADV_DONTNEED", "MADV_WILLNEED", "MADV_REMOVE")]

    def fallocate_calls(self):
        with open(self.strace_out) as f:
            return re.findall(r"fallocate\(.*", f.read())


class Balloon:
    """Minimal legacy virtio-pci balloon driver over qtest.

    queues: the queue numbers to set up (rings in guest RAM);
    ack: the device feature bits the driver acks (masked by the offer)."""

    def __init__(self, vm, ack_bits=(), queues=(0, 1)):
        self.vm = vm
        self.qt = vm.qt
        self.ack_bits = ack_bits
        self.queues = queues
        self.init()

    def init(self):
        qt = self.qt
        idv = qt.pci_r32(0)
        assert idv == 0x10021AF4, f"no legacy virtio-balloon at slot {SLOT}: {idv:#x}"
        qt.cmd(f"memset {PFNBUF:#x} 0x1000 0")     # fault the buffer in once
        qt.pci_w32(0x10, BAR | 1)                # BAR0: I/O
        qt.pci_w32(0x04, 0x7)                    # IO + MEM + bus master
        qt.cmd(f"outb {BAR + 0x12:#x} 0")         # reset
        qt.cmd(f"outb {BAR + 0x12:#x} 3")         # ACK | DRIVER
        self.host_features = qt.cmd(f"inl {BAR:#x}")
        feats = 0
        for b in self.ack_bits:
            feats |= 1 << b
        self.guest_features = feats & self.host_features
        qt.cmd(f"outl {BAR + 4:#x} {self.guest_features:#x}")
        self.used_idx = {}
        self.avail_idx = {}
        for q in self.queues:
            base = RINGS + q * QSPAN
            qt.cmd(f"memset {base:#x} {QSPAN:#x} 0")
            qt.cmd(f"outw {BAR + 0x0e:#x} {q}")
            n = qt.cmd(f"inw {BAR + 0x0c:#x}")
            assert 1 <= n <= QMAX, (q, n)
            qt.cmd(f"outl {BAR + 8:#x} {base >> 12:#x}")
            self.avail_idx[q] = 0
        self.qsize = {q: self.queue_size(q) for q in self.queues}
        qt.cmd(f"outb {BAR + 0x12:#x} 7")         # DRIVER_OK

    def reset(self):
        self.qt.cmd(f"outb {BAR + 0x12:#x} 0")

    def queue_size(self, q):
        self.qt.cmd(f"outw {BAR + 0x0e:#x} {q}")
        return self.qt.cmd(f"inw {BAR + 0x0c:#x}")

    def cfg_r32(self, off):
        return self.qt.cmd(f"inl {BAR + CFG + off:#x}")

    def num_pages(self):
        return self.cfg_r32(0)

    def actual(self):
        return self.cfg_r32(4)

    def set_actual(self, v):
        self.qt.cmd(f"outl {BAR + CFG + 4:#x} {v:#x}")

    def push_pfns(self, q, pfns):
        """Queue one buffer of PFNs on queue q, kick (the legacy notify is
        handled synchronously), return (used idx, seconds)."""
        qt = self.qt
        base = RINGS + q * QSPAN
        n = self.qsize[q]
        qt.write_bytes(PFNBUF, struct.pack(f"<{len(pfns)}I", *pfns))
        qt.cmd(f"writeq {base:#x} {PFNBUF:#x}")     # desc 0: addr
        qt.cmd(f"writel {base + 8:#x} {4 * len(pfns):#x}")
        qt.cmd(f"writel {base + 12:#x} 0")          # flags 0, next 0
        avail = base + 16 * n
        ai = self.avail_idx[q]
        qt.cmd(f"writew {avail + 4 + 2 * (ai % n):#x} 0")
        self.avail_idx[q] = ai + 1
        qt.cmd(f"writew {avail + 2:#x} {(ai + 1) & 0xffff:#x}")
        t = time.time()
        qt.cmd(f"outw {BAR + 0x10:#x} {q}")         # kick
        dt = time.time() - t
        used = (avail + 4 + 2 * n + 2 + 4095) & ~4095   # legacy align 4096
        return qt.cmd(f"readw {used + 2:#x}"), dt


def modern_device_features(qt):
    """64-bit device feature word as a virtio 1.0 driver sees it, via the
    common config capability of the (transitional) device's MMIO BAR."""
    status = qt.pci_r32(0x04) >> 16
    if not status & 0x10:
        return None
    ptr = qt.pci_r8(0x34)
    common = None
    while ptr:
        if qt.pci_r8(ptr) == 0x09 and qt.pci_r8(ptr + 3) == 1:
            common = (qt.pci_r8(ptr + 4), qt.pci_r32(ptr + 8))
            break
        ptr = qt.pci_r8(ptr + 1)
    if common is None:
        return None
    bar, off = common
    qt.pci_w32(0x10 + 4 * bar, MMIO_BAR)
    if qt.pci_r32(0x10 + 4 * bar) & 0x4:          # 64-bit BAR
        qt.pci_w32(0x10 + 4 * bar + 4, 0)
    qt.pci_w32(0x04, 0x7)
    feats = 0
    for sel in (0, 1):
        qt.cmd(f"writel {MMIO_BAR + off:#x} {sel}")
        feats |= qt.cmd(f"readl {MMIO_BAR + off + 4:#x}") << (32 * sel)
    return feats


def filled(qt, addr, size, byte):
    return qt.read_bytes(addr, size) == bytes([byte]) * size


def fmt_calls(calls):
    """'gpa offset:size' of madvise calls, e.g. 64M:2048K"""
    return ", ".join(f"{a / MiB:g}M:{n // KiB}K" for a, n, adv in calls)
