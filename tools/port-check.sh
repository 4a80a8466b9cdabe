#!/bin/sh
# Check the Debian 13 (trixie) ports on a Debian 12 host, outside the work tree:
#   1. a private trixie apt (harness.artifacts.apt) resolves linux-image-cloud-amd64 and qemu;
#   2. guest-kernel-patches/trixie applies (patch --dry-run, git apply --check) to the
#      matching linux-source-6.12, and the module builds against linux-headers-<release>
#      in a minimal trixie chroot (mmdebstrap), with trixie's gcc-14, kbuild and pahole:
#      the packaged kbuild helpers need glibc 2.38 and the kernel's flags need gcc >= 14,
#      neither of which bookworm has; vermagic is checked;
#   3. with QEMU=1: qemu-patches/trixie applies to `apt-get source qemu` and
#      qemu-system-x86_64 builds (meson >= 1.5 from PyPI in a venv, bookworm has 1.0.1),
#      then qemu-patches/verify_thp_order.py runs against it.
# Usage (root): tools/port-check.sh [WORKDIR]      (default /tmp/port-check)
# Needs: mmdebstrap, dpkg-dev, patch, git, xz-utils; for QEMU=1 also python3-venv and
# the 7.2 build dependencies (harness/artifacts/qemu.py BUILD_DEPENDS).
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-/tmp/port-check}
RELEASE=trixie
PY=python3
[ -x "$REPO/.venv/bin/python" ] && PY="$REPO/.venv/bin/python"
mkdir -p "$W"
W=$(cd "$W" && pwd)
case "$W" in "$REPO"|"$REPO"/*) echo "WORKDIR must be outside the work tree" >&2; exit 2 ;; esac
t0=$(date +%s)
say() { echo "[port-check +$(( $(date +%s) - t0 ))s] $*" >&2; }

# 1. resolve and fetch through the private apt ------------------------------------------
say "private $RELEASE apt: update, resolve, download"
PYTHONPATH="$REPO" "$PY" - "$W" "$RELEASE" > "$W/versions.env" <<'EOF'
import sys
from pathlib import Path
from harness.artifacts.apt import PrivateApt, find_mirrors, host_sources
w, release = Path(sys.argv[1]), sys.argv[2]
apt = PrivateApt(release, w / "apt", log=w / "apt.log")
apt.update()
image = apt.resolve("linux-image-cloud-amd64", "linux-image-")
krel = image.package[len("linux-image-"):]
major = ".".join(image.version.split(".")[:2])
src = apt.download(f"linux-source-{major}", image.version, w / "debs")
qemu = apt.candidate("qemu-system-x86")
m = find_mirrors(host_sources())
print(f"KVER={image.version}\nKREL={krel}\nKMAJOR={major}\nKSRC_DEB={src}\nQVER='{qemu}'")
print(f"MIRROR={m.main}\nSECURITY={m.security}")
EOF
. "$W/versions.env"
say "kernel $KREL ($KVER), qemu $QVER"

# 2. guest patch: apply checks on the pristine file, build in a trixie chroot -----------
rm -rf "$W/ksrc" && mkdir -p "$W/ksrc"
dpkg-deb --fsys-tarfile "$KSRC_DEB" | tar -xO "./usr/src/linux-source-$KMAJOR.tar.xz" \
    | tar -xJ -C "$W/ksrc" --strip-components=1 "linux-source-$KMAJOR/drivers/virtio/virtio_balloon.c"
GP="$REPO/guest-kernel-patches/$RELEASE"
for p in $(grep -v '^#' "$GP/series"); do
    (cd "$W/ksrc" && patch -p1 --dry-run --batch --forward < "$GP/$p" >/dev/null \
        && git apply --check "$GP/$p" && patch -p1 --batch --forward --no-backup-if-mismatch < "$GP/$p" >/dev/null)
done
say "guest patches apply (patch --dry-run, git apply --check)"

ROOT="$W/$RELEASE-root"
if [ ! -x "$ROOT/usr/bin/gcc-14" ] || [ ! -d "$ROOT/usr/src/linux-headers-$KREL" ]; then
    rm -rf "$ROOT"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$MIRROR" "$RELEASE" "$MIRROR" "$RELEASE" "$SECURITY" "$RELEASE" > "$W/chroot.list"
    say "mmdebstrap $RELEASE chroot with linux-headers-$KREL (about 1.5 min)"
    mmdebstrap --variant=minbase --mode=root \
        --include="linux-headers-$KREL=$KVER,make,dwarves,kmod" \
        "$RELEASE" "$ROOT" "$W/chroot.list" > "$W/mmdebstrap.log" 2>&1
fi
rm -rf "$ROOT/build" && mkdir -p "$ROOT/build"
cp "$W/ksrc/drivers/virtio/virtio_balloon.c" "$REPO/guest-kernel-patches/Kbuild" "$ROOT/build/"
chroot "$ROOT" nice -n 19 make -j2 -C "/usr/src/linux-headers-$KREL" M=/build modules > "$W/kbuild.log" 2>&1
if grep -qi 'warning:' "$W/kbuild.log"; then echo "compiler warnings, see $W/kbuild.log" >&2; exit 1; fi
vermagic=$(chroot "$ROOT" modinfo -F vermagic /build/virtio_balloon.ko)
case "$vermagic" in "$KREL "*) ;; *) echo "vermagic '$vermagic' is not $KREL" >&2; exit 1 ;; esac
mkdir -p "$W/out" && cp "$ROOT/build/virtio_balloon.ko" "$W/out/virtio_balloon-$KREL.ko"
say "module built: $W/out/virtio_balloon-$KREL.ko (vermagic $vermagic)"

# 3. QEMU (optional, ~15-25 min on 2 cores) ---------------------------------------------
[ "${QEMU:-0}" = 1 ] || { say "done (QEMU=1 to also build and check QEMU)"; exit 0; }
QP="$REPO/qemu-patches/$RELEASE"
rm -rf "$W/qsrc" && mkdir -p "$W/qsrc"
PYTHONPATH="$REPO" "$PY" -c "
import sys; from pathlib import Path; from harness.artifacts.apt import PrivateApt
print(PrivateApt('$RELEASE', Path('$W/apt'), log=Path('$W/apt.log')).source('qemu', sys.argv[1], Path('$W/qsrc')))
" "$QVER" > "$W/qsrc/tree"
QTREE=$(cat "$W/qsrc/tree")
for p in $(grep -v '^#' "$QP/series"); do
    (cd "$QTREE" && git apply --check "$QP/$p" && patch -p1 --batch --forward --no-backup-if-mismatch < "$QP/$p" >/dev/null)
done
say "qemu patches apply to $QTREE"
[ -x "$W/meson-venv/bin/meson" ] || { /usr/bin/python3 -m venv "$W/meson-venv" && "$W/meson-venv/bin/pip" install -q meson==1.5.0; }
rm -rf "$W/qbuild" && mkdir -p "$W/qbuild"
FLAGS=$(PYTHONPATH="$REPO" "$PY" -c "from harness.artifacts.qemu import CONFIGURE_FLAGS; print(' '.join(CONFIGURE_FLAGS))")
(cd "$W/qbuild" && nice -n 19 "$QTREE/configure" --python="$W/meson-venv/bin/python3" $FLAGS > configure.log 2>&1 \
    && nice -n 19 ninja -j2 qemu-system-x86_64 > build.log 2>&1)
cp "$W/qbuild/qemu-system-x86_64" "$W/out/"
say "qemu built: $W/out/qemu-system-x86_64"
python3 "$REPO/qemu-patches/verify_thp_order.py" "$W/out/qemu-system-x86_64" --strace
say "done"
