"""The Debian 13 host path, end to end: ``tools/debian13-host-check.sh`` debootstraps a
minimal trixie root, copies the repository in, and there runs what a new user types
(``make bootstrap``, ``balloon-harness build``, an rfc-v1 run of the baseline and
thp-order arms under TCG). 20-40 minutes on a cold root (QEMU 7.2 builds from source in
it); needs root and the host's Debian mirror. ``make test-slow`` runs it.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "debian13-host-check.sh"
TIMEOUT = 90 * 60


def _mount_points() -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1].replace("\\040", " ") for line in f if line.strip()]


@pytest.mark.slow
@pytest.mark.vm
def test_debian13_host_path(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the Debian 13 host check needs root (debootstrap, chroot, bind mounts)")
    if not shutil.which("apt-get"):
        pytest.skip("the Debian 13 host check needs an apt-based host")
    log = tmp_path / "debian13-host-check.log"
    with open(log, "w") as out:
        proc = subprocess.run(["bash", str(SCRIPT)], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    text = log.read_text(errors="replace")
    tail = "\n".join(text.splitlines()[-60:])
    assert proc.returncode == 0, f"debian13-host-check.sh exited {proc.returncode}:\n{tail}"
    for phase in ("debootstrap", "prepare", "bootstrap", "build", "run"):
        assert re.search(rf"phase={phase} status=ok seconds=[0-9.]+", text), f"no ok line for {phase}:\n{tail}"

    m = re.search(r"\] results: (\S+)", text)
    assert m, f"the script named no results folder:\n{tail}"
    results = Path(m.group(1))
    with open(results / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    arms = {row["arm"] for row in rows}
    assert arms == {"baseline", "thp-order"}, f"summary.csv arms: {sorted(arms)}"
    for arm in arms:
        balloon = [r for r in rows if r["arm"] == arm and r["kind"] == "balloon"]
        assert balloon, f"no balloon step row for {arm} in {results / 'summary.csv'}"
        assert all(r["accel"] == "tcg" for r in balloon), balloon

    # Whatever happened inside, nothing of the root stays mounted.
    root = str(results.parents[1])   # <root>/root/res
    left = [p for p in _mount_points() if p == root or p.startswith(root + "/")]
    assert not left, f"still mounted under {root}: {left}"
    assert "nothing under" in text and "is mounted" in text
