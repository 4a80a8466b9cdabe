"""What one frame-map reading costs, for a 1 GiB and a 16 GiB guest.

For each size: boot the stock guest (TCG lazily backs its RAM, so a 16 GiB guest needs
only what it touches), run the RFC's workload scaled to its size (usemem --punch-holes
over 800/1024 of it, then the 4 KiB balloon to 624/1024 of it: the balloon takes the
holes, so the host ranges it touches are split into runs of alternating pages, the
PAGEMAP_SCAN reader's worst case), then time repeated readings:

- host, PAGEMAP_SCAN and pagemap + kpageflags (what the sampler does at DURING_HZ while
  a resize runs, and at every step boundary);
- the guest helper over SSH (at step boundaries only);
- the smaps cross-check.

Prints milliseconds per sample (median and max) against the sampling interval. A figure,
not an assertion: run it with `.venv/bin/python benchmarks/frame_map_cost.py`
(`--sizes 1024` for one size, `--reps N` readings each).
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.artifacts.build import build_all
from harness.guest import Guest
from harness.probes import framemap, hostmap
from harness.probes.ramlayout import qmp_hmp, read_layout
from harness.vm import MachineSpec


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(image, size_mib: int, reps: int) -> dict[str, list[float]]:
    spec = MachineSpec.for_image(image, memory_mib=size_mib, vcpus=1, boot_timeout=600.0)
    with Guest(spec) as g:
        g.ssh.run(f"usemem --punch-holes -d -s -1 {size_mib * 800 // 1024}m", timeout=1800)
        g.balloon.move(size_mib * 624 // 1024, settle=20.0, timeout=1800.0)
        spans = read_layout(qmp_hmp(g.qmp))
        fm = framemap.FrameMap(g.pid, spans, lambda cmd: g.ssh.run(cmd, timeout=600).stdout)
        host = fm.read_host()
        print(f"{size_mib} MiB guest: {len(fm.frames)} frames, {host.huge_count} huge, "
              f"{int((host.states == hostmap.HOST_SPLIT).sum())} split on the host", flush=True)
        results = {}
        for method in ("ioctl", "pagemap"):
            if method == "ioctl" and not hostmap.ioctl_supported():
                continue
            results[f"host ({method})"] = timed(
                lambda m=method: [hostmap.scan(g.pid, s.hva, s.hva + s.size, m) for s in spans], reps)
        results["smaps cross-check"] = timed(lambda: fm.smaps_check_kib(host), reps)
        results["guest helper (SSH)"] = timed(fm.read_guest, max(1, reps // 4))
        results["whole boundary capture"] = timed(lambda: fm.capture("bench", 0.0), max(1, reps // 4))
        return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 16384], help="guest sizes in MiB")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    image = build_all().images["stock"]
    rows = []
    for size in args.sizes:
        for name, secs in measure(image, size, args.reps).items():
            rows.append((size, name, statistics.median(secs) * 1000, max(secs) * 1000, len(secs)))
    print(f"\n{'guest':>9} | {'reading':<24} | {'median ms':>9} | {'max ms':>8} | n")
    for size, name, med, hi, n in rows:
        print(f"{size:>6} MiB | {name:<24} | {med:9.1f} | {hi:8.1f} | {n}")
    print(f"\nhost-only readings during a resize come every {1000 / framemap.DURING_HZ:.0f} ms "
          f"(framemap.DURING_HZ); guest readings only at step boundaries.")


if __name__ == "__main__":
    main()
