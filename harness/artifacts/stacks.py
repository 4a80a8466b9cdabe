"""Guest stacks: a named, pinned set of guest kernel, kernel source and QEMU source,
independent of the host's distribution.

``bookworm`` is the RFC-era stack (Linux 6.1 cloud kernel, QEMU 7.2); ``trixie`` is
today's Debian stable (Linux 6.12, QEMU 10.0); ``sid`` is Debian unstable, today's
kernel and QEMU in packages. Each stack's packages come through a private apt
configuration of its own release kept in the cache (``apt.py``), never through the
host's sources; the host's apt only installs host tools.

Archive addresses (:class:`ArchiveOptions`, a value the CLI hands down): the host's own
by default; ``build --mirror/--security-mirror`` (or ``BALLOON_HARNESS_MIRROR`` and
``BALLOON_HARNESS_SECURITY_MIRROR``, read by the CLI) replace them for every stack; a
snapshot archive address (``Stack.snapshot``, or ``build --snapshot STACK=URL``, or
``BALLOON_HARNESS_SNAPSHOT_<STACK>``) pins one stack
to a frozen copy of its release, which is how a moving release (sid) is held still.
A snapshot's Release is expired by nature, so a stack on a snapshot accepts that, as
does a stack whose definition says so (``allow_expired_release``); the harness says
when it does, and apt still checks the signatures.

The exact versions are pinned in a lock file (``stacks.lock``, JSON): ``build`` takes
them, ``build --update`` resolves the newest ones and rewrites it. When the archive no
longer has a pinned version (Debian keeps only the newest kernel of a release), the
build says so and what ``--update`` would take.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from harness.arch import KERNEL_META_PACKAGE
from harness.artifacts import cache
from harness.artifacts.apt import MIRROR_ENV, SECURITY_MIRROR_ENV, PrivateApt
from harness.artifacts.steps import say
from harness.errors import BuildError, ConfigError
from harness.resources import CHECKOUT, data_dir

LOCK_NAME = "stacks.lock"
SNAPSHOT_ENV_PREFIX = "BALLOON_HARNESS_SNAPSHOT_"
LISTS_MAX_AGE = 24 * 3600    # refresh a stack's package lists when older than a day
QEMU_SOURCE = "qemu"


@dataclass(frozen=True)
class Stack:
    """What a stack is made of; the versions come from the lock file (:class:`Pins`)."""

    name: str
    release: str                    # Debian release of its packages
    linux_source: str               # the kernel source package of the guest kernel's branch
    guest_patches: str              # the RFC port for this kernel ("patched"), relative folder
    qemu_patches: str               # the RFC port for this QEMU
    meson: Optional[str] = None     # meson from PyPI for QEMU's configure (None: the host's)
    description: str = ""
    # Whether an expired Release is acceptable, and why (sid: the archive this harness
    # meets may be a frozen copy whose sid Release is weeks old; the packages in it are
    # still signed, and pins in stacks.lock say exactly which were used).
    allow_expired_release: bool = False
    expired_reason: str = ""
    snapshot: Optional[str] = None  # a snapshot archive address (main archive) pinning the release

    @property
    def snapshot_env(self) -> str:
        return f"{SNAPSHOT_ENV_PREFIX}{self.name.upper()}"

    @property
    def guest_patch_dir(self) -> Path:
        return data_dir("guest-kernel-patches") / self.guest_patches

    @property
    def qemu_patch_dir(self) -> Path:
        return data_dir("qemu-patches") / self.qemu_patches


STACKS: dict[str, Stack] = {
    "bookworm": Stack("bookworm", "bookworm", "linux-source-6.1", ".", ".",
                      description="Debian 12: Linux 6.1 cloud kernel, QEMU 7.2 (the RFC-era stack)"),
    "trixie": Stack("trixie", "trixie", "linux-source-6.12", "trixie", "trixie", meson="1.5.0",
                    description="Debian 13: Linux 6.12 cloud kernel, QEMU 10.0"),
    "sid": Stack("sid", "sid", "linux-source-7.2", "sid", "sid", meson="1.5.0",
                 description="Debian unstable: Linux 7.2 cloud kernel, the newest QEMU whose source "
                             "the archive serves",
                 allow_expired_release=True,
                 expired_reason="stack sid accepts it (a moving release, often reached through a "
                                "frozen archive copy; stacks.lock pins the exact versions used)"),
}
DEFAULT_STACK = "bookworm"


def get_stack(name: str) -> Stack:
    if name not in STACKS:
        raise ConfigError(f"unknown stack {name!r}: choose one of {', '.join(STACKS)}")
    return STACKS[name]


@dataclass(frozen=True)
class ArchiveOptions:
    """Where the stacks' packages come from, as the user said it (``build --mirror``,
    ``--security-mirror``, ``--snapshot STACK=URL``, or their environment variables, which
    the CLI reads): handed down to the build as this value, never through ``os.environ``.
    Empty means the host's own sources and the stacks' definitions."""

    mirror: Optional[str] = None
    security_mirror: Optional[str] = None
    snapshots: tuple[tuple[str, str], ...] = ()    # (stack, snapshot archive address)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ArchiveOptions:
        """The user's fallback: ``BALLOON_HARNESS_MIRROR``, ``..._SECURITY_MIRROR``, ``..._SNAPSHOT_<STACK>``."""
        return cls(mirror=environ.get(MIRROR_ENV) or None, security_mirror=environ.get(SECURITY_MIRROR_ENV) or None,
                   snapshots=tuple((s.name, environ[s.snapshot_env]) for s in STACKS.values()
                                   if environ.get(s.snapshot_env)))

    def overridden(self, mirror: Optional[str] = None, security_mirror: Optional[str] = None,
                   snapshots: Iterable[tuple[str, str]] = ()) -> ArchiveOptions:
        """These options with the command line's given ones in place (an unknown stack refused)."""
        added = dict(self.snapshots)
        for name, url in snapshots:
            added[get_stack(name).name] = url
        return ArchiveOptions(mirror or self.mirror, security_mirror or self.security_mirror,
                              tuple(sorted(added.items())))

    def snapshot_for(self, stack: Stack) -> Optional[str]:
        """The snapshot address the stack uses: the user's, else the stack definition's."""
        return dict(self.snapshots).get(stack.name) or stack.snapshot


@dataclass(frozen=True)
class Pins:
    """The exact versions of one stack."""

    kernel_package: str       # linux-image-6.1.0-NN-cloud-amd64
    kernel_version: str       # 6.1.NNN-N
    linux_source_version: str
    headers_package: str      # linux-headers-<release>
    headers_version: str
    qemu_source_version: str


def lock_path() -> Path:
    """``$BALLOON_HARNESS_LOCK``, else ``stacks.lock`` beside the harness package (a checkout
    or an unpacked tarball), else in the cache (an installed wheel: writable, seeded from the
    pins the wheel ships)."""
    explicit = os.environ.get("BALLOON_HARNESS_LOCK")
    if explicit:
        return Path(explicit)
    if (CHECKOUT / LOCK_NAME).exists() or (CHECKOUT / ".git").exists():
        return CHECKOUT / LOCK_NAME
    return cache.cache_root() / LOCK_NAME


def _shipped_lock() -> Optional[Path]:
    """The pins an installed wheel carries (harness/_data/stacks.lock)."""
    path = Path(str(resources.files("harness") / "_data" / LOCK_NAME))
    return path if path.is_file() else None


def read_lock(path: Optional[Path] = None) -> dict[str, Pins]:
    path = path or lock_path()
    shipped = _shipped_lock()
    if not path.exists() and shipped is not None:
        path = shipped
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise BuildError(f"{path} is not valid JSON ({e}): fix it or delete it and run "
                         f"`balloon-harness build --update`") from None
    try:
        return {name: Pins(**fields) for name, fields in raw.get("stacks", {}).items()}
    except TypeError as e:
        raise BuildError(f"{path}: unexpected fields ({e}); `balloon-harness build --update` rewrites it") from None


def write_lock(pins: dict[str, Pins], path: Optional[Path] = None) -> Path:
    path = path or lock_path()
    body = {"comment": "Exact package versions of each guest stack; `balloon-harness build --update` "
                       "refreshes them.",
            "stacks": {name: asdict(p) for name, p in sorted(pins.items())}}
    cache.write_atomic(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def stack_apt(stack: Stack, archive: ArchiveOptions = ArchiveOptions()) -> PrivateApt:
    """The stack's private apt, its archive addresses from (first wins) the stack's
    snapshot (the user's, then the definition's), the user's mirrors, the host's sources."""
    snapshot = archive.snapshot_for(stack)
    mirror = snapshot or archive.mirror
    security = archive.security_mirror
    if snapshot:
        security = None   # the snapshot's own security archive, derived from its address
        reason = f"stack {stack.name} is pinned to the snapshot {snapshot}, frozen by design"
    else:
        reason = stack.expired_reason
    return PrivateApt(stack.release, cache.cache_root() / "apt" / stack.release, mirror=mirror,
                      security_mirror=security,
                      allow_expired_release=stack.allow_expired_release or bool(snapshot),
                      why_expired_ok=reason)


def private_apt(stack: Stack, archive: ArchiveOptions = ArchiveOptions()) -> PrivateApt:
    """The stack's apt, its package lists refreshed when missing, older than a day, or
    configured for other archives than now."""
    apt = stack_apt(stack, archive)
    lists = apt.root / "state" / "lists"
    newest = max((p.stat().st_mtime for p in lists.glob("*_Packages*")), default=0.0)
    if time.time() - newest > LISTS_MAX_AGE or not apt.configured():
        apt.update()
    return apt


def resolve_pins(stack: Stack, apt: PrivateApt) -> Pins:
    """The newest versions the stack's release offers now."""
    kernel = apt.resolve(KERNEL_META_PACKAGE, "linux-image-")
    release = kernel.package.removeprefix("linux-image-")
    headers = f"linux-headers-{release}"
    sources = apt.versions(stack.linux_source)
    if kernel.version in sources:
        source_version = kernel.version
    elif sources:
        source_version = sources[0]
    else:
        raise BuildError(f"Debian {stack.release} has no {stack.linux_source}")
    qemu = apt.versions(QEMU_SOURCE, source=True)
    if not qemu:
        raise BuildError(f"Debian {stack.release} has no source package {QEMU_SOURCE}")
    return Pins(kernel.package, kernel.version, source_version, headers, kernel.version,
                _fetchable_source(stack, apt, QEMU_SOURCE, qemu))


def _fetchable_source(stack: Stack, apt: PrivateApt, package: str, versions: list[str]) -> str:
    """The newest of ``versions`` whose source the archive really serves. A copy of the
    archive can list a source in ``Sources`` whose files its pool lacks (this project's
    machine: sid lists QEMU 11.1 and serves only 10.2's files); that is said, not hidden."""
    skipped: list[str] = []
    for version in versions:
        if apt.source_fetchable(package, version):
            if skipped:
                say(f"stack {stack.name}: Debian {stack.release} lists {package} {', '.join(skipped)} but the "
                    f"archive ({apt.mirrors.main}) serves no source files for it: took {version}, the newest "
                    f"it serves")
            return version
        skipped.append(version)
    raise BuildError(f"Debian {stack.release} lists {package} {', '.join(versions)}, but the archive "
                     f"({apt.mirrors.main}) serves the source files of none of them")


def _check_available(stack: Stack, apt: PrivateApt, pins: Pins) -> None:
    missing = []
    for package, version, source in ((pins.kernel_package, pins.kernel_version, False),
                                     (stack.linux_source, pins.linux_source_version, False),
                                     (pins.headers_package, pins.headers_version, False),
                                     (QEMU_SOURCE, pins.qemu_source_version, True)):
        if version not in apt.versions(package, source=source):
            missing.append(f"{package} {version}")
    if missing:
        newest = resolve_pins(stack, apt)
        raise BuildError(
            f"stacks.lock pins {', '.join(missing)} for stack {stack.name}, which Debian {stack.release} "
            f"no longer has (it keeps only the newest). `balloon-harness build --update` would take: kernel "
            f"{newest.kernel_package} {newest.kernel_version}, {stack.linux_source} {newest.linux_source_version}, "
            f"QEMU source {newest.qemu_source_version} (cached builds of the old pins stay usable meanwhile)")


def pins_for(stack: Stack, update: bool = False,
             archive: ArchiveOptions = ArchiveOptions()) -> tuple[Pins, PrivateApt]:
    """The stack's pinned versions (resolved and written to the lock when absent or with
    ``update``), checked against the archive unless every artifact is already cached."""
    apt = private_apt(stack, archive)
    lock = read_lock()
    if update or stack.name not in lock:
        pins = resolve_pins(stack, apt)
        if lock.get(stack.name) != pins:
            lock[stack.name] = pins
            path = write_lock(lock)
            say(f"stack {stack.name}: pinned kernel {pins.kernel_version}, QEMU {pins.qemu_source_version} "
                f"in {path}")
        return pins, apt
    return lock[stack.name], apt


@dataclass(frozen=True)
class StackPackages:
    """One stack's packages as the build fetches them: the pinned versions, from the stack's
    private apt, each fetch checked first against what the archive still has (a clear
    error naming what ``--update`` would take, rather than apt's). The fetching side of the
    build: ``build.py`` builds from what these return and touches no archive itself."""

    stack: Stack
    pins: Pins
    apt: PrivateApt

    @classmethod
    def open(cls, stack: Stack, update: bool = False, archive: ArchiveOptions = ArchiveOptions()) -> StackPackages:
        pins, apt = pins_for(stack, update, archive)
        return cls(stack, pins, apt)

    def download(self, package: str, version: str, dest: Path) -> Path:
        """The ``.deb`` of ``package=version`` into ``dest``."""
        check_pins(self.stack, self.apt, self.pins)   # only when something must be downloaded
        return self.apt.download(package, version, dest)

    def source(self, package: str, version: str, dest: Path) -> Path:
        """The unpacked source package ``package=version`` in ``dest``."""
        check_pins(self.stack, self.apt, self.pins)
        return self.apt.source(package, version, dest)


def check_pins(stack: Stack, apt: PrivateApt, pins: Pins) -> None:
    """Fail clearly when a pinned version is gone from the archive (called before a download)."""
    _check_available(stack, apt, pins)
