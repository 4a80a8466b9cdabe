"""A private apt for one Debian release, independent of the host's own apt sources.

The guest stack (kernel, QEMU source) may come from another Debian release than
the host runs, e.g. trixie on a bookworm host. :class:`PrivateApt` keeps a
complete apt configuration for that release in a folder of its own: its
``sources.list`` (``deb`` and ``deb-src``, ``main``, the release, its
``-updates`` and its security suite), its package lists, its archive cache, an
empty ``dpkg`` status file and Debian's archive keyring for the signature
checks. Every ``apt-get``/``apt-cache`` call gets that configuration with
``-c FILE`` (read after the host's ``apt.conf.d``, so a proxy configured there
still applies). Nothing under ``/etc/apt`` is read for sources or changed, and
nothing is installed: the private apt only resolves, downloads and unpacks.

The archive addresses are the host's own: the mirror of the host's Debian
main archive and of its security archive, as found in ``/etc/apt/sources.list``
and ``/etc/apt/sources.list.d/*.list`` / ``*.sources`` (deb822). A host behind
a local mirror or proxy keeps using it. No archive host is named here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.artifacts.steps import capture, run_step
from harness.errors import BuildError, ConfigError, MissingDependency

# Releases this module can configure: codename -> Debian version number (the
# number names the release's keys in the archive keyring: "(13/trixie)").
# Only releases whose security suite is "<codename>-security" (bullseye on).
RELEASES = {"bullseye": 11, "bookworm": 12, "trixie": 13, "forky": 14}

# Suite names that identify Debian's own archive in a host's sources.
_DEBIAN_CODENAMES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid"}
_DEBIAN_ALIASES = {"oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental"}
_MAIN_SUFFIXES = ("", "-updates", "-backports", "-proposed-updates", "-backports-sloppy")

DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
HOST_SOURCES = Path("/etc/apt/sources.list")
HOST_SOURCE_PARTS = Path("/etc/apt/sources.list.d")


# ---------------------------------------------------------------- host sources

@dataclass(frozen=True)
class SourceEntry:
    """One (type, URI, suite) of a host apt source, either format."""

    type: str                      # "deb" or "deb-src"
    uri: str
    suite: str
    components: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    origin: str = field(default="", compare=False, hash=False)   # file it came from


def parse_one_line(text: str, origin: str = "") -> list[SourceEntry]:
    """Entries of a one-line-style ``sources.list`` (``deb [opts] URI suite comp...``)."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = {}
        for opt in (m.group(2) or "").split():
            key, _, value = opt.partition("=")
            opts[key.strip().lower()] = value.strip()
        entries.append(SourceEntry(m.group(1), m.group(3), m.group(4), tuple(m.group(5).split()),
                                   opts, origin))
    return entries


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:               # continuation line
            current[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def parse_deb822(text: str, origin: str = "") -> list[SourceEntry]:
    """Entries of a deb822 ``*.sources`` file (``Enabled: no`` stanzas are skipped)."""
    entries = []
    for para in _deb822_paragraphs(text):
        if para.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        types = para.get("types", "").split()
        uris = para.get("uris", "").split()
        suites = para.get("suites", "").split()
        comps = tuple(para.get("components", "").split())
        opts = {k: v for k, v in para.items() if k not in ("types", "uris", "suites", "components")}
        for t in types:
            if t not in ("deb", "deb-src"):
                continue
            for uri in uris:
                for suite in suites:
                    entries.append(SourceEntry(t, uri, suite, comps, opts, origin))
    return entries


def host_sources(sources_list: Path = HOST_SOURCES, parts: Path = HOST_SOURCE_PARTS) -> list[SourceEntry]:
    """Every enabled entry of the host's apt sources (read only)."""
    entries: list[SourceEntry] = []
    if sources_list.is_file():
        entries += parse_one_line(sources_list.read_text(errors="replace"), str(sources_list))
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.suffix == ".list":
                entries += parse_one_line(f.read_text(errors="replace"), str(f))
            elif f.suffix == ".sources":
                entries += parse_deb822(f.read_text(errors="replace"), str(f))
    return entries


def _suite_base(suite: str) -> tuple[str, str]:
    """``bookworm-security`` -> (``bookworm``, ``-security``); ``buster/updates`` too."""
    if suite.endswith("/updates"):
        return suite[: -len("/updates")], "-security"
    for suffix in ("-security", "-updates", "-backports-sloppy", "-backports", "-proposed-updates"):
        if suite.endswith(suffix):
            return suite[: -len(suffix)], suffix
    return suite, ""


def _is_debian_suite(suite: str) -> bool:
    base, _ = _suite_base(suite)
    return base in _DEBIAN_CODENAMES or base in _DEBIAN_ALIASES


@dataclass(frozen=True)
class Mirrors:
    """The host's Debian archive addresses: main archive and security archive."""

    main: str
    security: str


def find_mirrors(entries: list[SourceEntry]) -> Mirrors:
    """The main and security archive URIs among the host's entries.

    Debian's archives are told from other repositories by their suite names
    (a Debian codename or alias, with ``-updates``, ``-security`` ...), not by
    host names. ``deb`` lines win over ``deb-src``, and plain release suites
    over ``-updates``/``-backports``, when several mirrors are configured.
    """
    def rank(e: SourceEntry) -> tuple[int, int]:
        return (0 if e.type == "deb" else 1, _MAIN_SUFFIXES.index(_suite_base(e.suite)[1]))

    main = [e for e in entries if _is_debian_suite(e.suite) and "main" in e.components
            and _suite_base(e.suite)[1] in _MAIN_SUFFIXES and not e.uri.startswith("cdrom:")]
    security = [e for e in entries if _is_debian_suite(e.suite) and "main" in e.components
                and _suite_base(e.suite)[1] == "-security"]
    if not main:
        raise ConfigError("the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/) "
                          "have no Debian main archive entry to take the mirror from; "
                          "give PrivateApt(mirror=...) explicitly")
    if not security:
        raise ConfigError("the host's apt sources have no Debian security archive entry "
                          "(suite <codename>-security) to take the mirror from; "
                          "give PrivateApt(security_mirror=...) explicitly")
    pick_main = sorted(main, key=rank)[0]
    pick_sec = sorted(security, key=lambda e: 0 if e.type == "deb" else 1)[0]
    return Mirrors(pick_main.uri.rstrip("/"), pick_sec.uri.rstrip("/"))


# ---------------------------------------------------------------- generated config

def sources_list_text(release: str, mirrors: Mirrors, keyring: Path) -> str:
    """The private ``sources.list``: deb + deb-src of main for the release,
    ``-updates`` and ``-security``, each signed by ``keyring``."""
    opts = f"[signed-by={keyring}]"
    lines = [f"# private apt for Debian {release} (generated by harness.artifacts.apt)"]
    for kind in ("deb", "deb-src"):
        lines.append(f"{kind} {opts} {mirrors.main} {release} main")
        lines.append(f"{kind} {opts} {mirrors.main} {release}-updates main")
        lines.append(f"{kind} {opts} {mirrors.security} {release}-security main")
    return "\n".join(lines) + "\n"


def _quote(value: Path | str) -> str:
    s = str(value)
    if '"' in s or "\n" in s:
        raise ConfigError(f"path not usable in an apt configuration: {s!r}")
    return f'"{s}"'


def apt_conf_text(root: Path, keyring: Path) -> str:
    """The private apt configuration (given to apt-get/apt-cache with ``-c``).

    It is read after the host's ``apt.conf``/``apt.conf.d`` and overrides
    every source, state, cache, preference and trust location, so the host's
    package lists, pins and dpkg status never leak in, while its network
    settings (proxy, retries) still apply.
    """
    settings: list[tuple[str, Path | str]] = [
        ("Dir::Etc::SourceList", root / "etc" / "sources.list"),
        ("Dir::Etc::SourceParts", root / "etc" / "sources.list.d"),
        ("Dir::Etc::Preferences", root / "etc" / "preferences"),
        ("Dir::Etc::PreferencesParts", root / "etc" / "preferences.d"),
        ("Dir::Etc::Trusted", keyring),
        ("Dir::Etc::TrustedParts", root / "etc" / "trusted.gpg.d"),
        ("Dir::State", root / "state"),
        ("Dir::State::Lists", root / "state" / "lists"),
        ("Dir::State::status", root / "state" / "status"),
        ("Dir::State::extended_states", root / "state" / "extended_states"),
        ("Dir::Cache", root / "cache"),
        ("Dir::Cache::Archives", root / "cache" / "archives"),
        ("Dir::Cache::pkgcache", root / "cache" / "pkgcache.bin"),
        ("Dir::Cache::srcpkgcache", root / "cache" / "srcpkgcache.bin"),
        ("Acquire::Languages", "none"),
        ("APT::Get::List-Cleanup", "true"),
        ("APT::Default-Release", ""),
    ]
    lines = ["// private apt configuration (generated by harness.artifacts.apt)"]
    lines += [f"{k} {_quote(v)};" for k, v in settings]
    return "\n".join(lines) + "\n"


def keyring_releases(colons: str) -> set[str]:
    """Release codenames a keyring has keys for, from ``gpg --show-keys --with-colons``
    output (uids such as ``Debian Archive Automatic Signing Key (13/trixie)``)."""
    found = set()
    for line in colons.splitlines():
        if line.startswith("uid:"):
            for m in re.finditer(r"\((\d+)/([a-z]+)\)", line):
                found.add(m.group(2))
    return found


# ---------------------------------------------------------------- the private apt

@dataclass(frozen=True)
class Candidate:
    package: str
    version: str


class PrivateApt:
    """apt for ``release`` in the folder ``root`` (created on first use).

    >>> apt = PrivateApt("trixie", cache_root() / "apt" / "trixie")
    >>> apt.update()
    >>> apt.candidate("linux-image-cloud-amd64")
    """

    def __init__(self, release: str, root: Path, *, keyring: Path = DEFAULT_KEYRING,
                 mirror: str | None = None, security_mirror: str | None = None,
                 host_entries: list[SourceEntry] | None = None, log: Path | None = None):
        if release not in RELEASES:
            raise ConfigError(f"unknown Debian release {release!r}: PrivateApt knows "
                              f"{', '.join(sorted(RELEASES, key=lambda r: RELEASES[r]))}")
        self.release = release
        self.root = Path(root).resolve()
        self.keyring = Path(keyring)
        if mirror is None or security_mirror is None:
            found = find_mirrors(host_sources() if host_entries is None else host_entries)
            mirror = mirror or found.main
            security_mirror = security_mirror or found.security
        self.mirrors = Mirrors(mirror.rstrip("/"), security_mirror.rstrip("/"))
        self.log = log or self.root / "apt.log"
        self.conf = self.root / "apt.conf"

    # -- set-up

    def write_config(self) -> None:
        """Create the folder layout, the sources list, the empty status and the config."""
        if not self.keyring.is_file():
            raise MissingDependency(f"archive keyring {self.keyring} not found: "
                                    "sudo apt-get install -y debian-archive-keyring")
        for d in ("etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d",
                  "state/lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "sources.list").write_text(
            sources_list_text(self.release, self.mirrors, self.keyring))
        status = self.root / "state" / "status"
        if not status.exists():
            status.write_text("")
        self.conf.write_text(apt_conf_text(self.root, self.keyring))

    def check_keyring(self) -> None:
        """Fail early, and clearly, if the keyring has no keys of this release."""
        if not shutil.which("gpg"):
            return  # apt's own signature check still runs in update()
        proc = subprocess.run(["gpg", "--show-keys", "--with-colons", str(self.keyring)],
                              capture_output=True, text=True)
        if proc.returncode == 0 and self.release not in keyring_releases(proc.stdout):
            raise MissingDependency(
                f"{self.keyring} has no keys for Debian {self.release} "
                f"({RELEASES[self.release]}/{self.release}): install a newer debian-archive-keyring "
                "or give PrivateApt(keyring=...) a keyring that has them")

    def _apt(self, tool: str, *args: str) -> list[str]:
        return [tool, "-c", str(self.conf), *args]

    def update(self) -> float:
        """``apt-get update`` of the private lists; returns its wall time."""
        self.write_config()
        self.check_keyring()
        return run_step(f"apt-get update (private {self.release})",
                        self._apt("apt-get", "update", "--error-on=any"), self.log)

    def _ensure_lists(self) -> None:
        if not self.conf.exists() or not any((self.root / "state" / "lists").glob("*_Packages*")):
            raise BuildError(f"private apt for {self.release} in {self.root} has no package lists: "
                             "call update() first")

    # -- queries

    def candidate(self, package: str) -> str:
        """The version apt would pick for ``package`` in this release."""
        self._ensure_lists()
        out = capture(self._apt("apt-cache", "policy", package), f"apt-cache policy {package}")
        m = re.search(r"Candidate:\s*(\S+)", out)
        if not m or m.group(1) == "(none)":
            raise BuildError(f"Debian {self.release} has no package {package!r} (main, "
                             f"{self.release}-updates, {self.release}-security)")
        return m.group(1)

    def madison(self, package: str) -> list[tuple[str, str]]:
        """Every (version, where) of ``package``, binary and source, as ``apt-cache madison``
        lists them (``where``: ``<uri> <suite>/main amd64 Packages`` or ``... Sources``)."""
        self._ensure_lists()
        out = capture(self._apt("apt-cache", "madison", package), f"apt-cache madison {package}")
        rows = []
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[0] == package:
                rows.append((parts[1], parts[2]))
        return rows

    def versions(self, package: str, source: bool = False) -> list[str]:
        """Binary (or, with ``source``, source) versions of ``package`` in the archive."""
        kind = "Sources" if source else "Packages"
        seen: list[str] = []
        for version, where in self.madison(package):
            if where.endswith(kind) and version not in seen:
                seen.append(version)
        return seen

    def _require(self, package: str, version: str, source: bool = False) -> None:
        have = self.versions(package, source)
        if version not in have:
            what = "source package" if source else "package"
            listed = ", ".join(have) if have else "none"
            raise BuildError(f"Debian {self.release} has no {what} {package} {version} "
                             f"(the archive has: {listed})")

    def show(self, package: str, version: str | None = None) -> dict[str, str]:
        """The control fields of ``package`` (``version``, else the candidate)."""
        version = version or self.candidate(package)
        self._require(package, version)
        out = capture(self._apt("apt-cache", "show", "--no-all-versions", f"{package}={version}"),
                      f"apt-cache show {package}={version}")
        paragraphs = _deb822_paragraphs(out)
        if not paragraphs:
            raise BuildError(f"apt-cache show {package}={version} printed nothing")
        return paragraphs[0]

    def depends(self, package: str, version: str | None = None) -> list[str]:
        """The ``Depends`` of ``package`` (``version``, else the candidate), one string per
        clause as written (``name (= version)``, alternatives ``a | b``)."""
        fields = self.show(package, version)
        return [d.strip() for d in fields.get("depends", "").replace("\n", " ").split(",") if d.strip()]

    def resolve(self, meta: str, prefix: str, version: str | None = None) -> Candidate:
        """The versioned package a metapackage depends on, with the version it pins
        (``linux-image-cloud-amd64`` -> ``linux-image-6.12.N+deb13-cloud-amd64``)."""
        for clause in self.depends(meta, version):
            first = clause.split("|")[0].strip()
            m = re.match(r"(\S+)(?:\s*\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", first)
            if m and m.group(1).startswith(prefix):
                name = m.group(1)
                pinned = m.group(3) if m.group(2) == "=" else self.candidate(name)
                return Candidate(name, pinned)
        raise BuildError(f"{meta} in Debian {self.release} depends on no {prefix}* package")

    # -- fetching

    def download(self, package: str, version: str, dest: Path) -> Path:
        """``apt-get download package=version`` into ``dest``; returns the ``.deb``."""
        self._require(package, version)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        run_step(f"download {package} {version} ({self.release})",
                 self._apt("apt-get", "download", f"{package}={version}"), self.log, cwd=dest)
        plain = version.split(":", 1)[-1]
        debs = [p for p in dest.glob(f"{package}_*.deb")
                if p.name.split("_")[1].replace("%3a", ":").split(":", 1)[-1] == plain]
        if not debs:
            raise BuildError(f"apt-get download {package}={version} produced no .deb in {dest}")
        return debs[0]

    def source(self, package: str, version: str, dest: Path) -> Path:
        """``apt-get source package=version`` into ``dest`` (``dpkg-source -x`` applies
        Debian's patches); returns the extracted tree."""
        if not shutil.which("dpkg-source"):
            raise MissingDependency("apt-get source needs dpkg-source: sudo apt-get install -y dpkg-dev")
        self._require(package, version, source=True)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        before = {p for p in dest.iterdir() if p.is_dir()}
        run_step(f"apt-get source {package} {version} ({self.release})",
                 self._apt("apt-get", "source", "--only-source", f"{package}={version}"),
                 self.log, cwd=dest)
        upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
        tree = dest / f"{package}-{upstream}"
        if not tree.is_dir():
            new = sorted({p for p in dest.iterdir() if p.is_dir()} - before)
            if len(new) != 1:
                raise BuildError(f"apt-get source {package}={version}: no {tree.name} in {dest}")
            tree = new[0]
        return tree
