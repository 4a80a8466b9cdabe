"""Every guest stack (harness.artifacts.stacks.STACKS), the same checks each: the variants it
has ports of are built, its patches apply to its pinned sources, the QEMU halves pass their
guest-less qtest checkers, and ONE boot of its RFC port negotiates bit 23 and inflates.

Written once, parametrised over the stacks: a new stack is checked without a new test. The
default stack is built by `make build`; another stack runs when this cache has built it
before and skips otherwise, saying so: its cold build (a QEMU compile, its Kbuild chroot)
would take CI past its budget; `make test-slow` (which builds every stack first) or
`balloon-harness build --stack NAME` fills it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import balloon_features

from harness.artifacts.module import DRIVER
from harness.artifacts.patches import QEMU_PATCHES, Series, design_names
from harness.artifacts.stacks import DEFAULT_STACK, STACKS

pytestmark = pytest.mark.build

# The guest-less checker of each QEMU variant (the scripts drive any stack's binary).
QEMU_CHECKERS = {"patched": QEMU_PATCHES / "verify_thp_order.py",
                 **{d.parent.name: d for d in sorted((QEMU_PATCHES / "designs").glob("*/verify_*.py"))}}


def built_in_cache(name: str) -> bool:
    """Whether this cache has built the stack before (the manifest lists it)."""
    from harness.artifacts.cache import cache_root
    try:
        return name in json.loads((cache_root() / "manifest.json").read_text()).get("stacks", {})
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module", params=list(STACKS))
def stack(request):
    """(name, every variant of that stack built)."""
    from harness.artifacts.build import build_all
    name = request.param
    if name != DEFAULT_STACK and not built_in_cache(name):
        pytest.skip(f"the {name} stack was never built in this cache (a cold QEMU build): "
                    f"`balloon-harness build --stack {name}` or `make test-slow` builds it")
    return name, build_all([name])


def test_the_stack_builds_every_variant_it_has_a_port_of(stack):
    name, arts = stack
    definition = STACKS[name]
    branch = re.sub(r"^linux-source-", "", definition.linux_source)
    assert arts.kernel.release.startswith(f"{branch}."), (arts.kernel.release, definition.linux_source)
    assert {"stock", "patched", *design_names(definition.guest_patch_dir)} <= set(arts.images)
    assert {"stock", "patched", *design_names(definition.qemu_patch_dir)} <= set(arts.qemus)


def test_the_patches_apply_to_the_pinned_sources(stack, tmp_path):
    name, arts = stack
    definition = STACKS[name]
    linux = tmp_path / "linux"
    shutil.copytree(arts.sources["linux"], linux, ignore=shutil.ignore_patterns("inputs.json", ".complete"))
    assert (linux / DRIVER).exists()
    for series_dir, tree in ((definition.qemu_patch_dir, arts.sources["qemu"]), (definition.guest_patch_dir, linux)):
        for patch in Series.load(series_dir).patches:
            subprocess.run(["git", "apply", "--check", str(patch)], cwd=tree, check=True, capture_output=True)


@pytest.mark.parametrize("variant", sorted(QEMU_CHECKERS))
def test_qemu_halves_under_qtest(stack, variant):
    """Guest-less, through qtest: units, bad PFNs skipped without looping, one discard per
    block, complete and partial 2 MiB ranges, the feature off by default (strace counts the
    madvise calls); see qemu-patches/designs/README.md."""
    name, arts = stack
    if variant not in arts.qemus:
        pytest.skip(f"stack {name} has no port of {variant}")
    cmd = [sys.executable, str(QEMU_CHECKERS[variant]), str(arts.qemus[variant])]
    if shutil.which("strace"):
        cmd.append("--strace")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ALL PASSED" in proc.stdout and "FAIL " not in proc.stdout


@pytest.mark.vm
def test_the_rfc_port_negotiates_bit_23_and_inflates_in_2_mib_pages(stack):
    """One boot: the RFC port with thp-order=on reaches its target from an idle guest (free
    2 MiB blocks abound), within the one block a 2 MiB balloon may land off, and the kernel
    logs no warning."""
    from harness.experiment.runner import console_problems
    from harness.guest import Guest
    from harness.vm import BalloonDevice, MachineSpec
    from harness.vm.balloon import THP_ORDER_TOLERANCE_MIB
    _, arts = stack
    spec = MachineSpec.for_image(arts.images["patched"], qemu=arts.qemus["patched"],
                                 balloon=BalloonDevice(properties=(("thp-order", "on"),)))
    with Guest(spec) as g:
        assert g.ssh.run("uname -r").stdout.strip() == arts.kernel.release
        features = balloon_features(g)
        assert features[23] == "1", features
        result = g.balloon.move(600, settle=10, timeout=300)
        assert g.balloon.tolerance_mib == THP_ORDER_TOLERANCE_MIB
        assert result.reached and abs(result.actual_mib - 600) <= THP_ORDER_TOLERANCE_MIB, result
        meminfo = g.ssh.run("cat /proc/meminfo").stdout
        dmesg = g.ssh.run("dmesg").stdout
    # Kernels that count balloon pages in meminfo (NR_BALLOON_PAGES, 6.13+) count the port's 2 MiB pages too
    balloon = re.search(r"^Balloon:\s+(\d+) kB", meminfo, re.M)
    if balloon:
        assert int(balloon.group(1)) >= (1024 - 600 - THP_ORDER_TOLERANCE_MIB) * 1024, balloon.group(0)
    assert not console_problems(dmesg), console_problems(dmesg)
