#!/bin/bash
# scripts/try-rebuild.sh — try koji-adjutant on a fresh machine with one command (as root).
#
#   1. installs the Debian packages it needs, if missing (apt-get);
#   2. builds koji-adjutant (cargo build --release);
#   3. makes the rpmroot test image (tests/fixtures/make-fixtures.sh --rpmroot: a Debian
#      bookworm buildroot that rpm and dnf see as a Fedora-like one; ~1 min, needs network)
#      and the hello SRPM fixture;
#   4. imports the image into the default store (/var/lib/koji-adjutant) as the default
#      buildroot image, localhost/buildroot:latest (blobs already there are not copied);
#   5. runs `koji-adjutant rebuild hello-1.0-1.src.rpm` — a mock-style local rebuild in a
#      container buildroot, no hub — and prints where the rpms are and `rpm -qip` of one.
#
# Every step is idempotent: a second run only rebuilds the package (seconds).
# Environment: CARGO_TARGET_DIR (default <repo>/target), RESULTDIR (default
# ./results/hello-1.0-1), KOJI_ADJUTANT_ROOT (store, default /var/lib/koji-adjutant).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'try-rebuild: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (the rpmroot image is built with mmdebstrap as root; \
afterwards \`koji-adjutant rebuild\` also works rootless)"

# ---- 1. packages ---------------------------------------------------------------------------
packages=(mmdebstrap debian-archive-keyring eatmydata busybox-static pigz zstd gzip xz-utils tar
  cpio python3 rpm createrepo-c skopeo util-linux uidmap gcc libc6-dev make pkg-config git curl
  ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (Debian 12 is supported)"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs), then run me again"

# ---- 2. build ------------------------------------------------------------------------------
say "building koji-adjutant (cargo build --release; the first build takes several minutes)"
(cd "$repo" && cargo build --release --locked --quiet --bin koji-adjutant --bin koji-adjutant-full)
bin=${CARGO_TARGET_DIR:-$repo/target}/release/koji-adjutant
[ -x "$bin" ] || die "cargo did not produce $bin"

# ---- 3. image and SRPM ---------------------------------------------------------------------
say "making the rpmroot image and the hello SRPM (tests/fixtures/make-fixtures.sh --rpmroot)"
fixtures=$("$repo/tests/fixtures/make-fixtures.sh" --rpmroot)
srpm=$fixtures/srpms/hello-1.0-1.src.rpm
[ -f "$srpm" ] || die "$srpm is missing"

# ---- 4. import -----------------------------------------------------------------------------
image=localhost/buildroot:latest
root=${KOJI_ADJUTANT_ROOT:-/var/lib/koji-adjutant}
say "importing the image into $root as $image"
"$bin" --root "$root" image import --quiet "oci:$fixtures/oci/rpmroot:latest" "$image"

# ---- 5. rebuild ----------------------------------------------------------------------------
resultdir=${RESULTDIR:-$PWD/results/hello-1.0-1}
say "koji-adjutant rebuild $(basename "$srpm") --resultdir $resultdir"
out=$("$bin" --root "$root" rebuild "$srpm" --resultdir "$resultdir")   # stdout: the rpms' paths
mapfile -t rpms <<<"$out"
[ ${#rpms[@]} -gt 0 ] || die "koji-adjutant rebuild printed no rpms"
echo
echo "The rpms are in $resultdir:"
printf '  %s\n' "${rpms[@]}"
binary=
for r in "${rpms[@]}"; do
  case $r in *.src.rpm) ;; *) binary=$r; break ;; esac
done
[ -n "$binary" ] || die "no binary rpm among ${rpms[*]}"
echo
echo "rpm -qip $binary"
rpm -qip --nosignature "$binary"
