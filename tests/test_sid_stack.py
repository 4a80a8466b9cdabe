"""The sid stack (Debian unstable: Linux 7.2 + the newest QEMU its archive serves) with its
ports of the RFC and of the review designs, on the real build.

`make test` keeps the cheap part, on a warm cache: the QEMU halves under qtest (seconds, no
guest) and ONE boot of a 7.2 guest with the RFC port that negotiates bit 23 and inflates.
A cache that has never built the sid stack skips them, saying so: its cold build (QEMU
10.2, the sid Kbuild chroot) would take CI past its budget; `make test-slow` (which builds
every stack first) or `balloon-harness build --stack sid` fills it. The design drivers under
stress on 7.2 and the same checkers against the trixie builds are in the slow suite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import balloon_features

from harness.artifacts.patches import QEMU_PATCHES
from harness.artifacts.stacks import STACKS

pytestmark = pytest.mark.build   # every test here needs the sid build (or trixie's)

QEMU_CHECKERS = {"patched": QEMU_PATCHES / "verify_thp_order.py",
                 "fallback": QEMU_PATCHES / "designs" / "fallback" / "verify_fallback.py",
                 "host-pbp": QEMU_PATCHES / "designs" / "host-pbp" / "verify_host_pbp.py"}


def sid_in_cache() -> bool:
    """Whether this cache has built the sid stack before (the manifest lists it)."""
    import json

    from harness.artifacts.cache import cache_root
    try:
        return "sid" in json.loads((cache_root() / "manifest.json").read_text()).get("stacks", {})
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def sid():
    from harness.artifacts import build_all
    if not sid_in_cache():
        pytest.skip("the sid stack was never built in this cache (a cold QEMU 10.2 build): "
                    "`balloon-harness build --stack sid` or `make test-slow` builds it")
    return build_all(["sid"])


def _run_checker(script, binary) -> None:
    cmd = [sys.executable, str(script), str(binary)]
    if shutil.which("strace"):
        cmd.append("--strace")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ALL PASSED" in proc.stdout and "FAIL " not in proc.stdout


def test_sid_builds_every_design_it_has_a_port_of(sid):
    assert sid.kernel.release.startswith("7.2."), sid.kernel.release
    assert {"stock", "patched", "fallback", "movable", "split-alloc", "compact-noretry", "compact",
            "contig"} <= set(sid.images)
    assert {"stock", "patched", "fallback", "host-pbp"} <= set(sid.qemus)
    assert sid.pins is not None and sid.pins.qemu_source_version.split(":")[-1].split("+")[0] >= "10.2"


@pytest.mark.parametrize("variant", sorted(QEMU_CHECKERS))
def test_sid_qemu_halves_under_qtest(sid, variant):
    """The same guest-less checkers as the bookworm builds: units, bad PFNs skipped without
    looping, one discard per block, feature off by default (strace counts the madvise calls)."""
    _run_checker(QEMU_CHECKERS[variant], sid.qemus[variant])


@pytest.mark.vm
def test_the_7_2_guest_negotiates_bit_23_and_inflates_in_2_mib_pages(sid):
    """One boot: the RFC port on Linux 7.2 with thp-order=on reaches its target from an
    idle guest (free 2 MiB blocks abound) and the kernel logs no warning."""
    from harness.experiment.runner import console_problems
    from harness.guest import Guest
    from harness.vm import BalloonDevice, MachineSpec
    spec = MachineSpec.for_image(sid.images["patched"], qemu=sid.qemus["patched"],
                                 balloon=BalloonDevice(properties=(("thp-order", "on"),)))
    with Guest(spec) as g:
        assert g.ssh.run("uname -r").stdout.strip() == sid.kernel.release
        features = balloon_features(g)
        assert features[23] == "1", features
        result = g.balloon.move(600, settle=10, timeout=300)
        assert result.reached and result.actual_mib <= 602, result
        balloon_kib = int(g.ssh.run("awk '/^Balloon:/ {print $2}' /proc/meminfo").stdout.strip() or 0)
        dmesg = g.ssh.run("dmesg").stdout
    # 7.2's meminfo counts balloon pages (NR_BALLOON_PAGES): the port counts its 2 MiB pages too
    assert balloon_kib >= (1024 - 602) * 1024, balloon_kib
    assert not console_problems(dmesg), console_problems(dmesg)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(QEMU_CHECKERS))
def test_trixie_qemu_halves_under_qtest(variant):
    """The same checkers against the trixie (QEMU 10.0.13) builds. 10.0.13 gives every
    virtqueue 1024 entries, the stock build too (a stable-branch change to
    virtio_add_queue()): the checkers read each queue's size from the device and lay their
    rings out for 1024 entries (with 16 KiB between rings, a re-initialised queue kept a
    stale avail index and QEMU popped a zeroed descriptor: the device broke)."""
    from harness.artifacts import build_all
    trixie = build_all(["trixie"])
    if variant != "patched":
        assert (STACKS["trixie"].qemu_patch_dir / "designs" / variant / "series").exists()
    _run_checker(QEMU_CHECKERS[variant], trixie.qemus[variant])
