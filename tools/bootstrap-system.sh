#!/usr/bin/env bash
# Install the Debian packages balloon-harness needs, only those missing.
# Idempotent: a second run installs nothing and says so. Uses sudo when not root.
set -euo pipefail

# Packages: QEMU (stock control + firmware), guest image tools, compiler for
# usemem and the out-of-tree balloon module, Python venv support.
PACKAGES=(
  qemu-system-x86 qemu-system-data seabios ipxe-qemu
  busybox-static dropbear-bin kmod cpio gzip xz-utils util-linux
  gcc make libc6-dev patch strace
  python3 python3-venv
  # patched QEMU 7.2 from Debian's source (harness/artifacts/qemu.py BUILD_DEPENDS)
  dpkg-dev meson ninja-build pkg-config libglib2.0-dev libpixman-1-dev libslirp-dev
  zlib1g-dev libfdt-dev flex bison
  # out-of-tree virtio_balloon.ko for the guest's cloud kernel
  linux-headers-cloud-amd64
)

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo)
else
  SUDO=(none)
fi

run_root() { if [ "${SUDO[*]}" = none ]; then return 1; fi; "${SUDO[@]}" "$@"; }

# QEMU's source comes through deb-src: add an entry only if apt has none for qemu.
DEBSRC_FILE=/etc/apt/sources.list.d/balloon-harness-deb-src.sources
has_debsrc() {
  grep -qsE '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources \
    || grep -qsE '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
}
if ! has_debsrc; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    entry=$(sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources)
  else
    entry=$(printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n')
  fi
  echo "[bootstrap] no deb-src entry for qemu: adding $DEBSRC_FILE (QEMU's source is fetched with apt-get source)"
  printf '%s\n' "$entry" | run_root tee "$DEBSRC_FILE" >/dev/null \
    || { echo "[bootstrap] cannot write $DEBSRC_FILE: run as root or with sudo" >&2; exit 1; }
  run_root apt-get update -q
  UPDATED=1
fi

# The build resolves the current cloud kernel and downloads packages by version:
# that needs fresh package lists (refreshed when older than a day).
if [ -z "${UPDATED:-}" ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  echo "[bootstrap] apt package lists are missing or older than a day: apt-get update"
  run_root apt-get update -q || { echo "[bootstrap] apt-get update needs root or sudo" >&2; exit 1; }
  UPDATED=1
fi

missing=()
for p in "${PACKAGES[@]}" "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[bootstrap] system packages: all present"
  exit 0
fi
if [ "${SUDO[*]}" = none ]; then
  echo "[bootstrap] missing Debian packages: ${missing[*]}" >&2
  echo "[bootstrap] run as root or with passwordless sudo, or install them: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "[bootstrap] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
[ -n "${UPDATED:-}" ] || run_root apt-get update -q
run_root apt-get install -y -q --no-install-recommends "${missing[@]}"
