#!/usr/bin/env python3
"""Functional check of the QEMU half of design "fallback", without a guest.

VIRTIO_BALLOON_F_HOST_ORDER (bit 22, an ordinary device-specific bit; the
transport bits, e.g. 24 = NOTIFY_ON_EMPTY, stay stock), property
balloon-order, config field balloon_order at offset 16, queues inflate-huge /
deflate-huge after every other queue, one discard per huge PFN.  Modelled on ../../verify_thp_order.py:
-accel qtest, a legacy virtio-balloon-pci driven by hand (helpers in
../balloon_qtest.py), guest memory contents, /proc/PID/smaps and, with
--strace, the madvise calls on guest RAM.

Usage: verify_fallback.py QEMU_BINARY [--strace]
Exit status 0 when every check passes.
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True     # no __pycache__ in the patch folders
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from balloon_qtest import (KiB, MiB, THP, PAGE, QMAX, QSIZE, Vm, Balloon, check,  # noqa: E402
                           failures, filled, fmt_calls, modern_device_features)

RAM = 513 * MiB             # not a 2 MiB multiple on purpose
F_HOST_ORDER = 22
F_HUGE_ONLY = 21            # 0002: huge-only=on, with balloon-order > 0
F_NOTIFY_ON_EMPTY = 24      # transport bit: legacy only, as stock
F_REPORTING = 5
CFG_ORDER = 16              # config offset of balloon_order
IVQ, DVQ, SVQ, IHVQ, DHVQ = 0, 1, 2, 3, 4


def want_sizes(asked, inflate):
    """The queue sizes to expect: what the device asks virtio_add_queue() for (`asked`; 0:
    no such queue), unless this QEMU gives every queue VIRTQUEUE_MAX_SIZE whatever it asks.
    QEMU 10.0.13 does (a stable-branch change to virtio_add_queue(), "Always set to max queue
    size for qemu <11.1"; 7.2 and 10.2.2 do not): its stock build reads 1024 on every balloon
    queue as well. Recognised by the stock inflate queue, which asks 128, reading 1024."""
    if inflate == QMAX:
        return [QMAX if a else 0 for a in asked]
    return asked


def test_offer(qemu):
    print("== feature offer, config field and queues vs balloon-order")
    base = None                 # (legacy, modern) feature words without balloon-order
    for opts, order in (("", 0), ("balloon-order=0", 0), ("balloon-order=9", 9),
                        ("balloon-order=10", 10)):
        vm = Vm(qemu, opts, RAM, legacy_only=False)   # transitional device
        modern = modern_device_features(vm.qt)
        b = Balloon(vm, ack_bits=(F_HOST_ORDER,), queues=(IVQ, DVQ))
        name = opts or "no balloon-order"
        offered = bool(b.host_features & (1 << F_HOST_ORDER))
        check(offered == (order > 0), f"{name}: bit 22 offered on the legacy "
              f"interface: {offered}")
        check(modern is not None and bool(modern & (1 << F_HOST_ORDER)) == (order > 0),
              f"{name}: bit 22 offered on the modern interface: "
              f"{None if modern is None else bool(modern & (1 << F_HOST_ORDER))}")
        noe_legacy = bool(b.host_features & (1 << F_NOTIFY_ON_EMPTY))
        noe_modern = modern is not None and bool(modern & (1 << F_NOTIFY_ON_EMPTY))
        check(noe_legacy and not noe_modern,
              f"{name}: bit 24 (NOTIFY_ON_EMPTY) as stock: legacy {noe_legacy} "
              f"(want True), modern {noe_modern} (want False)")
        feats = (b.host_features, modern)
        if base is None:
            base = feats
            print(f"     feature words: legacy {feats[0]:#x}, modern "
                  f"{None if modern is None else hex(modern)}")
        else:
            bit = (1 << F_HOST_ORDER) if order else 0
            want = (base[0] | bit, None if base[1] is None else base[1] | bit)
            check(feats == want, f"{name}: feature words differ from the default "
                  f"device only by bit 22: legacy {feats[0]:#x}, modern "
                  f"{None if modern is None else hex(modern)}")
        cfg = b.cfg_r32(CFG_ORDER)
        want = order if order else 0xFFFFFFFF        # beyond config size
        check(cfg == want, f"{name}: config @16 reads {cfg:#x} (want {want:#x})")
        sizes = [b.queue_size(q) for q in range(6)]
        check(sizes[IVQ] in (QSIZE, QMAX), f"{name}: inflate queue size {sizes[IVQ]} "
              f"(want {QSIZE}, or {QMAX} where QEMU forces every queue to its maximum)")
        want = want_sizes([128, 128, 128] + ([128, 128] if order else [0, 0]) + [0], sizes[IVQ])
        check(sizes == want, f"{name}: queue sizes {sizes} (want {want})")
        vm.close()

    vm = Vm(qemu, "balloon-order=9,free-page-reporting=on", RAM)
    b = Balloon(vm, ack_bits=(F_HOST_ORDER, F_REPORTING), queues=(IVQ, DVQ))
    sizes = [b.queue_size(q) for q in range(7)]
    want = want_sizes([128, 128, 128, 32, 128, 128, 0], sizes[IVQ])
    check(sizes == want, f"with free-page-reporting: reporting=3, inflate-huge=4, "
          f"deflate-huge=5: sizes {sizes} (want {want})")
    check(b.guest_features == (1 << F_HOST_ORDER) | (1 << F_REPORTING),
          "bits 22 and 5 both negotiated")
    vm.close()

    for order in (11, 4294967295):
        r = subprocess.run([qemu, "-machine", "pc", "-accel", "qtest",
                            "-nodefaults", "-display", "none",
                            "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
                            "-device", f"virtio-balloon-pci,balloon-order={order}"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "balloon-order" in r.stderr,
              f"balloon-order={order} refused at realize: "
              f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


def test_huge(qemu, use_strace):
    print("== balloon-order=9: inflate-huge / deflate-huge beside the 4 KiB queues")
    vm = Vm(qemu, "balloon-order=9,free-page-reporting=off", RAM, use_strace)
    qt = vm.qt
    b = Balloon(vm, ack_bits=(F_HOST_ORDER,), queues=(IVQ, DVQ, IHVQ, DHVQ))
    check(b.guest_features == 1 << F_HOST_ORDER, "bit 22 negotiated")

    vm.qmp.cmd("balloon", value=RAM - 10 * MiB)
    check(b.num_pages() == 2560, f"num_pages stays in 4 KiB units: "
                                 f"{b.num_pages()} (want 2560)")

    qt.cmd(f"memset {62 * MiB:#x} {10 * MiB:#x} 0xaa")
    qt.cmd(f"memset {78 * MiB:#x} {4 * MiB:#x} 0xcc")
    qt.cmd(f"memset {510 * MiB:#x} {3 * MiB:#x} 0xbb")
    rss0 = vm.rss_kb()

    good = [0x4000, 0x4400, (510 * MiB) >> 12]      # 64M, 68M, 510M
    bad = [0x4001,            # 64M + 4K: not 2 MiB aligned
           0x1FF00,           # 511 MiB: unaligned
           (512 * MiB) >> 12, # 512 MiB: aligned, block crosses end of RAM (513M)
           (514 * MiB) >> 12, # 514 MiB: beyond RAM
           0xFFFFFFFF,        # ~16 TiB: far outside anything
           0xFEC00,           # IOAPIC MMIO (2 MiB aligned, not RAM)
           0xFFE00,           # BIOS ROM at 4G-2M
           0x0]               # 0..2M: low RAM, then VGA hole / ROMs
    used, dt = b.push_pfns(IHVQ, bad[:2] + good + bad[2:])
    check(used == 1 and dt < 5, f"inflate-huge buffer with {len(bad)} bad PFNs "
          f"completes at once ({dt:.3f}s, no loop)")
    small = [(80 * MiB) >> 12, (80 * MiB + 8 * KiB) >> 12]
    used, _ = b.push_pfns(IVQ, small)
    check(used == 1, "ordinary inflate buffer (same test) completes")
    rss1 = vm.rss_kb()

    for a in (64, 68, 510):
        check(filled(qt, a * MiB, THP, 0), f"{a}..{a + 2}MiB discarded (zero)")
    check(filled(qt, 512 * MiB, MiB, 0xBB), "512..513MiB (block crossing "
          "the end of RAM) untouched")
    for a in (62, 66, 70):
        check(filled(qt, a * MiB, THP, 0xAA), f"{a}..{a + 2}MiB untouched")
    check(filled(qt, 80 * MiB, PAGE, 0) and filled(qt, 80 * MiB + 8 * KiB, PAGE, 0),
          "ordinary PFNs: their 4 KiB zeroed")
    check(filled(qt, 80 * MiB + PAGE, PAGE, 0xCC) and
          filled(qt, 80 * MiB + 12 * KiB, 2 * MiB - 12 * KiB, 0xCC) and
          filled(qt, 78 * MiB, 2 * MiB, 0xCC),
          "ordinary PFNs: neighbouring 4 KiB pages untouched")
    print(f"     host Rss {rss0} -> {rss1} kB")
    check(rss0 - rss1 == 3 * 2048 + 2 * 4,
          f"guest RAM RSS dropped by 3 x 2 MiB + 2 x 4 KiB ({rss0 - rss1} kB)")

    b.set_actual(3 * 512 + 2)
    info = vm.qmp.cmd("query-balloon")
    check(info["actual"] == RAM - 3 * THP - 2 * PAGE,
          f"actual in 4 KiB units -> query-balloon {info['actual']}")

    used, dt = b.push_pfns(DHVQ, [0x4000, 0xFFFFFFFF, 0x4001])
    check(used == 1 and dt < 5, "deflate-huge buffer (incl. bad PFNs) completes")
    used, _ = b.push_pfns(DVQ, [(80 * MiB) >> 12])
    check(used == 1, "ordinary deflate buffer completes")
    qt.cmd(f"memset {64 * MiB:#x} {THP:#x} 0x5a")
    qt.cmd(f"memset {80 * MiB:#x} {PAGE:#x} 0x5b")
    check(filled(qt, 64 * MiB, THP, 0x5A) and filled(qt, 80 * MiB, PAGE, 0x5B),
          "deflated ranges are usable again (written and read back)")
    check(vm.rss_kb() >= rss1 + 2048, "deflated 2 MiB faulted back in on access")

    err = vm.close()
    nbad = vm.guest_errors().count("balloon-order: ignoring")
    check(nbad == len(bad) + 2, f"{nbad} bad PFNs logged as guest errors "
                                f"(want {len(bad) + 2})")
    if err.strip():
        print("     qemu stderr:", err.strip())
    if use_strace:
        calls = vm.madvise_calls()
        dn = [c for c in calls if c[2] == "MADV_DONTNEED"]
        wn = [c for c in calls if c[2] == "MADV_WILLNEED"]
        want_dn = [(64 * MiB, THP), (68 * MiB, THP), (510 * MiB, THP),
                   (80 * MiB, PAGE), (80 * MiB + 8 * KiB, PAGE)]
        check([(a, n) for a, n, _ in dn] == want_dn,
              f"madvise(DONTNEED): one 2 MiB per huge PFN, one 4 KiB per "
              f"ordinary PFN, nothing else: [{fmt_calls(dn)}]")
        check([(a, n) for a, n, _ in wn] == [(64 * MiB, THP), (80 * MiB, PAGE)],
              f"madvise(WILLNEED): 2 MiB for deflate-huge, 4 KiB for deflate: "
              f"[{fmt_calls(wn)}]")
        check(not vm.fallocate_calls(), "no fallocate calls")


def test_order4(qemu, use_strace):
    print("== balloon-order=4: 64 KiB blocks")
    vm = Vm(qemu, "balloon-order=4", RAM, use_strace)
    qt = vm.qt
    b = Balloon(vm, ack_bits=(F_HOST_ORDER,), queues=(IVQ, DVQ, IHVQ, DHVQ))
    check(b.cfg_r32(CFG_ORDER) == 4, "config balloon_order reads 4")
    qt.cmd(f"memset {100 * MiB:#x} {MiB:#x} 0xaa")
    used, _ = b.push_pfns(IHVQ, [(100 * MiB + 64 * KiB) >> 12,
                                 (100 * MiB + 68 * KiB) >> 12])   # 2nd unaligned
    check(used == 1, "inflate-huge buffer completes")
    check(filled(qt, 100 * MiB + 64 * KiB, 64 * KiB, 0), "the 64 KiB block zeroed")
    check(filled(qt, 100 * MiB, 64 * KiB, 0xAA) and
          filled(qt, 100 * MiB + 128 * KiB, MiB - 128 * KiB, 0xAA),
          "neighbours untouched (unaligned PFN skipped)")
    vm.close()
    if use_strace:
        dn = [c for c in vm.madvise_calls() if c[2] == "MADV_DONTNEED"]
        check([(a, n) for a, n, _ in dn] == [(100 * MiB + 64 * KiB, 64 * KiB)],
              f"exactly one madvise(DONTNEED, 64 KiB): [{fmt_calls(dn)}]")


def test_huge_only(qemu):
    print("== huge-only: bit 21 offered only when asked, and only with balloon-order")
    for opts, want in (("balloon-order=9", False), ("balloon-order=9,huge-only=off", False),
                       ("balloon-order=9,huge-only=on", True)):
        vm = Vm(qemu, opts, RAM, legacy_only=False)
        modern = modern_device_features(vm.qt)
        b = Balloon(vm, ack_bits=(F_HOST_ORDER, F_HUGE_ONLY), queues=(IVQ, DVQ))
        legacy = bool(b.host_features & (1 << F_HUGE_ONLY))
        check(legacy == want and modern is not None and bool(modern & (1 << F_HUGE_ONLY)) == want,
              f"{opts}: bit 21 offered: legacy {legacy}, modern "
              f"{None if modern is None else bool(modern & (1 << F_HUGE_ONLY))} (want {want})")
        if want:
            check(b.guest_features == (1 << F_HOST_ORDER) | (1 << F_HUGE_ONLY),
                  f"{opts}: bits 22 and 21 both negotiated")
        vm.close()
    r = subprocess.run([qemu, "-machine", "pc", "-accel", "qtest", "-nodefaults", "-display", "none",
                        "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
                        "-device", "virtio-balloon-pci,huge-only=on"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "huge-only" in r.stderr,
          f"huge-only=on without balloon-order refused at realize: "
          f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


def main():
    qemu = sys.argv[1]
    use_strace = "--strace" in sys.argv[2:]
    try:
        test_offer(qemu)
        test_huge(qemu, use_strace)
        test_order4(qemu, use_strace)
        test_huge_only(qemu)
    except RuntimeError as e:       # e.g. a QEMU without balloon-order
        check(False, str(e))
    print(f"\n{'ALL PASSED' if not failures else f'{len(failures)} FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
