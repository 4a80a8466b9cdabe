#!/usr/bin/env python3
"""Functional check of the QEMU design "host-pbp" (property thp-pbp), without
a guest.

Stock protocol (4 KiB PFNs on the ordinary inflate/deflate queues); with
thp-pbp=on QEMU keeps a persistent bitmap per 2 MiB block of guest RAM and
discards a block with one call once all 512 of its 4 KiB pages are in the
balloon.  Modelled on ../../verify_thp_order.py: -accel qtest, a legacy
virtio-balloon-pci driven by hand (helpers in ../balloon_qtest.py), guest
memory contents, /proc/PID/smaps and, with --strace, the madvise calls on
guest RAM (attributed to guest-physical ranges).

Usage: verify_host_pbp.py QEMU_BINARY [--strace] [--only-off]
(--only-off runs just the thp-pbp=off part; it passes on stock QEMU too)
Exit status 0 when every check passes.
"""
import os
import sys

sys.dont_write_bytecode = True     # no __pycache__ in the patch folders
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from balloon_qtest import (MiB, THP, PAGE, Vm, Balloon, check, failures,  # noqa: E402
                           filled, fmt_calls)

RAM = 513 * MiB             # not a 2 MiB multiple: a partial last block
IVQ, DVQ = 0, 1
SUB = THP // PAGE           # 512


def pfns(start_mib, first, count):
    base = (start_mib * MiB) >> 12
    return [base + i for i in range(first, first + count)]


def push_all(b, q, lst, what):
    """Push in buffers of at most 256 PFNs, as the Linux driver does."""
    ok = True
    for i in range(0, len(lst), 256):
        used, dt = b.push_pfns(q, lst[i:i + 256])
        ok = ok and dt < 5
    check(ok, f"{what}: {len(lst)} PFNs pushed, every buffer completes at once")


def test_pbp_on(qemu, use_strace):
    print("== thp-pbp=on")
    vm = Vm(qemu, "thp-pbp=on", RAM, use_strace)
    qt = vm.qt
    b = Balloon(vm, queues=(IVQ, DVQ))
    qt.cmd(f"memset {62 * MiB:#x} {30 * MiB:#x} 0xaa")      # 62..92M
    qt.cmd(f"memset {510 * MiB:#x} {3 * MiB:#x} 0xbb")
    qt.cmd(f"memset {0x80000:#x} {PAGE:#x} 0xdd")

    # Block A = 64..66 MiB: 511 of 512 pages, in two requests
    _, _, rss0, ahp0 = vm.smaps()
    push_all(b, IVQ, pfns(64, 0, 511), "block A, pages 0..510")
    check(filled(qt, 64 * MiB, THP, 0xAA), "511 of 512 pages ballooned: "
          "nothing discarded (block A intact)")
    _, _, rss, ahp = vm.smaps()
    check(rss == rss0, "511 of 512: host RSS unchanged")
    if ahp0:
        check(ahp == ahp0, f"511 of 512: host THPs intact (AnonHugePages "
              f"{ahp0} -> {ahp} kB)")
    else:
        print("     (no host THPs in use: THP check skipped)")
    b.push_pfns(IVQ, pfns(64, 511, 1))
    check(filled(qt, 64 * MiB, THP, 0), "512th page: block A discarded (zero)")
    check(filled(qt, 62 * MiB, THP, 0xAA) and filled(qt, 66 * MiB, THP, 0xAA),
          "blocks around A untouched")
    _, _, rss1, ahp1 = vm.smaps()
    check(rss0 - rss1 == 2048, f"512th page: host RSS -2 MiB ({rss0 - rss1} kB)")
    if ahp0:
        check(ahp0 - ahp1 == 2048, f"512th page: exactly one host THP gone, "
              f"no other split (AnonHugePages {ahp0} -> {ahp1} kB)")

    # deflate one page of the discarded block, the guest reuses it,
    # re-inflate: block complete again -> discarded again
    b.push_pfns(DVQ, pfns(64, 16, 1))
    qt.cmd(f"memset {64 * MiB + 16 * PAGE:#x} {PAGE:#x} 0xcc")
    check(filled(qt, 64 * MiB + 16 * PAGE, PAGE, 0xCC),
          "deflated page of a discarded block is usable (faulted back in)")
    b.push_pfns(IVQ, pfns(64, 16, 1))
    check(filled(qt, 64 * MiB, THP, 0), "re-inflate of that page: block A "
          "complete again, discarded again (zero)")
    # duplicate inflate of a page already in the balloon: no new discard
    b.push_pfns(IVQ, pfns(64, 100, 1))

    # Blocks B = 68..70 MiB and C = 70..72 MiB: one buffer spanning both
    # (B's 2nd half + C's 1st half), then one interleaving the rest
    b.push_pfns(IVQ, pfns(68, 256, 256))
    b.push_pfns(IVQ, pfns(70, 0, 256))
    check(filled(qt, 68 * MiB, 2 * THP, 0xAA),
          "half of B + half of C: nothing discarded")
    rest = [p for pair in zip(pfns(68, 0, 256), pfns(70, 256, 256)) for p in pair]
    push_all(b, IVQ, rest, "rest of B and C interleaved")
    check(filled(qt, 68 * MiB, THP, 0) and filled(qt, 70 * MiB, THP, 0),
          "blocks B and C both discarded once complete")

    # A block that never fills keeps its memory (the trade-off)
    b.push_pfns(IVQ, pfns(80, 0, 100))
    check(filled(qt, 80 * MiB, THP, 0xAA), "block D with 100/512 pages: "
          "not discarded (returns no memory)")

    # Bad PFNs: not RAM -> skipped as stock, no bit set, no hang
    bad = [0xFFFFFFFF, (514 * MiB) >> 12, 0xFEC00, 0xFFE00, 0xFFFFF]
    used, dt = b.push_pfns(IVQ, bad)
    check(dt < 5, f"buffer of bad PFNs (beyond RAM, MMIO, ROM) completes "
          f"({dt:.3f}s)")
    # RAM pages whose 2 MiB block is not a whole 2 MiB of RAM: stock 4 KiB
    b.push_pfns(IVQ, [0x80, (512 * MiB) >> 12])
    check(filled(qt, 0x80000, PAGE, 0), "page in the low 2 MiB (not a whole "
          "block of RAM): stock 4 KiB discard at once")
    check(filled(qt, 512 * MiB, PAGE, 0) and
          filled(qt, 512 * MiB + PAGE, MiB - PAGE, 0xBB),
          "page in the partial last block (512..513M): stock 4 KiB discard")
    used, dt = b.push_pfns(DVQ, bad + [(90 * MiB) >> 12])
    check(dt < 5, "deflate buffer with bad PFNs / untracked page completes")

    # Reset forgets the bitmap: 511 pages, reset, the 512th -> no discard
    push_all(b, IVQ, pfns(88, 0, 511), "block E, pages 0..510")
    b.reset()
    b.init()
    b.push_pfns(IVQ, pfns(88, 511, 1))
    check(filled(qt, 88 * MiB, THP, 0xAA), "device reset forgets ballooned "
          "pages: the 512th page after reset discards nothing")
    push_all(b, IVQ, pfns(88, 0, 511), "block E again after reset")
    check(filled(qt, 88 * MiB, THP, 0), "all 512 after reset: block E "
          "discarded")

    err = vm.close()
    if err.strip():
        print("     qemu stderr:", err.strip())
    if use_strace:
        calls = vm.madvise_calls()
        dn = [(a, n) for a, n, adv in calls if adv == "MADV_DONTNEED"]
        wn = [(a, n) for a, n, adv in calls if adv == "MADV_WILLNEED"]
        want = [(64 * MiB, THP), (64 * MiB, THP), (68 * MiB, THP),
                (70 * MiB, THP), (0x80000, PAGE), (512 * MiB, PAGE),
                (88 * MiB, THP)]
        check(dn == want, "madvise(DONTNEED) exactly: A once when complete, "
              "A again after deflate+re-inflate, B, C, two stock 4 KiB "
              "(low / partial block), E after reset: "
              f"[{fmt_calls([(a, n, 'MADV_DONTNEED') for a, n in dn])}]")
        check(wn == [(64 * MiB + 16 * PAGE, PAGE), (90 * MiB, PAGE)],
              "madvise(WILLNEED): stock 4 KiB hint per deflated RAM page: "
              f"[{fmt_calls([(a, n, 'MADV_WILLNEED') for a, n in wn])}]")


def test_pbp_off(qemu, use_strace):
    print("== thp-pbp=off (default): stock, one 4 KiB discard per PFN")
    vm = Vm(qemu, "", RAM, use_strace)
    qt = vm.qt
    b = Balloon(vm, queues=(IVQ, DVQ))
    qt.cmd(f"memset {64 * MiB:#x} {4 * MiB:#x} 0xaa")
    _, _, rss0, ahp0 = vm.smaps()
    push_all(b, IVQ, pfns(64, 0, 511), "511 pages")
    _, _, rss1, ahp1 = vm.smaps()
    print(f"     511 x 4 KiB discards: host Rss {rss0} -> {rss1} kB, "
          f"AnonHugePages {ahp0} -> {ahp1} kB (the THP is split)")
    check(filled(qt, 64 * MiB, 511 * PAGE, 0) and
          filled(qt, 64 * MiB + 511 * PAGE, PAGE, 0xAA),
          "511 pages: each discarded at once, the 512th intact")
    b.push_pfns(IVQ, pfns(64, 511, 1) + pfns(66, 5, 1))
    check(filled(qt, 64 * MiB, THP, 0) and filled(qt, 66 * MiB + 5 * PAGE, PAGE, 0)
          and filled(qt, 66 * MiB, 5 * PAGE, 0xAA), "every PFN discarded alone")
    vm.close()
    if use_strace:
        dn = [(a, n) for a, n, adv in vm.madvise_calls() if adv == "MADV_DONTNEED"]
        want = [(64 * MiB + i * PAGE, PAGE) for i in range(512)] + \
               [(66 * MiB + 5 * PAGE, PAGE)]
        check(dn == want, f"513 madvise(DONTNEED, 4 KiB), one per PFN, in order "
              f"({len(dn)} calls, sizes {sorted(set(n for _, n in dn))})")


def main():
    qemu = sys.argv[1]
    use_strace = "--strace" in sys.argv[2:]
    if "--only-off" not in sys.argv[2:]:      # --only-off: also for stock QEMU
        test_pbp_on(qemu, use_strace)
    test_pbp_off(qemu, use_strace)
    print(f"\n{'ALL PASSED' if not failures else f'{len(failures)} FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
