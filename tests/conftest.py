"""Shared fixtures and the markers' rule.

``vm``: the test boots a real QEMU guest. ``build``: it needs the built artifacts
(the cache; a cold build compiles QEMU). A test that asks for the build fixtures
gets ``build`` even if its author forgot it, so ``-m "not vm and not build"``
(``make test-fast``) never builds anything. ``pipeline``: it runs a CI example's job script
end to end (several harness processes); ``make test`` runs it, ``make test-fast`` does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BUILD_FIXTURES = {"artifacts", "stock_image"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if BUILD_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("build"):
            item.add_marker(pytest.mark.build)


def _shared_cache() -> Path:
    from harness.artifacts.cache import cache_root
    return cache_root().resolve()


SHARED_CACHE = _shared_cache()   # the cache in effect when the tests start: the one `make build` fills
# One `cc -static` each (harness.artifacts.initramfs._build_static), a second or so: fast tests
# may build these into an empty cache (benchmarks/test_fast_time.py starts from one).
SMALL_BUILDS = {"usemem", "bh-step", "framemap"}


class BuildInFastTest(AssertionError):
    """A fast test reached the build (see :func:`no_build_in_fast_tests`)."""


@pytest.fixture(autouse=True)
def no_build_in_fast_tests(request, monkeypatch):
    """A test marked neither ``vm`` nor ``build`` cannot start a build: ``build_all`` fails it,
    and so does any entry of the shared cache that would have to be built (``cache.ensure``
    of a missing entry; a test's own temporary cache is its business). Without this, a refusal
    that broke before a command's build step would make `make test-fast` compile QEMU, or with
    a warm cache boot a guest. A test that stubs the build itself overrides this (its
    monkeypatch comes later)."""
    if request.node.get_closest_marker("vm") or request.node.get_closest_marker("build"):
        return
    import harness.artifacts.build
    from harness.artifacts import cache

    def build_all(*args, **kwargs):
        raise BuildInFastTest(f"{request.node.nodeid} reached build_all: stub the build, or mark the test build/vm")

    original = cache.ensure

    def ensure(kind, inputs, build, root=None, mutable=False):
        # a test's own cache (a tmp root, or BALLOON_HARNESS_CACHE set to one) builds freely
        shared = Path(root or cache.cache_root()).resolve() == SHARED_CACHE
        if shared and kind not in SMALL_BUILDS and cache.lookup(kind, inputs, root) is None:
            raise BuildInFastTest(f"{request.node.nodeid} would build {kind} in {SHARED_CACHE}: "
                                  "mark the test build/vm")
        return original(kind, inputs, build, root, mutable)

    monkeypatch.setattr(harness.artifacts.build, "build_all", build_all)
    monkeypatch.setattr(cache, "ensure", ensure)


@pytest.fixture(scope="session")
def artifacts():
    """Everything ``balloon-harness build`` makes (cached: fast after the first build)."""
    from harness.artifacts.build import build_all
    return build_all()


@pytest.fixture(scope="session")
def stock_image(artifacts):
    return artifacts.images["stock"]


@pytest.fixture
def no_event_wait(monkeypatch):
    """A move collects its QMP size events 1.1 s after it ends (QEMU holds the last one back for
    its 1 s rate limit: harness.vm.follow.late_events). Tests whose fake QMP has no events, and
    are not about that wait, skip it (test_late_events_waits_out_the_rate_limit is about it)."""
    from harness.mechanisms import virtio_mem
    from harness.vm import balloon, follow

    def at_once(events, first, name, wait=0.0):
        return follow.late_events(events, first, name, wait=0.0)

    monkeypatch.setattr(balloon, "late_events", at_once)
    monkeypatch.setattr(virtio_mem, "late_events", at_once)


def qemu_pids(marker: str = "") -> set[int]:
    """PIDs of the qemu-system processes on the host; with ``marker``, only those whose
    command line contains it (a test's own results folder), so other guests on the host
    (another run, a developer's experiment) do not count."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"qemu-system" in os.path.basename(argv[0]) and marker.encode() in b"\0".join(argv):
                pids.add(int(d.name))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_scenario_cli(tmp: Path, text: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess, Path]:
    """``balloon-harness run`` on scenario ``text`` in ``tmp`` (results in ``tmp/out``), as a
    user runs it; asserts it left no QEMU of its own behind."""
    path = tmp / "scenario.toml"
    path.write_text(text)
    out = tmp / "out"
    before = qemu_pids(str(tmp))
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout)
    assert qemu_pids(str(tmp)) <= before, "a QEMU of the run was left running"
    return proc, out


BALLOON_DEVICE_ID = "0x0005"     # virtio device id of the balloon in /sys/bus/virtio/devices/*/device
VIRTIO_FEATURES_COMMAND = "for d in /sys/bus/virtio/devices/*; do echo $(cat $d/device) $(cat $d/features); done"


def balloon_features_in(listing: str) -> str:
    """The balloon's negotiated feature string (one char per bit) in the output of
    :data:`VIRTIO_FEATURES_COMMAND`."""
    for line in listing.splitlines():
        dev, _, features = line.partition(" ")
        if dev == BALLOON_DEVICE_ID:
            return features
    raise AssertionError(f"no balloon device in the guest:\n{listing}")


def balloon_features(guest) -> str:
    """The negotiated feature string of a booted guest's balloon device."""
    return balloon_features_in(guest.ssh.run(VIRTIO_FEATURES_COMMAND).stdout)


# ---- hypothesis profiles (the property tests: tests/test_properties_*.py) -------------------
# "ci" (the default, what `make test-fast` runs): 1,000 examples per property, derandomized so a
# CI failure repeats on a laptop. "nightly": 10,000 fresh random ones per property
# (HYPOTHESIS_PROFILE=nightly make test-fast, or pytest tests/test_properties_*.py).
# No deadline: 4 workers on 2 cores make a single example's time meaningless.
try:
    from hypothesis import HealthCheck, settings
except ImportError:   # pragma: no cover - the test extra installs it
    pass
else:
    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                          HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=1000, derandomize=True, database=None, **_common)
    settings.register_profile("nightly", max_examples=10_000, **_common)
    settings.register_profile("dev", max_examples=100, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def journal_dir(tmp_path, monkeypatch):
    """A test's own host-change journal folder (harness.host.journal), so no other harness on
    the host recovers a test child's changes before the test's own "next start" does; whatever
    a failed test left in it is undone at teardown: a test never leaves host knobs or pools
    changed."""
    from harness.host import journal
    d = tmp_path / "journal"
    monkeypatch.setenv(journal.ENV_DIR, str(d))
    yield d
    journal.recover_leftovers(d)
