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
a local mirror or proxy keeps using it. A host whose sources have no security
entry (a plain ``debootstrap`` root, some CI images) gets the security archive
derived from its main one (``.../debian`` -> ``.../debian-security``, the layout
of Debian's own archive and of snapshot archives); either address can also be
given explicitly (the CLI's ``--mirror``/``--security-mirror``, the environment's
``BALLOON_HARNESS_MIRROR``/``BALLOON_HARNESS_SECURITY_MIRROR``, read by
``stacks.py``). No archive host is named here.

A rolling release (``sid``) has neither ``-updates`` nor a security suite, and an
archive that is a frozen copy (a snapshot, or a mirror that stopped syncing) serves
a ``Release`` past its ``Valid-Until``. apt refuses that unless told
``Acquire::Check-Valid-Until=false``; the private configuration states that
setting explicitly either way (whatever the host's ``apt.conf.d`` says), from the
caller's ``allow_expired_release``. Signatures are checked in both cases.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

from harness.artifacts.steps import capture, run_step, say
from harness.artifacts.steps import tail as tail_text
from harness.errors import BuildError, ConfigError, MissingDependency

# Releases this module can configure: codename -> Debian version number (the
# number names the release's keys in the archive keyring: "(13/trixie)").
# Only releases whose security suite is "<codename>-security" (bullseye on).
RELEASES: dict[str, int | None] = {"bullseye": 11, "bookworm": 12, "trixie": 13, "forky": 14,
                                   "sid": None}
# Releases without -updates and -security suites: unstable only has its one suite.
ROLLING = frozenset({"sid"})
MIRROR_ENV = "BALLOON_HARNESS_MIRROR"
SECURITY_MIRROR_ENV = "BALLOON_HARNESS_SECURITY_MIRROR"

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
    """The paragraphs of deb822 text (a ``*.sources`` file, ``apt-cache show``), field names
    lower-cased and continuation lines joined by newlines, each line stripped.

    python-debian's parser (the one Debian's own tools use) handles comments, continuation
    lines and field-name case as dpkg does; a hand parser drifted on each of them."""
    from debian.deb822 import Deb822
    paragraphs = []
    for para in Deb822.iter_paragraphs(text.splitlines()):
        fields = {name.lower(): "\n".join(line.strip() for line in value.splitlines()).strip()
                  for name, value in para.items()}
        if fields:
            paragraphs.append(fields)
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
    security: str | None     # None: the host has none (derive it, or the release needs none)


def derive_security(main: str) -> str | None:
    """The security archive beside a main archive, when its address says where: the last
    path segment ``debian`` becomes ``debian-security`` (Debian's own archive and its
    mirrors that carry both; a snapshot archive ``.../archive/debian/<time>`` likewise).
    None when the address has no such segment."""
    scheme, sep, rest = main.rstrip("/").partition("://")
    if not sep:
        return None
    host, _, path = rest.partition("/")
    segments = path.split("/")
    for i in range(len(segments) - 1, -1, -1):
        if segments[i] == "debian":
            segments[i] = "debian-security"
            return f"{scheme}://{host}/{'/'.join(segments)}"
    return None


NO_SECURITY_HINT = (f"give it with `balloon-harness build --security-mirror URL` or the environment's "
                    f"{SECURITY_MIRROR_ENV}=URL")


def find_mirrors(entries: list[SourceEntry], need_security: bool = True) -> Mirrors:
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
                          "have no Debian main archive entry to take the mirror from; give it with "
                          f"`balloon-harness build --mirror URL` or the environment's {MIRROR_ENV}=URL")
    pick_main = sorted(main, key=rank)[0].uri.rstrip("/")
    if security:
        return Mirrors(pick_main, sorted(security, key=lambda e: 0 if e.type == "deb" else 1)[0].uri.rstrip("/"))
    if not need_security:
        return Mirrors(pick_main, None)
    derived = derive_security(pick_main)
    if derived is None:
        raise ConfigError(f"the host's apt sources have no Debian security archive entry (suite "
                          f"<codename>-security), and the main archive {pick_main} does not say where "
                          f"one is; {NO_SECURITY_HINT}")
    return Mirrors(pick_main, derived)


# ---------------------------------------------------------------- generated config

def suites(release: str, mirrors: Mirrors) -> list[tuple[str, str]]:
    """(archive, suite) of a release: the release, its ``-updates`` and ``-security``;
    a rolling release (sid) has only its own suite."""
    if release in ROLLING:
        return [(mirrors.main, release)]
    if mirrors.security is None:
        raise ConfigError(f"Debian {release} needs a security archive; {NO_SECURITY_HINT}")
    return [(mirrors.main, release), (mirrors.main, f"{release}-updates"),
            (mirrors.security, f"{release}-security")]


def sources_list_text(release: str, mirrors: Mirrors, keyring: Path) -> str:
    """The private ``sources.list``: deb + deb-src of main for each of the release's
    suites (:func:`suites`), each signed by ``keyring``."""
    opts = f"[signed-by={keyring}]"
    lines = [f"# private apt for Debian {release} (generated by harness.artifacts.apt)"]
    for kind in ("deb", "deb-src"):
        lines += [f"{kind} {opts} {uri} {suite} main" for uri, suite in suites(release, mirrors)]
    return "\n".join(lines) + "\n"


def _quote(value: Path | str) -> str:
    s = str(value)
    if '"' in s or "\n" in s:
        raise ConfigError(f"path not usable in an apt configuration: {s!r}")
    return f'"{s}"'


def apt_conf_text(root: Path, keyring: Path, allow_expired_release: bool = False) -> str:
    """The private apt configuration (given to apt-get/apt-cache with ``-c``).

    It is read after the host's ``apt.conf``/``apt.conf.d`` and overrides
    every source, state, cache, preference and trust location, so the host's
    package lists, pins and dpkg status never leak in, while its network
    settings (proxy, retries) still apply. ``Acquire::Check-Valid-Until`` and
    ``Acquire::Check-Date`` are stated either way: whether an expired Release is
    acceptable is the stack's decision, not whatever a host's configuration happens
    to say (this project's machine turns both off for every source).
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
        # Check-Date false turns the Valid-Until check off as well (apt 2.6), so both
        # are stated: dates checked always, expiry unless the caller accepts it.
        ("Acquire::Check-Date", "true"),
        ("Acquire::Check-Valid-Until", "false" if allow_expired_release else "true"),
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


def release_valid_until(inrelease: str) -> float | None:
    """The ``Valid-Until`` of a Release/InRelease file's text as a Unix time (None: the
    file has none, as stable's main suite)."""
    m = re.search(r"^Valid-Until:\s*(.+)$", inrelease, re.M)
    if not m:
        return None
    try:
        return parsedate_to_datetime(m.group(1).strip()).timestamp()
    except (TypeError, ValueError):
        return None


def newest_first(versions: list[str]) -> list[str]:
    """Debian versions sorted newest first (madison lists them in archive order, which is not
    version order in sid). python-debian's ``Version`` orders them as ``dpkg --compare-versions``
    does, without a process per comparison."""
    from debian.debian_support import Version
    return sorted(dict.fromkeys(versions), key=Version, reverse=True)


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
                 host_entries: list[SourceEntry] | None = None, log: Path | None = None,
                 allow_expired_release: bool = False, why_expired_ok: str = ""):
        if release not in RELEASES:
            raise ConfigError(f"unknown Debian release {release!r}: PrivateApt knows "
                              f"{', '.join(sorted(RELEASES, key=lambda r: RELEASES[r] or 99))}")
        self.release = release
        self.root = Path(root).resolve()
        self.keyring = Path(keyring)
        need_security = release not in ROLLING
        self.derived_security = False
        if mirror is None or (security_mirror is None and need_security):
            if mirror is not None and security_mirror is None:
                # the main archive is given: the security one beside it, not the host's
                derived = derive_security(mirror)
                if derived is None:
                    raise ConfigError(f"no security archive is known for the main archive {mirror}; "
                                      f"{NO_SECURITY_HINT}")
                security_mirror, self.derived_security = derived, True
            else:
                entries = host_sources() if host_entries is None else host_entries
                found = find_mirrors(entries, need_security)
                mirror = mirror or found.main
                if security_mirror is None and found.security is not None:
                    self.derived_security = not any(
                        _suite_base(e.suite)[1] == "-security" for e in entries)
                    security_mirror = found.security
        self.mirrors = Mirrors(mirror.rstrip("/"), security_mirror.rstrip("/") if security_mirror else None)
        self.allow_expired_release = allow_expired_release
        self.why_expired_ok = why_expired_ok
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
        (self.root / "etc" / "sources.list").write_text(self.sources_text())
        status = self.root / "state" / "status"
        if not status.exists():
            status.write_text("")
        self.conf.write_text(apt_conf_text(self.root, self.keyring, self.allow_expired_release))

    def sources_text(self) -> str:
        return sources_list_text(self.release, self.mirrors, self.keyring)

    def configured(self) -> bool:
        """Whether the folder's sources and configuration are what this object would write
        (a changed archive address or expiry rule needs a new ``update``)."""
        try:
            return ((self.root / "etc" / "sources.list").read_text() == self.sources_text()
                    and self.conf.read_text() == apt_conf_text(self.root, self.keyring,
                                                               self.allow_expired_release))
        except OSError:
            return False

    def expired_releases(self, now: float | None = None) -> list[tuple[str, float]]:
        """(list file, Valid-Until) of every fetched Release past its Valid-Until."""
        now = time.time() if now is None else now
        out = []
        for f in sorted((self.root / "state" / "lists").glob("*Release")):
            until = release_valid_until(f.read_text(errors="replace"))
            if until is not None and until < now:
                out.append((f.name, until))
        return out

    def check_keyring(self) -> None:
        """Fail early, and clearly, if the keyring has no keys of this release."""
        if not shutil.which("gpg") or RELEASES[self.release] is None:
            # no gpg, or a rolling release (sid is signed with the keys of the current
            # releases, named after them): apt's own signature check still runs in update()
            return
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
        """``apt-get update`` of the private lists; returns its wall time. An expired
        Release accepted on purpose is said, with its date; a derived security archive
        that fails is named with the way to give it."""
        self.write_config()
        self.check_keyring()
        try:
            seconds = run_step(f"apt-get update (private {self.release})",
                               self._apt("apt-get", "update", "--error-on=any"), self.log)
        except BuildError as e:
            if self.derived_security:
                raise BuildError(f"{e}\n(the security archive {self.mirrors.security} was derived from "
                                 f"the main archive {self.mirrors.main}: if it is not there, "
                                 f"{NO_SECURITY_HINT})") from None
            if not self.allow_expired_release and "is not valid yet" not in str(e) and "expired" in tail_text(self.log):
                raise BuildError(f"{e}\n(an expired Release: a frozen archive copy or snapshot; a stack accepts "
                                 "it only when its definition or its snapshot address says so)") from None
            raise
        if self.allow_expired_release:
            for name, until in self.expired_releases():
                days = (time.time() - until) / 86400
                say(f"private apt {self.release}: {name} expired "
                    f"{time.strftime('%Y-%m-%d', time.gmtime(until))} ({days:.0f} days ago), accepted on purpose"
                    f"{': ' + self.why_expired_ok if self.why_expired_ok else ''}; its signature was checked")
        return seconds

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
        """Binary (or, with ``source``, source) versions of ``package`` in the archive,
        newest first."""
        kind = "Sources" if source else "Packages"
        return newest_first([version for version, where in self.madison(package) if where.endswith(kind)])

    def source_fetchable(self, package: str, version: str) -> bool:
        """Whether the archive really serves ``package``'s source ``version``: its ``.dsc``
        downloads (an archive copy can list a source in ``Sources`` whose files it lacks)."""
        with tempfile.TemporaryDirectory(prefix="dsc-", dir=self.root) as tmp:
            proc = subprocess.run(self._apt("apt-get", "source", "--only-source", "--download-only",
                                            "--dsc-only", f"{package}={version}"),
                                  cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            return proc.returncode == 0 and any(Path(tmp).glob("*.dsc"))

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
