"""Guest stacks and their lock file, with a fake archive (no network, no build)."""

from __future__ import annotations

import json
from typing import Optional

import pytest

from harness.arch import KERNEL_META_PACKAGE
from harness.artifacts import stacks
from harness.artifacts.apt import MIRROR_ENV, SECURITY_MIRROR_ENV, Mirrors, PrivateApt
from harness.errors import BuildError, ConfigError


class FakeApt(PrivateApt):
    """A PrivateApt whose archive is dicts: only the queries that read apt's lists (madison,
    candidate, show) answer from them; versions, depends and resolve are PrivateApt's own."""

    def __init__(self, release: str = "trixie", binary: Optional[dict[str, list[str]]] = None,
                 source: Optional[dict[str, list[str]]] = None,
                 control: Optional[dict[tuple[str, str], dict[str, str]]] = None):
        self.release = release
        self.binary = binary or {}        # package -> versions, newest first
        self.source = source or {}
        self.control = control or {}      # (package, version) -> control fields
        self.unserved: set[str] = set()   # listed in Sources, but the archive lacks the files
        self.mirrors = Mirrors("http://m.example/debian", None)

    def source_fetchable(self, package: str, version: str) -> bool:
        return version not in self.unserved

    def madison(self, package: str) -> list[tuple[str, str]]:
        where = "http://deb.debian.org/debian trixie/main amd64"
        return ([(v, f"{where} Packages") for v in self.binary.get(package, [])]
                + [(v, f"{where} Sources") for v in self.source.get(package, [])])

    def candidate(self, package: str) -> str:
        if not self.binary.get(package):
            raise BuildError(f"Debian {self.release} has no package {package!r}")
        return self.binary[package][0]

    def show(self, package: str, version: Optional[str] = None) -> dict[str, str]:
        version = version or self.candidate(package)
        self._require(package, version)
        return {"package": package, "version": version, **self.control.get((package, version), {})}


def _archive(kernel: str = "6.12.120-1", depends: Optional[str] = None) -> FakeApt:
    """The trixie archive as the stack sees it: the cloud kernel metapackage depends on the
    versioned image of ``kernel`` (``= version``), which has headers and a source package."""
    image = f"linux-image-{kernel.split('-')[0]}+deb13-cloud-amd64"
    meta = f"{kernel}+meta"
    return FakeApt(binary={KERNEL_META_PACKAGE: [meta],
                           image: [kernel], image.replace("linux-image-", "linux-headers-"): [kernel],
                           "linux-source-6.12": [kernel]},
                   source={"qemu": ["1:10.0.14+ds-0+deb13u1"]},
                   control={(KERNEL_META_PACKAGE, meta): {
                       "depends": depends if depends is not None else f"{image} (= {kernel}), initramfs-tools"}})


@pytest.fixture
def lock(tmp_path, monkeypatch):
    path = tmp_path / "stacks.lock"
    monkeypatch.setenv("BALLOON_HARNESS_LOCK", str(path))
    return path


def test_known_stacks_and_a_clear_error_for_others():
    assert {"bookworm", "trixie", "sid"} <= set(stacks.STACKS) and stacks.DEFAULT_STACK == "bookworm"
    with pytest.raises(ConfigError, match="unknown stack 'jessie'.*bookworm, trixie, sid"):
        stacks.get_stack("jessie")
    for s in stacks.STACKS.values():
        assert (s.guest_patch_dir / "series").exists() and (s.qemu_patch_dir / "series").exists()


def test_pins_resolve_to_the_archive_and_round_trip_through_the_lock(lock):
    pins = stacks.resolve_pins(stacks.STACKS["trixie"], _archive())
    assert pins.kernel_package == "linux-image-6.12.120+deb13-cloud-amd64"
    assert pins.headers_package == "linux-headers-6.12.120+deb13-cloud-amd64"
    assert pins.linux_source_version == pins.kernel_version == "6.12.120-1"
    assert pins.qemu_source_version == "1:10.0.14+ds-0+deb13u1"
    stacks.write_lock({"trixie": pins})
    assert stacks.read_lock() == {"trixie": pins}
    assert json.loads(lock.read_text())["stacks"]["trixie"]["kernel_version"] == "6.12.120-1"


def test_the_kernel_is_what_the_metapackage_depends_on():
    """The image is the metapackage's dependency, not the newest linux-image in the lists, at
    the version it pins (``=``); an unpinned dependency takes that package's candidate,
    alternatives their first; no linux-image dependency is an error naming the metapackage."""
    image = "linux-image-6.12.120+deb13-cloud-amd64"
    archive = _archive("6.12.120-1")
    archive.binary[image].insert(0, "6.12.120-2")                               # a newer upload, not pinned
    archive.binary["linux-image-6.12.121+deb13-cloud-amd64"] = ["6.12.121-1"]   # newer, not depended on
    pins = stacks.resolve_pins(stacks.STACKS["trixie"], archive)
    assert (pins.kernel_package, pins.kernel_version) == (image, "6.12.120-1")
    assert pins.headers_package == "linux-headers-6.12.120+deb13-cloud-amd64"
    unpinned = _archive("6.12.120-1", depends=f"initramfs-tools, {image} | linux-image-x")
    unpinned.binary[image].insert(0, "6.12.120-2")
    assert stacks.resolve_pins(stacks.STACKS["trixie"], unpinned).kernel_version == "6.12.120-2"
    with pytest.raises(BuildError, match=f"{KERNEL_META_PACKAGE} in Debian trixie depends on no linux-image-"):
        stacks.resolve_pins(stacks.STACKS["trixie"], _archive(depends="initramfs-tools"))


def test_pins_the_archive_no_longer_has_say_what_update_would_take(lock):
    old = stacks.resolve_pins(stacks.STACKS["trixie"], _archive("6.12.118-1"))
    with pytest.raises(BuildError) as info:
        stacks.check_pins(stacks.STACKS["trixie"], _archive("6.12.120-1"), old)
    msg = str(info.value)
    assert "6.12.118-1" in msg and "no longer has" in msg
    assert "build --update" in msg and "6.12.120-1" in msg


def test_the_build_fetches_only_pins_the_archive_still_has(lock, tmp_path):
    """StackPackages (the build's fetching side) checks the pins before each fetch: a pin the
    archive dropped is the clear error above, before apt is asked for anything."""
    old = stacks.resolve_pins(stacks.STACKS["trixie"], _archive("6.12.118-1"))
    archive = _archive("6.12.120-1")
    asked: list[str] = []
    archive.download = lambda package, version, dest: asked.append(package)   # type: ignore[attr-defined]
    packages = stacks.StackPackages(stacks.STACKS["trixie"], old, archive)   # type: ignore[arg-type]
    with pytest.raises(BuildError, match="no longer has"):
        packages.download(old.kernel_package, old.kernel_version, tmp_path)
    assert asked == []
    current = stacks.StackPackages(stacks.STACKS["trixie"], stacks.resolve_pins(stacks.STACKS["trixie"], archive),
                                   archive)   # type: ignore[arg-type]
    current.download(current.pins.kernel_package, current.pins.kernel_version, tmp_path)
    assert asked == [current.pins.kernel_package]


def test_a_listed_source_the_archive_does_not_serve_is_skipped_and_said(lock, caplog):
    """sid on this project's archive lists QEMU 11.1 in Sources but serves only 10.2's files."""
    archive = _archive()
    archive.source["qemu"] = ["1:11.1.3+ds-1", "1:11.1.2+ds-3", "1:10.2.2+ds-1"]
    archive.unserved = {"1:11.1.3+ds-1", "1:11.1.2+ds-3"}
    archive.binary["linux-source-7.2"] = archive.binary["linux-source-6.12"]
    with caplog.at_level("INFO", logger="harness.build"):
        pins = stacks.resolve_pins(stacks.STACKS["sid"], archive)
    assert pins.qemu_source_version == "1:10.2.2+ds-1"
    said = caplog.text
    assert "1:11.1.3+ds-1" in said and "serves no source files" in said
    archive.unserved.add("1:10.2.2+ds-1")
    with pytest.raises(BuildError, match="serves the source files of none"):
        stacks.resolve_pins(stacks.STACKS["sid"], archive)


def test_archive_addresses_and_snapshots(tmp_path, monkeypatch):
    """The stack's apt takes its archives from the ArchiveOptions value it is given; the
    process environment is not read below the CLI."""
    monkeypatch.setenv("BALLOON_HARNESS_CACHE", str(tmp_path))
    for name in (MIRROR_ENV, SECURITY_MIRROR_ENV, "BALLOON_HARNESS_SNAPSHOT_SID", "BALLOON_HARNESS_SNAPSHOT_TRIXIE"):
        monkeypatch.setenv(name, "http://not-read.example/debian")   # below the CLI, nothing reads these
    opts = stacks.ArchiveOptions(mirror="http://mirror.example/debian")
    trixie = stacks.stack_apt(stacks.STACKS["trixie"], opts)
    assert trixie.mirrors == Mirrors("http://mirror.example/debian", "http://mirror.example/debian-security")
    assert not trixie.allow_expired_release            # a stable release must be current
    opts = opts.overridden(security_mirror="http://sec.example/ds")
    assert stacks.stack_apt(stacks.STACKS["trixie"], opts).mirrors.security == "http://sec.example/ds"
    sid = stacks.stack_apt(stacks.STACKS["sid"], opts)
    assert sid.allow_expired_release and "stack sid accepts it" in sid.why_expired_ok
    assert sid.mirrors.main == "http://mirror.example/debian" and "debian-security" not in sid.sources_text()
    # a snapshot pins one stack; its Release is expired by nature, which it accepts
    snap = "http://snap.example/archive/debian/20261101T000000Z"
    opts = opts.overridden(snapshots=[("trixie", snap)])
    pinned = stacks.stack_apt(stacks.STACKS["trixie"], opts)
    assert pinned.mirrors == Mirrors(snap, "http://snap.example/archive/debian-security/20261101T000000Z")
    assert pinned.allow_expired_release and snap in pinned.why_expired_ok
    assert stacks.stack_apt(stacks.STACKS["bookworm"], opts).mirrors.main == "http://mirror.example/debian"


def test_build_archive_options_from_the_command_line_and_the_environment(monkeypatch):
    """`build --mirror/--security-mirror/--snapshot` become one ArchiveOptions value, over the
    environment variables a user may set instead; os.environ is left as it was."""
    import os

    from harness.cli.main import make_parser
    from harness.cli.runs import archive_from_environment
    for name in (MIRROR_ENV, SECURITY_MIRROR_ENV, "BALLOON_HARNESS_SNAPSHOT_SID", "BALLOON_HARNESS_SNAPSHOT_TRIXIE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(MIRROR_ENV, "http://env.example/debian")
    monkeypatch.setenv("BALLOON_HARNESS_SNAPSHOT_TRIXIE", "http://snap.example/archive/debian/1")
    before = dict(os.environ)
    assert archive_from_environment() == stacks.ArchiveOptions(
        mirror="http://env.example/debian", snapshots=(("trixie", "http://snap.example/archive/debian/1"),))
    args = make_parser().parse_args(["build", "--stack", "sid", "--mirror", "http://m.example/debian",
                                     "--security-mirror", "http://s.example/debian-security",
                                     "--snapshot", "sid=http://snap.example/archive/debian/20261101T000000Z"])
    opts = archive_from_environment(args)
    assert opts.mirror == "http://m.example/debian" and opts.security_mirror == "http://s.example/debian-security"
    assert opts.snapshot_for(stacks.STACKS["sid"]).endswith("20261101T000000Z")
    assert opts.snapshot_for(stacks.STACKS["trixie"]) == "http://snap.example/archive/debian/1"
    assert dict(os.environ) == before
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="STACK=URL"):
        archive_from_environment(make_parser().parse_args(["build", "--snapshot", "sid"]))
    with pytest.raises(ConfigError, match="unknown stack"):
        archive_from_environment(make_parser().parse_args(["build", "--snapshot", "jessie=http://x"]))


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
    path.write_text(path.read_text().replace('stack = "bookworm"', 'stack = "jessie"'))
    with pytest.raises(ConfigError, match="arms\\[1\\].stack.*must be one of"):
        load_scenario(path)
