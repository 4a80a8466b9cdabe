"""Guest stacks and their lock file, with a fake archive (no network, no build)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from harness.artifacts import stacks
from harness.artifacts.apt import Candidate
from harness.errors import BuildError, ConfigError


@dataclass
class FakeApt:
    """The queries stacks.py makes, answered from a dict of package -> versions (newest first)."""

    release: str = "trixie"
    binary: dict[str, list[str]] = field(default_factory=dict)
    source: dict[str, list[str]] = field(default_factory=dict)

    def versions(self, package: str, source: bool = False) -> list[str]:
        return (self.source if source else self.binary).get(package, [])

    def resolve(self, meta: str, prefix: str, version=None) -> Candidate:
        newest = self.binary["linux-image-6.12.120+deb13-cloud-amd64"][0]
        return Candidate("linux-image-6.12.120+deb13-cloud-amd64", newest)


def _archive(kernel: str = "6.12.120-1") -> FakeApt:
    return FakeApt(binary={"linux-image-6.12.120+deb13-cloud-amd64": [kernel],
                           "linux-headers-6.12.120+deb13-cloud-amd64": [kernel],
                           "linux-source-6.12": [kernel]},
                   source={"qemu": ["1:10.0.14+ds-0+deb13u1"]})


@pytest.fixture
def lock(tmp_path, monkeypatch):
    path = tmp_path / "stacks.lock"
    monkeypatch.setenv("BALLOON_HARNESS_LOCK", str(path))
    return path


def test_known_stacks_and_a_clear_error_for_others():
    assert {"bookworm", "trixie"} <= set(stacks.STACKS) and stacks.DEFAULT_STACK == "bookworm"
    with pytest.raises(ConfigError, match="unknown stack 'sid'.*bookworm, trixie"):
        stacks.get_stack("sid")
    for s in stacks.STACKS.values():
        assert (s.guest_patch_dir / "series").exists() and (s.qemu_patch_dir / "series").exists()


def test_pins_resolve_to_the_archive_and_round_trip_through_the_lock(lock):
    pins = stacks.resolve_pins(stacks.STACKS["trixie"], _archive())  # type: ignore[arg-type]
    assert pins.kernel_package == "linux-image-6.12.120+deb13-cloud-amd64"
    assert pins.headers_package == "linux-headers-6.12.120+deb13-cloud-amd64"
    assert pins.linux_source_version == pins.kernel_version == "6.12.120-1"
    assert pins.qemu_source_version == "1:10.0.14+ds-0+deb13u1"
    stacks.write_lock({"trixie": pins})
    assert stacks.read_lock() == {"trixie": pins}
    assert json.loads(lock.read_text())["stacks"]["trixie"]["kernel_version"] == "6.12.120-1"


def test_pins_the_archive_no_longer_has_say_what_update_would_take(lock):
    old = stacks.resolve_pins(stacks.STACKS["trixie"], _archive("6.12.118-1"))  # type: ignore[arg-type]
    with pytest.raises(BuildError) as info:
        stacks.check_pins(stacks.STACKS["trixie"], _archive("6.12.120-1"), old)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "6.12.118-1" in msg and "no longer has" in msg
    assert "build --update" in msg and "6.12.120-1" in msg


def test_a_broken_lock_file_is_a_clear_error(lock):
    lock.write_text("{not json")
    with pytest.raises(BuildError, match="not valid JSON.*--update"):
        stacks.read_lock()
    lock.write_text(json.dumps({"stacks": {"trixie": {"kernel": "x"}}}))
    with pytest.raises(BuildError, match="unexpected fields"):
        stacks.read_lock()


def test_the_shipped_lock_pins_every_stack():
    from harness.resources import CHECKOUT
    pinned = stacks.read_lock(CHECKOUT / "stacks.lock")
    assert set(pinned) == set(stacks.STACKS)


def test_scenarios_choose_stacks_per_arm(tmp_path):
    from harness.experiment.scenario import load_scenario
    path = tmp_path / "s.toml"
    path.write_text('stack = "trixie"\n[[steps]]\nkind = "measure"\n[[arms]]\nname = "a"\nqemu = "stock"\n'
                    'module = "stock"\n[[arms]]\nname = "b"\nqemu = "stock"\nmodule = "stock"\nstack = "bookworm"\n')
    s = load_scenario(path)
    assert [a.stack for a in s.arms] == ["trixie", "bookworm"] and s.stacks == ["trixie", "bookworm"]
    path.write_text(path.read_text().replace('stack = "bookworm"', 'stack = "sid"'))
    with pytest.raises(ConfigError, match="arms\\[1\\].stack.*must be one of"):
        load_scenario(path)
