"""Typed description of one guest: everything that ends up on QEMU's command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.arch import DEBIAN_FIRMWARE_DIRS, QEMU_MACHINE
from harness.artifacts.qemu import stock_qemu
from harness.errors import ConfigError
from harness.results.scenario_schema import DEFAULT_BOOT_TIMEOUT
from harness.vm.backing import ANONYMOUS, Backing

ACCELERATORS = ("auto", "kvm", "tcg")


def firmware_args(dirs) -> list[str]:
    """``-L DIR`` for each existing firmware folder (the KVM probe boots with them too)."""
    return [arg for d in dirs if Path(d).is_dir() for arg in ("-L", str(d))]


# Seconds a guest has to answer SSH after QEMU starts: generous, a loaded 2-core host
# boots a TCG guest in 7-60 s. Scenarios may set [vm] boot_timeout (DEFAULT_BOOT_TIMEOUT is
# the scenario schema's default, harness.results.scenario_schema).


@dataclass(frozen=True)
class BalloonDevice:
    """A virtio balloon device and its properties (``thp-order=on`` and friends)."""

    driver: str = "virtio-balloon-pci"
    id: str = "balloon0"
    properties: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str | None:
        return dict(self.properties).get(name)

    def arg(self) -> str:
        props = "".join(f",{k}={v}" for k, v in self.properties)
        return f"{self.driver},id={self.id}{props}"


@dataclass(frozen=True)
class MachineSpec:
    """One guest. Paths must exist; sizes are MiB."""

    kernel: Path
    initrd: Path
    host_key: str                       # guest sshd's public key (OpenSSH line): pinned
    qemu: Path = field(default_factory=stock_qemu)
    memory_mib: int = 1024
    maxmem_mib: int | None = None       # room for hotplugged memory (virtio-mem) beyond memory_mib
    vcpus: int = 1
    accel: str = "auto"                 # auto probes KVM with a real boot, else TCG
    machine: str = QEMU_MACHINE
    append: str = ""                    # extra kernel command line
    guest_thp: str | None = "always"    # guest THP mode, set at boot (None: kernel default)
    balloon: BalloonDevice | None = BalloonDevice()
    # virtio-rng-pci (QEMU's built-in backend, the host's getrandom): the guest's RNG is
    # ready as soon as its driver loads. Without it, under TCG, dropbear waited for the
    # kernel's RNG to initialise by itself: 4-6 s of every boot (benchmarks/boot_time.py).
    entropy: bool = True
    firmware_dirs: tuple[Path, ...] = DEBIAN_FIRMWARE_DIRS
    extra_args: tuple[str, ...] = ()
    # issue 29: what the host puts behind the guest's RAM (harness.vm.backing). The default,
    # anonymous, adds nothing to the command line.
    backing: Backing = ANONYMOUS
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT   # seconds until the guest must answer (harness.guest.Guest)
    forward_port: int = 22              # guest TCP port forwarded to a free 127.0.0.1 port
    name: str = "bh-guest"

    def validate(self) -> None:
        """Refuse impossible specs before anything starts."""
        for what, p in (("kernel", self.kernel), ("initrd", self.initrd), ("QEMU binary", self.qemu)):
            if not Path(p).exists():
                raise ConfigError(f"{what} not found: {p}")
        if self.memory_mib < 128:
            raise ConfigError(f"memory_mib={self.memory_mib}: a guest needs at least 128 MiB")
        if self.maxmem_mib is not None and self.maxmem_mib < self.memory_mib:
            raise ConfigError(f"maxmem_mib={self.maxmem_mib} is below memory_mib={self.memory_mib}")
        if self.vcpus < 1:
            raise ConfigError(f"vcpus={self.vcpus}: need at least one")
        if self.accel not in ACCELERATORS:
            raise ConfigError(f"accel={self.accel!r}: choose one of {', '.join(ACCELERATORS)}")
        if len(self.host_key.split()) < 2:
            raise ConfigError("host_key must be an OpenSSH public key line ('type base64')")
        self.backing.check_guest(self.memory_mib, self.accel)   # issue 29: backing

    @classmethod
    def for_image(cls, image, **overrides) -> MachineSpec:
        """A spec booting a :class:`harness.artifacts.initramfs.GuestImage`."""
        return cls(kernel=image.vmlinuz, initrd=image.initrd, host_key=image.host_key, **overrides)
