#!/usr/bin/env bash
# Prove the Debian 13 host path: what a new user on a Debian 13 (trixie) host types, in a
# minimal trixie root built with debootstrap, from the repository's tracked files.
#
#   tools/debian13-host-check.sh           # reuses the root when it is complete
#   tools/debian13-host-check.sh --fresh   # deletes the root first (a cold start: 20-40 min)
#   tools/debian13-host-check.sh --release bookworm --fresh --make-reproduce
#       # a fresh Debian 12 machine as a new user meets it: the timed phase is the README's
#       # `make reproduce` alone (system packages, venv, build, the RFC table), from nothing
#
# Phases, each timed: debootstrap (the root, once; its apt sources, CA bundle and pip
# settings every time), prepare (apt-get update; make git python3 sudo ca-certificates;
# the repository copied in), bootstrap (`make bootstrap`), build (`balloon-harness build`,
# the default bookworm stack: on trixie its QEMU 7.2 control is built from source), run
# (rfc-v1 with the baseline and thp-order arms, 1 repetition, TCG). Prints one line per
# phase, `phase=NAME status=ok|failed seconds=N`, the run's table, and exits non-zero
# naming the phase that failed. /proc, /sys, /dev and /dev/pts are bound into the root
# only while it runs and are always unmounted, whatever happens (checked at the end).
#
# --release NAME picks the Debian release of the root (default trixie; its root is
# debian13-root, bookworm's debian12-root). --make-reproduce replaces the bootstrap, build
# and run phases by `make bootstrap` and `make reproduce` in the fresh copy with an empty
# harness cache: their sum is `make reproduce` from nothing, the "fresh machine to the RFC
# table" figure of issue 22.
#
# Needs root and an apt-based host (it installs debootstrap when missing). The archive
# mirrors are the host's own (its apt sources): no archive host is named here. The root
# lives in ${BALLOON_HARNESS_CACHE:-$HOME/.cache/balloon-harness}/debian13-root and
# keeps its own harness cache (/root/.cache/balloon-harness inside it: a different
# compiler, so nothing is shared with the host's). Logs: debian13-logs/ beside it.
# DEBIAN13_NICE (default 10) is the niceness of the heavy steps.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BALLOON_HARNESS_CACHE:-$HOME/.cache/balloon-harness}
ROOT=$CACHE/debian13-root
LOGS=$CACHE/debian13-logs
MARK=$ROOT/.balloon-harness-debootstrap-complete
NICE=${DEBIAN13_NICE:-10}
RELEASE=trixie
ROOT_REPO=/root/balloon-harness            # paths inside the root
ROOT_CA=/etc/ssl/balloon-harness-host-ca.crt
ROOT_SCENARIO=/root/rfc-v1-debian13.toml
ROOT_RESULTS=/root/res
PREFIX="[debian13-host-check]"

FRESH=0
MAKE_REPRODUCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) FRESH=1 ;;
    --make-reproduce) MAKE_REPRODUCE=1 ;;
    --release) shift; RELEASE=${1:-} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$PREFIX unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$RELEASE" in
  trixie) ROOT_NAME=debian13 ;;
  bookworm) ROOT_NAME=debian12 ;;
  *) echo "$PREFIX --release: bookworm or trixie, got '${RELEASE}'" >&2; exit 2 ;;
esac
PREFIX="[${ROOT_NAME}-host-check]"

say() { echo "$PREFIX $*"; }
die() { echo "$PREFIX $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and bind mounts): run it with sudo"
command -v apt-get >/dev/null || die "not an apt-based host: this check debootstraps Debian 13 with the host's apt sources"
LOGS=$CACHE/${ROOT_NAME}-logs
mkdir -p "$CACHE" "$LOGS"
CACHE=$(cd "$CACHE" && pwd -P)
ROOT=$CACHE/${ROOT_NAME}-root
LOGS=$CACHE/${ROOT_NAME}-logs
MARK=$ROOT/.balloon-harness-debootstrap-complete

# ------------------------------------------------------------------ mounts and clean-up

MOUNTED=()      # mount points this script made, in order
PHASE=""        # the phase running now
PHASE_PID=""    # its process group (job control: each phase runs in a group of its own)

# Mount points at or under the root, deepest first (/proc/mounts escapes blanks as \040).
mounts_under_root() {
  awk -v root="$ROOT" '{ p = $2; gsub(/\\040/, " ", p); if (p == root || index(p, root "/") == 1) print p }' \
    /proc/mounts | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

# Processes whose root is the debian13 root (or a chroot inside it): all started by this
# script. Ended by their pid, TERM then KILL.
root_pids() {
  local d r
  for d in /proc/[0-9]*; do
    r=$(readlink "$d/root" 2>/dev/null) || continue
    if [ "$r" = "$ROOT" ] || [ "${r#"$ROOT"/}" != "$r" ]; then echo "${d#/proc/}"; fi
  done
}

stop_root_processes() {
  local pids i
  pids=$(root_pids)
  [ -n "$pids" ] || return 0
  say "ending processes still running in the root: $(echo $pids)"
  kill -TERM $pids 2>/dev/null || true
  for i in $(seq 20); do
    pids=$(root_pids); [ -n "$pids" ] || return 0; sleep 1
  done
  kill -KILL $pids 2>/dev/null || true
  sleep 1
}

cleanup() {
  local rc=$? i m left
  trap - EXIT INT TERM
  if [ -n "$PHASE_PID" ] && kill -0 "$PHASE_PID" 2>/dev/null; then
    kill -TERM -- "-$PHASE_PID" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$PHASE_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$PHASE_PID" 2>/dev/null || true
  fi
  stop_root_processes
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTED[i]}" 2>/dev/null || say "warning: umount -l ${MOUNTED[i]} failed"
  done
  # Anything else still mounted there (a nested chroot a killed build left behind).
  while IFS= read -r m; do
    [ -n "$m" ] && umount -l "$m" 2>/dev/null
  done < <(mounts_under_root)
  left=$(mounts_under_root)
  if [ -n "$left" ]; then
    echo "$PREFIX still mounted under $ROOT: $(echo $left)" >&2
    [ $rc -ne 0 ] || rc=1
  else
    say "mounts: nothing under $ROOT is mounted (checked /proc/mounts)"
  fi
  exit $rc
}

on_signal() {
  echo "$PREFIX interrupted by SIG$1${PHASE:+ in phase $PHASE}: stopping it, unmounting" >&2
  trap - INT TERM
  if [ "$1" = INT ]; then exit 130; else exit 143; fi   # the EXIT trap does the rest
}

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

bind() {
  local src=$1 dst=$ROOT$1
  mkdir -p "$dst" || return 1
  mount --bind "$src" "$dst" || return 1
  MOUNTED+=("$dst")
  # No propagation back to the host: unmounting here must never unmount the host's /dev/pts.
  mount --make-rslave "$dst" || return 1
}

# ------------------------------------------------------------------ phases

set -m   # each phase's job gets a process group of its own, so a signal stops all of it
declare -A SECONDS_OF=()
ORDER=()

phase() {
  local name=$1 start end rc
  shift
  PHASE=$name
  say "phase $name: start"
  start=$(date +%s.%N)
  ( set -euo pipefail; "$@" ) </dev/null &
  PHASE_PID=$!
  set +e; wait "$PHASE_PID"; rc=$?; set -e
  PHASE_PID=""
  end=$(date +%s.%N)
  SECONDS_OF[$name]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  ORDER+=("$name")
  if [ $rc -ne 0 ]; then
    echo "$PREFIX phase=$name status=failed seconds=${SECONDS_OF[$name]} exit=$rc" >&2
    echo "$PREFIX FAILED in phase $name (log: $LOGS/$name.log)" >&2
    exit $rc
  fi
  echo "$PREFIX phase=$name status=ok seconds=${SECONDS_OF[$name]}"
}

# A command in the root, as root there, in a clean environment (nothing of this host's
# PIP_*, BALLOON_HARNESS_* or proxies leaks in, except an http(s) proxy if one is set).
in_root() {
  local envs=(HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive
              PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PIP_CERT="$ROOT_CA")
  local v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -z "${!v:-}" ] || envs+=("$v=${!v}")
  done
  nice -n "$NICE" env -i "${envs[@]}" chroot "$ROOT" /bin/bash -c "$1"
}

# Every enabled entry of the host's apt sources, one per line: TYPE URI SUITE COMPONENTS...
host_source_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed 's/#.*//' "$f" | awk '($1 == "deb" || $1 == "deb-src") {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      line = $1 " " $(i) " " $(i + 1)
      for (j = i + 2; j <= NF; j++) line = line " " $j
      print line }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush(   nt, nu, ns, a, b, c, T, U, S) {
           if (enabled && types != "") {
             nt = split(types, T, " "); nu = split(uris, U, " "); ns = split(suites, S, " ")
             for (a = 1; a <= nt; a++) for (b = 1; b <= nu; b++) for (c = 1; c <= ns; c++)
               print T[a], U[b], S[c], comps
           }
           types = uris = suites = comps = key = ""; enabled = 1 }
         BEGIN { enabled = 1 }
         /^#/ { next }
         /^[ \t]*$/ { flush(); next }
         /^[ \t]/ { if (key == "types") types = types " " $0; else if (key == "uris") uris = uris " " $0
                    else if (key == "suites") suites = suites " " $0; else if (key == "components") comps = comps " " $0
                    next }
         { i = index($0, ":"); if (!i) next
           key = tolower(substr($0, 1, i - 1)); v = substr($0, i + 1); gsub(/^[ \t]+|[ \t]+$/, "", v)
           if (key == "types") types = v; else if (key == "uris") uris = v
           else if (key == "suites") suites = v; else if (key == "components") comps = v
           else if (key == "enabled" && tolower(v) ~ /^(no|false|0)$/) enabled = 0 }
         END { flush() }' "$f"
  done
}

# The host's Debian mirrors, told by suite names (not host names), as harness/artifacts/apt.py
# does: MAIN (a release suite or its -updates, component main) and SECURITY (-security).
find_mirrors() {
  host_source_entries | awk '
    function base(s) { sub(/\/updates$/, "", s); sub(/-(security|updates|backports-sloppy|backports|proposed-updates)$/, "", s); return s }
    BEGIN { split("buster bullseye bookworm trixie forky duke sid oldoldstable oldstable stable testing unstable", n, " ")
            for (i in n) debian[n[i]] = 1 }
    { main = 0; for (i = 4; i <= NF; i++) if ($i == "main") main = 1
      if (!main || !(base($3) in debian) || $2 ~ /^cdrom:/) next
      rank = ($1 == "deb") ? 0 : 10
      if ($3 ~ /-security$/ || $3 ~ /\/updates$/) { if (!sec || rank < secrank) { sec = $2; secrank = rank } }
      else { if ($3 !~ /-updates$/ && $3 != base($3)) next
             r = rank + ($3 ~ /-updates$/ ? 1 : 0)
             if (!mainuri || r < mainrank) { mainuri = $2; mainrank = r } } }
    END { print mainuri; print sec }'
}

do_debootstrap() {
  local mirrors main security
  mirrors=$(find_mirrors)
  main=$(sed -n 1p <<<"$mirrors"); security=$(sed -n 2p <<<"$mirrors")
  [ -n "$main" ] || { echo "$PREFIX the host's apt sources name no Debian main archive (a deb line of a Debian suite with component main)" >&2; return 1; }
  say "mirrors from the host's apt sources: main $main, security ${security:-none}"
  if ! command -v debootstrap >/dev/null; then
    say "debootstrap is missing: apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >"$LOGS/debootstrap.log" 2>&1 \
      || { tail -20 "$LOGS/debootstrap.log" >&2; return 1; }
  fi
  if [ "$FRESH" = 1 ] && [ -e "$ROOT" ]; then
    say "--fresh: deleting $ROOT"
    rm -f "$MARK"
  fi
  if [ -f "$MARK" ]; then
    say "reusing the complete root $ROOT ($(cat "$MARK"))"
  else
    if [ -e "$ROOT" ]; then
      [ -z "$(mounts_under_root)" ] || { echo "$PREFIX $ROOT has mounts under it; not deleting it" >&2; return 1; }
      say "deleting the incomplete root $ROOT"
      rm -rf --one-file-system "$ROOT"
    fi
    say "debootstrap --variant=minbase $RELEASE $ROOT $main (about 1 min; log $LOGS/debootstrap.log)"
    if ! nice -n "$NICE" debootstrap --variant=minbase "$RELEASE" "$ROOT" "$main" >>"$LOGS/debootstrap.log" 2>&1; then
      tail -20 "$LOGS/debootstrap.log" >&2
      return 1
    fi
    echo "debootstrapped $(date -u +%Y-%m-%dT%H:%M:%SZ) from $main" >"$MARK"
  fi

  # apt: the host's mirrors for trixie, trixie-updates and trixie-security; its proxy, if any.
  rm -f "$ROOT/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$main" "$RELEASE" "$RELEASE"
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$security" "$RELEASE"
    fi
  } >"$ROOT/etc/apt/sources.list.d/debian.sources"
  apt-config dump | grep -E '^Acquire::(http|https|ftp)::Proxy ' >"$ROOT/etc/apt/apt.conf.d/99host-proxy" || true
  [ -s "$ROOT/etc/apt/apt.conf.d/99host-proxy" ] || rm -f "$ROOT/etc/apt/apt.conf.d/99host-proxy"
  # Name resolution as on the host.
  rm -f "$ROOT/etc/resolv.conf"; cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  [ -s "$ROOT/etc/hosts" ] || printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"

  # The host's CA bundle, under a name of its own (the root's ca-certificates package
  # rewrites /etc/ssl/certs/ca-certificates.crt), for pip: PIP_CERT (in_root) and /etc/pip.conf.
  local ca=/etc/ssl/certs/ca-certificates.crt
  for c in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}"; do
    if [ -n "$c" ] && [ -r "$c" ]; then ca=$c; break; fi
  done
  if [ -r "$ca" ]; then
    install -D -m 0644 "$ca" "$ROOT$ROOT_CA"
    say "host CA bundle $ca -> $ROOT_CA in the root"
  else
    say "warning: no CA bundle on the host; pip in the root uses its own"
  fi
  if [ -f /etc/pip.conf ]; then
    if grep -Eq '^[[:space:]]*cert[[:space:]]*=' /etc/pip.conf; then
      sed -E "s#^[[:space:]]*cert[[:space:]]*=.*#cert = $ROOT_CA#" /etc/pip.conf
    elif grep -Eq '^[[:space:]]*\[global\]' /etc/pip.conf; then
      sed -E "/^[[:space:]]*\[global\]/a cert = $ROOT_CA" /etc/pip.conf
    else
      cat /etc/pip.conf; printf '[global]\ncert = %s\n' "$ROOT_CA"
    fi >"$ROOT/etc/pip.conf"
    say "host /etc/pip.conf copied into the root (cert -> $ROOT_CA)"
  else
    printf '[global]\ncert = %s\n' "$ROOT_CA" >"$ROOT/etc/pip.conf"
  fi
}

# What a new user does first: the tools to get the project, and the project itself.
do_prepare() {
  say "copying the repository's tracked files ($REPO) to $ROOT_REPO"
  rm -rf --one-file-system "$ROOT$ROOT_REPO" "$ROOT$ROOT_RESULTS"
  mkdir -p "$ROOT$ROOT_REPO"
  git -C "$REPO" ls-files -z | while IFS= read -r -d '' f; do
    if [ -e "$REPO/$f" ] || [ -L "$REPO/$f" ]; then printf '%s\0' "$f"; fi   # deleted in the work tree: skip
  done | tar -C "$REPO" --null -T - -cf - | tar -C "$ROOT$ROOT_REPO" -xf -
  in_root "apt-get update -q && apt-get install -y -q --no-install-recommends make git python3 sudo ca-certificates" \
    >"$LOGS/prepare.log" 2>&1 || { tail -30 "$LOGS/prepare.log" >&2; return 1; }
  say "apt-get update; installed make git python3 sudo ca-certificates (log $LOGS/prepare.log)"
  # A clone has a .git (the harness then honours the checked-in stacks.lock and records a
  # revision): make the copy one, as `git clone` would.
  in_root "cd $ROOT_REPO && git init -q && git add -A && git -c user.name=debian13-check \
    -c user.email=debian13-check@localhost commit -q -m 'snapshot of $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)'"
  # rfc-v1 without its stock arm, under TCG.
  in_root "python3 - $ROOT_REPO/scenarios/rfc-v1.toml $ROOT_SCENARIO" <<'PY'
import re, sys, tomllib
src, dst = sys.argv[1], sys.argv[2]
sections, current = [], []
for line in open(src).read().splitlines(keepends=True):
    if re.match(r"\s*\[", line):
        sections.append(current)
        current = []
    current.append(line)
sections.append(current)
out = []
for sec in sections:
    if sec and sec[0].strip() == "[[arms]]" and any(re.match(r'\s*name\s*=\s*"stock"', l) for l in sec):
        continue
    out.extend(sec)
text = re.sub(r'(?m)^accel\s*=.*$', 'accel = "tcg"', "".join(out))
data = tomllib.loads(text)
arms = [a["name"] for a in data["arms"]]
assert arms == ["baseline", "thp-order"] and data["vm"]["accel"] == "tcg", (arms, data["vm"])
open(dst, "w").write(text)
print(f"scenario {dst}: arms {', '.join(arms)}, accel tcg")
PY
}

do_bootstrap() {
  in_root "cd $ROOT_REPO && make bootstrap" 2>&1 | tee "$LOGS/bootstrap.log"
}

do_build() {
  in_root "cd $ROOT_REPO && .venv/bin/balloon-harness build" 2>&1 | tee "$LOGS/build.log"
}

# The README's first command as a new user types it, from nothing: system packages, the
# venv, the build of the default stack, the RFC's runs and the table.
do_reproduce() {
  in_root "cd $ROOT_REPO && make reproduce" 2>&1 | tee "$LOGS/reproduce.log"
}

do_run() {
  in_root "cd $ROOT_REPO && .venv/bin/balloon-harness run $ROOT_SCENARIO --reps 1 --out $ROOT_RESULTS" 2>&1 \
    | tee "$LOGS/run.log"
}

say "repository $REPO; root $ROOT; logs $LOGS; host: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")"
phase debootstrap do_debootstrap
# The mounts are made in this shell, not in a phase's job: the EXIT trap must know them.
PHASE=mount
# The root bound onto itself first: inside the chroot / is then a mount point, as on a real
# machine (bookworm's unshare --propagation, which the Kbuild chroot uses, refuses a / that is not).
mount --bind "$ROOT" "$ROOT" && MOUNTED+=("$ROOT") && mount --make-rprivate "$ROOT" \
  || { echo "$PREFIX phase=mount status=failed: mount --bind $ROOT $ROOT" >&2; echo "$PREFIX FAILED in phase mount" >&2; exit 1; }
for d in /proc /sys /dev /dev/pts; do
  bind "$d" || { echo "$PREFIX phase=mount status=failed: mount --bind $d $ROOT$d" >&2
                 echo "$PREFIX FAILED in phase mount" >&2; exit 1; }
done
say "bound /proc /sys /dev /dev/pts into the root"
phase prepare do_prepare
if [ "$MAKE_REPRODUCE" = 1 ]; then
  in_root "rm -rf /root/.cache/balloon-harness"   # a fresh machine has no harness cache
  # `make reproduce` is bootstrap, then the build of what its arms need and the runs: timed
  # as two phases (the second make skips what the first did), their sum is the figure.
  phase bootstrap do_bootstrap
  phase reproduce do_reproduce
else
  phase bootstrap do_bootstrap
  phase build do_build
  phase run do_run
fi

say "results: $ROOT$ROOT_RESULTS"
for name in "${ORDER[@]}"; do
  printf '%s   %-12s %8.1f s\n' "$PREFIX" "$name" "${SECONDS_OF[$name]}"
done
say "all phases ok"
