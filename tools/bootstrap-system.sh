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
  # QEMU built from each stack's Debian source (harness/artifacts/qemu.py BUILD_DEPENDS)
  dpkg-dev meson ninja-build pkg-config libglib2.0-dev libpixman-1-dev libslirp-dev
  zlib1g-dev libfdt-dev flex bison
  # a guest kernel built from a Linux tree of your own (harness/artifacts/kernel_tree.py)
  bc libelf-dev
  # the stacks' private apt (signature checks) and the Kbuild chroot of each stack's release
  debian-archive-keyring gpg mmdebstrap
)
# Only for the tests (`--tests`, which `make test` and `make test-slow` pass): the documentation
# site opened as a reader would, in a headless browser (tests/test_docs_site.py). Kept out of
# the list above because it is 113 MB to download that `make reproduce` does not need.
TEST_PACKAGES=(chromium)

# Arguments: --tests adds TEST_PACKAGES; any other argument is one more package name.
EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --tests) EXTRA+=("${TEST_PACKAGES[@]}") ;;
    *) EXTRA+=("$arg") ;;
  esac
done

# Debian 12 and 13 are the hosts this is tested on. Another apt-based host (Ubuntu LTS...)
# gets the same package names; those its archive lacks are listed by name below.
OS="unknown host"
if [ -r /etc/os-release ]; then . /etc/os-release; OS="${PRETTY_NAME:-$ID $VERSION_ID}"; fi
if ! command -v apt-get >/dev/null; then
  echo "[bootstrap] $OS has no apt-get: balloon-harness bootstraps Debian-based hosts only." >&2
  echo "[bootstrap] install these (or your distribution's equivalents) by hand: ${PACKAGES[*]}" >&2
  exit 1
fi
case "${ID:-}:${VERSION_ID:-}" in
  debian:12|debian:13) ;;
  *) echo "[bootstrap] $OS is not Debian 12 or 13 (the tested hosts): trying Debian's package names" ;;
esac

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo)
else
  SUDO=(none)
fi

run_root() { if [ "${SUDO[*]}" = none ]; then return 1; fi; "${SUDO[@]}" "$@"; }

# The guest stacks' packages (kernel, kernel source, QEMU source) come through the
# harness's own private apt configurations in its cache, never through /etc/apt
# (harness/artifacts/apt.py). The host's apt installs host tools only; its lists are
# refreshed when older than a day so those installs find their versions.
if [ -z "${UPDATED:-}" ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  echo "[bootstrap] apt package lists are missing or older than a day: apt-get update"
  run_root apt-get update -q || { echo "[bootstrap] apt-get update needs root or sudo" >&2; exit 1; }
  UPDATED=1
fi

missing=()
for p in "${PACKAGES[@]}" "${EXTRA[@]}"; do
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
unknown=()
for p in "${missing[@]}"; do
  cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then unknown+=("$p"); fi
done
if [ ${#unknown[@]} -gt 0 ]; then
  echo "[bootstrap] $OS has no package named: ${unknown[*]}" >&2
  echo "[bootstrap] install their equivalents by hand, then run this again" >&2
  exit 1
fi
echo "[bootstrap] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
[ -n "${UPDATED:-}" ] || run_root apt-get update -q
run_root apt-get install -y -q --no-install-recommends "${missing[@]}"
