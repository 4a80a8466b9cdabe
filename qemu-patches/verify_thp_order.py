#!/usr/bin/env python3
"""Functional check of the virtio-balloon `thp-order` port, without a guest.

Drives a legacy virtio-balloon-pci device by hand through QEMU's qtest
protocol (-accel qtest): programs the PCI BAR, negotiates features, sets
up the inflate/deflate virtqueues in guest RAM, pushes PFNs, and reads the
results back (guest memory contents, config space, QMP query-balloon,
/proc/PID/smaps of the QEMU process, and optionally strace of madvise).

Usage: verify_thp_order.py QEMU_BINARY [--strace]
Exit status 0 when every check passes.
"""
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
THP = 2 * MiB
RAM = 513 * MiB             # not a 2 MiB multiple on purpose
BAR = 0xC000                 # legacy virtio I/O BAR we assign
SLOT = 4                     # PCI slot of the balloon
CFG = 20                     # legacy device config offset (MSI-X off)
F_THP_ORDER = 23
# Legacy virtio: the device fixes each queue's size (7.2: 128; Debian's 10.0.13
# gives every queue VIRTQUEUE_MAX_SIZE, 1024), the ring layout follows from it.
QMAX = 1024
QSPAN = 0x8000               # room for one legacy ring of QMAX entries
Q0, Q1 = 0x100000, 0x100000 + QSPAN  # inflate / deflate rings (legacy layout)
PFNBUF = 0x100000 + 2 * QSPAN


def ring_layout(base, n):
    """(avail, used) addresses of a legacy ring of n entries at base."""
    avail = base + 16 * n
    used = (avail + 4 + 2 * n + 2 + 4095) & ~4095   # legacy align 4096
    return avail, used

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
                raise RuntimeError(f"qtest {line!r} -> {resp!r}")
            parts = resp.split()
            return int(parts[1], 16) if len(parts) > 1 else None

    # PCI config space of our slot (bus 0, fn 0)
    def pci_w32(self, reg, val):
        self.cmd(f"outl 0xcf8 {0x80000000 | (SLOT << 11) | reg:#x}")
        self.cmd(f"outl 0xcfc {val:#x}")

    def pci_r32(self, reg):
        self.cmd(f"outl 0xcf8 {0x80000000 | (SLOT << 11) | reg:#x}")
        return self.cmd("inl 0xcfc")

    def read_bytes(self, addr, size):
        self.f.write(f"b64read {addr:#x} {size:#x}\n")
        self.f.flush()
        resp = self.f.readline().split()
        if resp[0] != "OK":
            raise RuntimeError(f"qtest b64read -> {resp!r}")
        return base64.b64decode(resp[1])


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
    def __init__(self, qemu, devopts, use_strace=False):
        self.tmp = tempfile.mkdtemp(prefix="thpqt.")
        qt_path = os.path.join(self.tmp, "qtest.sock")
        qmp_path = os.path.join(self.tmp, "qmp.sock")
        self.log = os.path.join(self.tmp, "guest_errors.log")
        self.strace_out = os.path.join(self.tmp, "strace.out")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(qt_path)
        srv.listen(1)
        argv = [qemu, "-machine", "pc", "-accel", "qtest", "-nodefaults",
                "-display", "none", "-m", f"{RAM // MiB}M",
                "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
                "-qtest", f"unix:{qt_path}", "-qtest-log", "/dev/null",
                "-qmp", f"unix:{qmp_path},server=on,wait=off",
                "-d", "guest_errors", "-D", self.log,
                "-device", "virtio-balloon-pci,id=bal,disable-modern=on,"
                           f"addr={SLOT:#x}.0" + ("," + devopts if devopts else "")]
        if use_strace:
            argv = ["strace", "-f", "-e", "trace=madvise,fallocate",
                    "-o", self.strace_out] + argv
        self.errf = open(os.path.join(self.tmp, "stderr.log"), "w+")
        self.proc = subprocess.Popen(argv, stderr=self.errf, text=True)
        srv.settimeout(20)
        conn, _ = srv.accept()
        conn.settimeout(30)   # a hung device (e.g. a looping PFN) fails
        self.qt = QTest(conn)
        for _ in range(100):
            if os.path.exists(qmp_path):
                break
            time.sleep(0.1)
        self.qmp = QMP(qmp_path)
        self.pid = self.qemu_pid(use_strace)

    def qemu_pid(self, use_strace):
        if not use_strace:
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
        self.errf.seek(0)
        return self.errf.read()

    def smaps_kb(self):
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


class Balloon:
    """Minimal legacy virtio-pci balloon driver over qtest."""

    def __init__(self, vm, ack_thp):
        qt = self.qt = vm.qt
        idv = qt.pci_r32(0)
        check(idv == 0x10021AF4, f"legacy virtio-balloon at slot {SLOT} "
                                 f"(id {idv:#x})")
        qt.pci_w32(0x10, BAR | 1)                # BAR0: I/O
        qt.pci_w32(0x04, 0x7)                    # IO + MEM + bus master
        qt.cmd(f"outb {BAR + 0x12:#x} 0")         # reset
        qt.cmd(f"outb {BAR + 0x12:#x} 3")         # ACK | DRIVER
        self.host_features = qt.cmd(f"inl {BAR:#x}")
        feats = (1 << F_THP_ORDER) if ack_thp else 0
        feats &= self.host_features
        qt.cmd(f"outl {BAR + 4:#x} {feats:#x}")
        self.used_idx = {}
        self.avail_idx = {}
        self.qsize = {}
        for q, base in ((0, Q0), (1, Q1)):
            qt.cmd(f"memset {base:#x} {QSPAN:#x} 0")
            qt.cmd(f"outw {BAR + 0x0e:#x} {q}")
            n = qt.cmd(f"inw {BAR + 0x0c:#x}")
            assert 0 < n <= QMAX, n
            self.qsize[q] = n
            qt.cmd(f"outl {BAR + 8:#x} {base >> 12:#x}")
            self.avail_idx[q] = 0
        qt.cmd(f"outb {BAR + 0x12:#x} 7")         # DRIVER_OK

    def num_pages(self):
        return self.qt.cmd(f"inl {BAR + CFG:#x}")

    def actual(self):
        return self.qt.cmd(f"inl {BAR + CFG + 4:#x}")

    def set_actual(self, v):
        self.qt.cmd(f"outl {BAR + CFG + 4:#x} {v:#x}")

    def push_pfns(self, q, pfns):
        """Queue one buffer of PFNs on queue q, kick, return used idx."""
        qt = self.qt
        base = (Q0, Q1)[q]
        for i, p in enumerate(pfns):
            qt.cmd(f"writel {PFNBUF + 4 * i:#x} {p:#x}")
        # descriptor 0: addr, len, flags=0, next=0
        qt.cmd(f"writeq {base:#x} {PFNBUF:#x}")
        qt.cmd(f"writel {base + 8:#x} {4 * len(pfns):#x}")
        qt.cmd(f"writel {base + 12:#x} 0")
        n = self.qsize[q]
        avail, used = ring_layout(base, n)
        ai = self.avail_idx[q]
        qt.cmd(f"writew {avail + 4 + 2 * (ai % n):#x} 0")
        self.avail_idx[q] = ai + 1
        qt.cmd(f"writew {avail + 2:#x} {ai + 1:#x}")
        qt.cmd(f"outw {BAR + 0x10:#x} {q}")       # kick (synchronous)
        return qt.cmd(f"readw {used + 2:#x}")


def filled(qt, addr, size, byte):
    data = qt.read_bytes(addr, size)
    return data == bytes([byte]) * size


def test_thp_on(qemu, use_strace):
    print("== thp-order=on, feature acked by the driver")
    vm = Vm(qemu, "thp-order=on", use_strace)
    qt = vm.qt
    b = Balloon(vm, ack_thp=True)
    check(b.host_features & (1 << F_THP_ORDER), "bit 23 offered")

    vm.qmp.cmd("balloon", value=RAM - 10 * MiB)
    check(b.num_pages() == 5, f"num_pages in 2MiB units: 10MiB -> "
                              f"{b.num_pages()} (want 5)")
    vm.qmp.cmd("balloon", value=RAM - 3 * MiB)
    check(b.num_pages() == 1, f"num_pages rounds down: 3MiB -> "
                              f"{b.num_pages()} (want 1)")
    vm.qmp.cmd("balloon", value=RAM - 10 * MiB)

    # Fault in 62..72 MiB and the last 2 MiB of RAM, non-zero pattern.
    qt.cmd(f"memset {62 * MiB:#x} {10 * MiB:#x} 0xaa")
    qt.cmd(f"memset {510 * MiB:#x} {3 * MiB:#x} 0xbb")
    ram_start, ram_end, rss0, ahp0 = vm.smaps_kb()

    good = [0x4000, 0x4400, (510 * MiB) >> 12]      # 64M, 68M, 510M
    bad = [0x4001,            # 64M + 4K: not 2 MiB aligned
           0x1FF00,           # 511 MiB: unaligned
           (512 * MiB) >> 12, # 512 MiB: aligned, but RAM ends at 513 MiB
           (514 * MiB) >> 12, # 514 MiB: beyond RAM
           0xFFFFFFFF,        # ~16 TiB: far outside anything
           0xFEC00,           # IOAPIC MMIO (2 MiB aligned, not RAM)
           0xFFE00,           # BIOS ROM at 4G-2M
           0x0]               # 0..2M: low RAM then VGA hole / ROMs
    t = time.time()
    used = b.push_pfns(0, bad[:2] + good + bad[2:])
    check(used == 1 and time.time() - t < 5,
          "inflate buffer with out-of-RAM PFNs completes (no loop)")
    _, _, rss1, ahp1 = vm.smaps_kb()
    check(filled(qt, 64 * MiB, THP, 0), "64..66MiB discarded (zero)")
    check(filled(qt, 68 * MiB, THP, 0), "68..70MiB discarded (zero)")
    check(filled(qt, 510 * MiB, THP, 0), "510..512MiB discarded (zero)")
    check(filled(qt, 512 * MiB, MiB, 0xBB),
          "512..513MiB (2MiB page straddling end of RAM) untouched")
    check(filled(qt, 62 * MiB, THP, 0xAA), "62..64MiB untouched")
    check(filled(qt, 66 * MiB, THP, 0xAA), "66..68MiB untouched")
    check(filled(qt, 70 * MiB, THP, 0xAA), "70..72MiB untouched")
    print(f"     host Rss {rss0} -> {rss1} kB, AnonHugePages {ahp0} -> "
          f"{ahp1} kB")
    check(rss0 - rss1 == 3 * 2048, "guest RAM RSS dropped by 6 MiB")
    if ahp0:
        check(ahp0 - ahp1 == 3 * 2048, "exactly 3 host THPs dropped, "
              "no other THP split")
    else:
        print("     (no host THPs in use: THP check skipped)")

    b.set_actual(3)
    info = vm.qmp.cmd("query-balloon")
    check(info["actual"] == RAM - 3 * THP,
          f"actual=3 (2MiB units) -> query-balloon {info['actual']} "
          f"(want {RAM - 3 * THP})")
    check(b.actual() == 3, f"config actual reads back {b.actual()}")

    used = b.push_pfns(1, [0x4000, 0xFFFFFFFF, 0x4001])
    check(used == 1, "deflate buffer (incl. bad PFNs) completes")
    b.set_actual(2)
    info = vm.qmp.cmd("query-balloon")
    check(info["actual"] == RAM - 2 * THP, "deflate: query-balloon follows")

    err = vm.close()
    with open(vm.log) as f:
        log = f.read()
    nbad = log.count("thp-order: ignoring")
    check(nbad == len(bad) + 2, f"{nbad} bad PFNs logged as guest errors "
                                f"(want {len(bad) + 2})")
    if err.strip():
        print("     qemu stderr:", err.strip())
    if use_strace:
        with open(vm.strace_out) as f:
            st = f.read()
        # No closing parenthesis: with -f, strace splits a call that another thread
        # interrupts into "madvise(0x..., 4096, MADV_DONTNEED <unfinished ...>" and a
        # later "<... madvise resumed>) = 0" line.
        calls = re.findall(r"madvise\((0x[0-9a-f]+), (\d+), (MADV_\w+)", st)
        # only calls on guest RAM (glibc madvises its own heap/stacks)
        calls = [(int(a, 16) - ram_start, n, adv) for a, n, adv in calls
                 if ram_start <= int(a, 16) < ram_end]
        dontneed = [n for _, n, adv in calls if adv == "MADV_DONTNEED"]
        willneed = [n for _, n, adv in calls if adv == "MADV_WILLNEED"]
        check(dontneed == [str(THP)] * 3,
              f"exactly 3 madvise(DONTNEED, 2MiB) calls: {dontneed}")
        check(willneed == [str(THP)],
              f"exactly 1 madvise(WILLNEED, 2MiB) call: {willneed}")


def test_thp_not_acked(qemu):
    print("== thp-order=on, driver does NOT ack the feature (4 KiB units)")
    vm = Vm(qemu, "thp-order=on")
    qt = vm.qt
    b = Balloon(vm, ack_thp=False)
    vm.qmp.cmd("balloon", value=RAM - 10 * MiB)
    check(b.num_pages() == 2560, f"num_pages in 4KiB units: {b.num_pages()}")
    qt.cmd(f"memset {64 * MiB:#x} {THP:#x} 0xaa")
    b.push_pfns(0, [0x4000])
    check(filled(qt, 64 * MiB, 4096, 0), "4K PFN discarded 4KiB")
    check(filled(qt, 64 * MiB + 4096, THP - 4096, 0xAA),
          "rest of the 2MiB untouched")
    b.set_actual(2560)
    check(vm.qmp.cmd("query-balloon")["actual"] == RAM - 10 * MiB,
          "query-balloon with 4KiB actual")
    vm.close()


def test_off_and_reporting(qemu):
    print("== thp-order off (default) / free-page-reporting beside it")
    vm = Vm(qemu, "")
    b = Balloon(vm, ack_thp=True)
    check(not b.host_features & (1 << F_THP_ORDER), "bit 23 not offered "
          "by default")
    vm.close()
    vm = Vm(qemu, "thp-order=on,free-page-reporting=on")
    b = Balloon(vm, ack_thp=True)
    check(b.host_features & (1 << F_THP_ORDER) and
          b.host_features & (1 << 5), "bits 23 and 5 (REPORTING) offered")
    qt = vm.qt
    qt.cmd(f"outw {BAR + 0x0e:#x} 3")
    n = qt.cmd(f"inw {BAR + 0x0c:#x}")
    check(n > 0, f"reporting virtqueue (#3) present (size {n})")
    vm.close()


def main():
    qemu = sys.argv[1]
    use_strace = "--strace" in sys.argv[2:]
    test_thp_on(qemu, use_strace)
    test_thp_not_acked(qemu)
    test_off_and_reporting(qemu)
    print(f"\n{'ALL PASSED' if not failures else f'{len(failures)} FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
