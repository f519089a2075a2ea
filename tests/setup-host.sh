#!/bin/bash
# setup-host.sh [--check] — prepare this host for koji-adjutant's test suite (idempotent).
#
# As root it makes, only where missing:
#   - the Debian packages the fixtures, the registry, the tests and the peer benchmarks use
#     (`apt-get update` runs once, and only when something is missing);
#   - /etc/subuid and /etc/subgid entries `root:100000:65536` (the root-mode range, see below)
#     and `adjutant-test:300000:65536`;
#   - the test user adjutant-test (uid = gid = 4242, home /home/adjutant-test);
#   - CARGO_TARGET_DIR (default <repo>/target) and the fixtures root, readable by that user.
# Then it checks what it cannot fix: the Rust toolchain (cargo, rustfmt, clippy), unprivileged
# user namespaces, and newuidmap/newgidmap working for adjutant-test.
#
# --check (or running as non-root) changes nothing; it reports what is missing and fails if
# anything is.
#
# Why `root:100000:65536`: koji-adjutant in root mode maps container ids 0..65535 onto host ids
# 100000..165535 (IdMapping::root). useradd hands out subordinate ranges from 100000 upwards to
# every new user; recording the root range here keeps those ranges disjoint from it, so no
# user's rootless containers ever share host ids with root-mode build roots.
set -euo pipefail
export LC_ALL=C

TEST_USER=adjutant-test TEST_ID=4242
ROOT_RANGE=100000:65536 TEST_RANGE=300000:65536
FIXTURES_ROOT=${KOJI_ADJUTANT_FIXTURES_ROOT:-/var/tmp/koji-adjutant-fixtures}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}

PACKAGES=(
  # fixtures (tests/fixtures/make-fixtures.sh)
  mmdebstrap debian-archive-keyring eatmydata busybox-static pigz zstd gzip xz-utils tar cpio
  python3 rpm createrepo-c python3-rpm skopeo
  # registry (tests/registry.sh) and registry variants in tests (htpasswd, TLS)
  docker-registry apache2-utils openssl curl ca-certificates
  # rootless tests: setpriv (util-linux), newuidmap/newgidmap
  util-linux uidmap
  # building the workspace (C parts of -sys crates)
  gcc libc6-dev make pkg-config git
  # shell lint in tests/run.sh
  shellcheck
  # tests/install.rs: systemd-analyze verify, systemd-sysusers, systemd-tmpfiles --root
  systemd
  # status server tests: the dashboard in headless Chromium, the metrics through the Python
  # Prometheus/OpenMetrics parsers
  chromium python3-prometheus-client
  # reference tools used by tests and peers benchmarked in benches/
  umoci bubblewrap hyperfine crun runc podman conmon catatonit
)

check_only=0
case ${1:-} in
  --check) check_only=1 ;;
  "") ;;
  *) echo "usage: setup-host.sh [--check]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || check_only=1

problems=()
say() { echo "setup-host: $*" >&2; }
problem() { problems+=("$*"); say "PROBLEM: $*"; }

# ---- packages ---------------------------------------------------------------------------------
missing=()
while read -r pkg status; do
  [ "$status" = ii ] || missing+=("$pkg")
done < <(for p in "${PACKAGES[@]}"; do
           printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | tr -d ' ' || true)"
         done)
if [ ${#missing[@]} -gt 0 ]; then
  if [ $check_only = 1 ]; then
    problem "missing packages: ${missing[*]}"
  else
    say "installing ${missing[*]}"
    # Keep services from starting during the install: docker-registry's postinst would start a
    # registry listening on all interfaces. Only add a policy-rc.d if there is none.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_added=1
    fi
    rc=0
    timeout 600 apt-get update -qq >&2 || rc=$?
    [ $rc = 0 ] && { DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq \
                       --no-install-recommends "${missing[@]}" >&2 || rc=$?; }
    [ $policy_added = 0 ] || rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || { say "apt-get failed (exit $rc)"; exit 1; }
  fi
fi

# ---- subordinate ids and the test user ---------------------------------------------------------
# ensure_subid FILE NAME START:COUNT — exactly one line for NAME, with that range.
ensure_subid() {
  local file=$1 name=$2 range=$3 lines
  lines=$(grep "^$name:" "$file" 2>/dev/null || true)
  [ "$lines" = "$name:$range" ] && return 0
  if [ $check_only = 1 ]; then problem "$file: want exactly '$name:$range', have '${lines//$'\n'/, }'"; return 0; fi
  say "$file: setting $name:$range (was '${lines//$'\n'/, }')"
  touch "$file"
  { grep -v "^$name:" "$file" || true; echo "$name:$range"; } > "$file.tmp.$$"
  chmod 644 "$file.tmp.$$"; mv -f "$file.tmp.$$" "$file"
}
# overlaps FILE: fail if any other owner's range overlaps the root or the test range.
check_overlaps() {
  local file=$1
  awk -F: -v r="$ROOT_RANGE" -v t="$TEST_RANGE" -v user="$TEST_USER" '
    function ov(s, c, S, C) { return s < S + C && S < s + c }
    BEGIN { split(r, R, ":"); split(t, T, ":") }
    NF == 3 && $1 != "root" && $1 != "0" && ov($2, $3, R[1], R[2]) { print FILENAME ": " $0 " overlaps the root-mode range " r }
    NF == 3 && $1 != user && $1 != "'$TEST_ID'" && ov($2, $3, T[1], T[2]) { print FILENAME ": " $0 " overlaps the test range " t }
  ' "$file" 2>/dev/null
}
for f in /etc/subuid /etc/subgid; do
  ensure_subid "$f" root "$ROOT_RANGE"        # before useradd, so it allocates around this range
done

if ! getent group "$TEST_USER" >/dev/null; then
  if [ $check_only = 1 ]; then problem "group $TEST_USER is missing"; else groupadd -g $TEST_ID "$TEST_USER"; fi
fi
if ! getent passwd "$TEST_USER" >/dev/null; then
  if [ $check_only = 1 ]; then problem "user $TEST_USER is missing"
  else useradd -m -u $TEST_ID -g $TEST_ID -s /bin/bash -c "koji-adjutant rootless tests" "$TEST_USER"; fi
fi
if getent passwd "$TEST_USER" >/dev/null; then
  [ "$(id -u "$TEST_USER")" = $TEST_ID ] || problem "user $TEST_USER has uid $(id -u "$TEST_USER"), tests expect $TEST_ID"
  [ "$(id -g "$TEST_USER")" = $TEST_ID ] || problem "user $TEST_USER has gid $(id -g "$TEST_USER"), tests expect $TEST_ID"
fi
for f in /etc/subuid /etc/subgid; do
  ensure_subid "$f" "$TEST_USER" "$TEST_RANGE"   # after useradd, replacing what it may have allocated
  while read -r line; do [ -z "$line" ] || problem "$line"; done < <(check_overlaps "$f")
done

# ---- directories the test user must reach --------------------------------------------------------
# traversable DIR: every existing ancestor of DIR must be searchable by "other".
traversable() {
  local d=$1
  while [ "$d" != / ] && [ -n "$d" ]; do
    if [ -e "$d" ] && [ "$(( 0$(stat -c %a "$d") & 01 ))" = 0 ]; then echo "$d"; return 1; fi
    d=$(dirname "$d")
  done
}
for d in "$target" "$FIXTURES_ROOT"; do
  if [ ! -d "$d" ] && [ $check_only = 0 ]; then mkdir -p "$d"; chmod 755 "$d"; fi
  if [ -d "$d" ] && [ "$(( 0$(stat -c %a "$d") & 05 ))" != 5 ]; then
    if [ $check_only = 1 ]; then problem "$d is not readable by $TEST_USER"; else chmod o+rx "$d"; fi
  fi
  if blocker=$(traversable "$d"); then :; else
    problem "$TEST_USER cannot reach $d: $blocker is not searchable by others (put CARGO_TARGET_DIR somewhere like /var/tmp)"
  fi
done

# ---- what cannot be fixed here -------------------------------------------------------------------
for tool in cargo rustc; do command -v $tool >/dev/null || problem "$tool not found in PATH (install Rust with rustup; ~/.cargo/bin in PATH)"; done
if command -v cargo >/dev/null; then
  cargo fmt --version >/dev/null 2>&1 || problem "rustfmt is missing (rustup component add rustfmt)"
  cargo clippy --version >/dev/null 2>&1 || problem "clippy is missing (rustup component add clippy)"
fi
if [ "$(id -u)" = 0 ] && getent passwd "$TEST_USER" >/dev/null && command -v setpriv >/dev/null; then
  as_user=(setpriv "--reuid=$TEST_ID" "--regid=$TEST_ID" --init-groups env "HOME=/home/$TEST_USER")
  "${as_user[@]}" unshare --user --map-root-user true 2>/dev/null \
    || problem "unprivileged user namespaces do not work for $TEST_USER"
  if [ -u /usr/bin/newuidmap ] && [ -u /usr/bin/newgidmap ]; then
    maps=$("${as_user[@]}" unshare --user --map-auto --map-root-user cat /proc/self/uid_map /proc/self/gid_map 2>&1 || true)
    [ "$(grep -cw "${TEST_RANGE%%:*}" <<< "$maps")" = 2 ] \
      || problem "newuidmap/newgidmap cannot map $TEST_USER's subordinate ranges: ${maps//$'\n'/; }"
  else
    problem "/usr/bin/newuidmap and newgidmap must exist and be setuid root (package uidmap)"
  fi
fi

if [ ${#problems[@]} -gt 0 ]; then
  say "${#problems[@]} problem(s); the test suite will not run cleanly"
  exit 1
fi
say "host ready"
