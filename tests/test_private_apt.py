"""The private apt (harness.artifacts.apt): host sources parsing, generated configuration,
and (marked ``build``) a real update of a trixie private apt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.artifacts import apt
from harness.artifacts.apt import (
    RELEASES,
    Mirrors,
    PrivateApt,
    apt_conf_text,
    derive_security,
    find_mirrors,
    host_sources,
    keyring_releases,
    newest_first,
    parse_deb822,
    parse_one_line,
    release_valid_until,
    sources_list_text,
    suites,
)
from harness.errors import BuildError, ConfigError

ONE_LINE = """\
# the main archive, through a local caching proxy
deb http://cache.example:3142/debian bookworm main contrib
deb-src [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://cache.example:3142/debian bookworm main
deb http://cache.example:3142/debian bookworm-updates main  # trailing comment
deb http://cache.example:3142/debian-security bookworm-security main
# deb http://disabled.example/debian bookworm main
deb https://vendor.example/apt nodistro main
"""

DEB822 = """\
Types: deb deb-src
# a comment inside the stanza
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://old.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: https://vendor.example/node
Suites: nodistro
Components: main
"""


def test_parse_one_line_format():
    entries = parse_one_line(ONE_LINE, "fixture.list")
    assert [(e.type, e.uri, e.suite) for e in entries] == [
        ("deb", "http://cache.example:3142/debian", "bookworm"),
        ("deb-src", "http://cache.example:3142/debian", "bookworm"),
        ("deb", "http://cache.example:3142/debian", "bookworm-updates"),
        ("deb", "http://cache.example:3142/debian-security", "bookworm-security"),
        ("deb", "https://vendor.example/apt", "nodistro"),
    ]
    assert entries[0].components == ("main", "contrib")
    assert entries[1].options == {"arch": "amd64", "signed-by": "/usr/share/keyrings/debian.gpg"}
    assert entries[2].components == ("main",)
    assert entries[0].origin == "fixture.list"


def test_parse_deb822_format():
    entries = parse_deb822(DEB822, "fixture.sources")
    assert [(e.type, e.uri, e.suite) for e in entries] == [
        ("deb", "http://mirror.example/debian", "bookworm"),
        ("deb", "http://mirror.example/debian", "bookworm-updates"),
        ("deb-src", "http://mirror.example/debian", "bookworm"),
        ("deb-src", "http://mirror.example/debian", "bookworm-updates"),
        ("deb", "http://mirror.example/debian-security", "bookworm-security"),
        ("deb", "https://vendor.example/node", "nodistro"),
    ]   # the Enabled: no stanza is gone
    assert entries[0].options["signed-by"] == "/usr/share/keyrings/debian-archive-keyring.gpg"


@pytest.mark.parametrize("text,parse", [(ONE_LINE, parse_one_line), (DEB822, parse_deb822)])
def test_find_mirrors_takes_debian_archives_by_suite(text, parse):
    mirrors = find_mirrors(parse(text))
    host = "cache.example:3142" if parse is parse_one_line else "mirror.example"
    assert mirrors == Mirrors(f"http://{host}/debian", f"http://{host}/debian-security")


def test_find_mirrors_old_security_suite_and_preferences():
    entries = parse_one_line(
        "deb-src http://a.example/debian bullseye main\n"
        "deb http://b.example/debian bullseye-backports main\n"
        "deb http://c.example/debian bullseye main\n"
        "deb http://s.example/debian-security buster/updates main\n")
    # deb before deb-src, the plain release suite before -backports
    assert find_mirrors(entries) == Mirrors("http://c.example/debian", "http://s.example/debian-security")


def test_find_mirrors_refuses_missing_archives():
    with pytest.raises(ConfigError, match="no Debian main archive"):
        find_mirrors(parse_one_line("deb https://vendor.example/apt nodistro main\n"))
    # a security archive that cannot be derived names the ways to give it
    with pytest.raises(ConfigError, match="no Debian security archive.*--security-mirror URL.*"
                                          "BALLOON_HARNESS_SECURITY_MIRROR"):
        find_mirrors(parse_one_line("deb http://m.example/mirror/ trixie main\n"))


def test_a_host_without_a_security_entry_gets_it_derived_from_the_main_archive():
    """A plain debootstrap root's sources: the main archive only (issue 22, lever 9)."""
    entries = parse_one_line("deb http://m.example/debian trixie main\n")
    assert find_mirrors(entries) == Mirrors("http://m.example/debian", "http://m.example/debian-security")
    assert find_mirrors(entries, need_security=False) == Mirrors("http://m.example/debian", None)
    assert derive_security("http://snap.example/archive/debian/20261101T000000Z/") == \
        "http://snap.example/archive/debian-security/20261101T000000Z"
    assert derive_security("http://m.example/ubuntu") is None
    assert derive_security("not a url") is None


def test_a_derived_security_archive_is_marked_and_an_explicit_one_wins(tmp_path):
    a = PrivateApt("trixie", tmp_path / "a", host_entries=parse_one_line("deb http://m.example/debian trixie main\n"))
    assert a.derived_security and a.mirrors.security == "http://m.example/debian-security"
    b = PrivateApt("trixie", tmp_path / "b", mirror="http://x.example/debian")
    assert b.derived_security and b.mirrors == Mirrors("http://x.example/debian", "http://x.example/debian-security")
    c = PrivateApt("trixie", tmp_path / "c", mirror="http://x.example/debian", security_mirror="http://s.example/sec")
    assert not c.derived_security and c.mirrors.security == "http://s.example/sec"
    with pytest.raises(ConfigError, match="--security-mirror"):
        PrivateApt("trixie", tmp_path / "d", mirror="http://x.example/mirror")


def test_sid_has_one_suite_and_needs_no_security_archive(tmp_path):
    a = PrivateApt("sid", tmp_path, keyring=Path(__file__),
                   host_entries=parse_one_line("deb http://m.example/mirror bookworm main\n"))
    assert a.mirrors == Mirrors("http://m.example/mirror", None)
    lines = [l for l in a.sources_text().splitlines() if not l.startswith("#")]
    assert lines == [f"deb [signed-by={Path(__file__)}] http://m.example/mirror sid main",
                     f"deb-src [signed-by={Path(__file__)}] http://m.example/mirror sid main"]
    assert suites("sid", a.mirrors) == [("http://m.example/mirror", "sid")]
    with pytest.raises(ConfigError, match="needs a security archive"):
        suites("trixie", Mirrors("http://m.example/mirror", None))


def test_the_expired_release_rule_is_stated_either_way(tmp_path):
    def setting(allow: bool) -> str:
        conf = dict(re.findall(r'^(\S+) "([^"]*)";$', apt_conf_text(tmp_path, Path("/k.gpg"), allow), re.M))
        return conf["Acquire::Check-Valid-Until"]
    assert setting(False) == "true" and setting(True) == "false"
    assert "Acquire::Check-Date \"true\";" in apt_conf_text(tmp_path, Path("/k.gpg"), True)
    a = PrivateApt("sid", tmp_path, keyring=Path(__file__), mirror="http://m.example/debian",
                   allow_expired_release=True)
    a.write_config()
    assert a.configured()
    lists = tmp_path / "state" / "lists"
    (lists / "m_dists_sid_InRelease").write_text(
        "Origin: Debian\nDate: Fri, 30 Oct 2026 08:08:01 UTC\nValid-Until: Fri, 06 Nov 2026 08:08:01 UTC\n")
    (lists / "m_dists_trixie_InRelease").write_text("Origin: Debian\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n")
    expired = a.expired_releases(now=release_valid_until("Valid-Until: Mon, 30 Nov 2026 00:00:00 UTC"))
    assert [name for name, _ in expired] == ["m_dists_sid_InRelease"]
    # another archive address or rule is another configuration: update() again
    b = PrivateApt("sid", tmp_path, keyring=Path(__file__), mirror="http://other.example/debian",
                   allow_expired_release=True)
    c = PrivateApt("sid", tmp_path, keyring=Path(__file__), mirror="http://m.example/debian")
    assert not b.configured() and not c.configured()


def test_newest_first_orders_debian_versions():
    assert newest_first(["1:10.2.2+ds-1", "1:11.1.2+ds-3", "1:11.1.3+ds-1", "1:10.2.2+ds-1"]) == \
        ["1:11.1.3+ds-1", "1:11.1.2+ds-3", "1:10.2.2+ds-1"]
    assert newest_first(["7.2.9-1", "7.2.13-1", "7.2.10-1"]) == ["7.2.13-1", "7.2.10-1", "7.2.9-1"]


def test_host_sources_reads_both_formats_and_ignores_other_files(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "a.sources").write_text(DEB822)
    (parts / "b.list").write_text("deb http://two.example/debian-security bookworm-security main\n")
    (parts / "c.list.disabled").write_text("deb http://three.example/debian bookworm main\n")
    uris = {e.uri for e in host_sources(tmp_path / "sources.list", parts)}
    assert "http://three.example/debian" not in uris
    assert {"http://one.example/debian", "http://mirror.example/debian",
            "http://two.example/debian-security"} <= uris


def test_sources_list_text():
    text = sources_list_text("trixie", Mirrors("http://m.example/debian", "http://s.example/debian-security"),
                             Path("/k.gpg"))
    lines = [l for l in text.splitlines() if not l.startswith("#")]
    assert lines == [
        "deb [signed-by=/k.gpg] http://m.example/debian trixie main",
        "deb [signed-by=/k.gpg] http://m.example/debian trixie-updates main",
        "deb [signed-by=/k.gpg] http://s.example/debian-security trixie-security main",
        "deb-src [signed-by=/k.gpg] http://m.example/debian trixie main",
        "deb-src [signed-by=/k.gpg] http://m.example/debian trixie-updates main",
        "deb-src [signed-by=/k.gpg] http://s.example/debian-security trixie-security main",
    ]
    # what it writes parses back to the same entries
    assert len(parse_one_line(text)) == 6


def test_apt_conf_text_overrides_every_host_location(tmp_path):
    text = apt_conf_text(tmp_path, Path("/k.gpg"))
    conf = dict(re.findall(r'^(\S+) "([^"]*)";$', text, re.M))
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::Etc::Preferences",
                "Dir::Etc::PreferencesParts", "Dir::Etc::TrustedParts", "Dir::State",
                "Dir::State::Lists", "Dir::State::status", "Dir::Cache", "Dir::Cache::Archives"):
        assert conf[key].startswith(str(tmp_path)), key
    assert conf["Dir::Etc::Trusted"] == "/k.gpg"
    assert "/etc/apt" not in text
    with pytest.raises(ConfigError):
        apt_conf_text(Path('/tmp/a"b'), Path("/k.gpg"))


def test_no_archive_host_named_in_the_module():
    source = Path(apt.__file__).read_text()
    assert not re.search(r"debian\.org|https?://", source)


def test_keyring_releases():
    colons = ("pub:-:4096:1:AAAA:1:::-:::scSC::::::23::0:\n"
              "uid:-::::1::X::Debian Archive Automatic Signing Key (13/trixie) <ftpmaster@debian.org>::::::::::0:\n"
              "uid:-::::1::Y::Debian Stable Release Key (12/bookworm) <debian-release@lists.debian.org>::::::::::0:\n")
    assert keyring_releases(colons) == {"trixie", "bookworm"}


def test_unknown_release_is_refused(tmp_path):
    assert "sid" in RELEASES
    with pytest.raises(ConfigError, match="unknown Debian release 'jessie'"):
        PrivateApt("jessie", tmp_path, mirror="http://m.example/debian",
                   security_mirror="http://s.example/debian-security")


def test_layout_and_queries_before_update(tmp_path):
    a = PrivateApt("trixie", tmp_path, keyring=Path(__file__),
                   host_entries=parse_deb822(DEB822))
    assert a.mirrors == Mirrors("http://mirror.example/debian", "http://mirror.example/debian-security")
    a.write_config()
    assert (tmp_path / "state" / "status").read_text() == ""
    assert (tmp_path / "apt.conf").exists()
    assert "trixie-security" in (tmp_path / "etc" / "sources.list").read_text()
    with pytest.raises(BuildError, match="call update"):
        a.candidate("linux-image-cloud-amd64")


@pytest.mark.build
def test_trixie_private_apt_resolves_the_cloud_kernel(tmp_path):
    """Real network: update a trixie private apt and resolve the cloud kernel (~10-20 s)."""
    a = PrivateApt("trixie", tmp_path / "trixie")
    a.update()
    version = a.candidate("linux-image-cloud-amd64")
    assert version.startswith("6.12."), version
    image = a.resolve("linux-image-cloud-amd64", "linux-image-")
    assert re.fullmatch(r"linux-image-6\.12\.\d+\+deb13-cloud-amd64", image.package), image
    assert image.version == version
    assert "linux-source-6.12" in (a.show("linux-source-6.12", version)["package"],)
    assert a.candidate("qemu-system-x86").split(":", 1)[-1].startswith("10.0.")
    with pytest.raises(BuildError, match="has no package 'no-such-package-xyz'"):
        a.candidate("no-such-package-xyz")
    with pytest.raises(BuildError, match="no package linux-source-6.12 0.0-0"):
        a.download("linux-source-6.12", "0.0-0", tmp_path / "d")


@pytest.mark.build
def test_a_host_with_no_security_entry_still_updates_trixie(tmp_path):
    """Real network, issue 22 lever 9: the sources of a plain debootstrap root (main archive
    only); the security archive is derived from it and apt fetches all three suites."""
    main = find_mirrors(host_sources(), need_security=False).main
    a = PrivateApt("trixie", tmp_path / "t", host_entries=parse_one_line(f"deb {main} trixie main\n"))
    assert a.derived_security
    a.update()
    lists = {p.name for p in (tmp_path / "t" / "state" / "lists").glob("*Release")}
    assert any("trixie-security" in name for name in lists), lists


@pytest.mark.build
def test_sid_update_accepts_an_expired_release_only_on_purpose(tmp_path, caplog):
    """Real network: sid through this machine's archive (a frozen copy whose sid Release is
    past Valid-Until). Accepted, and said, when allowed; refused, naming why, when not. On a
    live archive the Release is current and only the first half applies."""
    allowed = PrivateApt("sid", tmp_path / "yes", allow_expired_release=True, why_expired_ok="test")
    with caplog.at_level("INFO", logger="harness.build"):
        allowed.update()
    assert allowed.candidate("linux-image-cloud-amd64").startswith("7.")
    expired = allowed.expired_releases()
    said = caplog.text
    if not expired:
        assert "accepted on purpose" not in said
        return
    assert "accepted on purpose: test; its signature was checked" in said
    refused = PrivateApt("sid", tmp_path / "no")
    with pytest.raises(BuildError, match="expired Release"):
        refused.update()
