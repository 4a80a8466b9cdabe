#!/usr/bin/env bash
# Install the Debian packages balloon-harness needs, only those missing.
# Idempotent: a second run installs nothing and says so. Uses sudo when not root.
set -euo pipefail

# Packages: QEMU (stock control + firmware), guest image tools, compiler for
# usemem and the out-of-tree balloon module, Python venv support.
PACKAGES=(
  qemu-system-x86 qemu-system-data seabios ipxe-qemu
  busybox-static dropbear-bin kmod cpio gzip xz-utils util-linux
  gcc make libc6-dev
  python3 python3-venv
)

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo)
else
  SUDO=(none)
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
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
