#!/bin/bash
# createrepo.sh — the createrepo task's local step (koji-adjutant's LocalRepo::create with the
# host's createrepo_c: update seeding, log file, `$ argv` line) against running createrepo_c
# directly with the same arguments, on the same Koji-style repo, in one interleaved run.
#
# Usage: benches/peers/createrepo.sh [RUNS] [PACKAGES]   (defaults: 15 runs, 2000 packages)
# Input: PACKAGES noarch rpms built with rpmbuild (one spec, one subpackage each), laid out as
#        the hub lays them out: <topdir>/packages/..., repos/bench/<id>/x86_64/{pkglist,toplink},
#        repos/bench/<id>/groups/comps.xml.
# Two cases: "create" (a fresh repo) and "update" (the previous repo's repodata + one new package,
#        --update --skip-stat, as for every repo after the first).
# Output: a markdown table (medians) on stdout and in $OUT (default target dir/peers/createrepo.md),
#         each run's time (µs) in createrepo.times next to it.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=${1:-15}
npkg=${2:-2000}
target=${CARGO_TARGET_DIR:-$repo/target}
outdir=$target/peers; mkdir -p "$outdir"
out=${OUT:-$outdir/createrepo.md}

for t in createrepo_c rpmbuild awk; do
  command -v $t >/dev/null || { echo "createrepo.sh: $t is missing" >&2; exit 1; }
done
(cd "$repo" && cargo build -q --profile bench --example createrepo-local)
ours=$target/release/examples/createrepo-local
[ -x "$ours" ] || ours=$target/bench/examples/createrepo-local
cr=$(command -v createrepo_c)

scratch=$(mktemp -d /var/tmp/ka-peers-createrepo.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
top=$scratch/koji

# ---- the package set: one spec, $npkg noarch subpackages (+1 for the update case)
spec=$scratch/bench.spec
{
  printf 'Name: bench\nVersion: 1.0\nRelease: 1\nSummary: bench\nLicense: MIT\nBuildArch: noarch\n'
  printf '%%description\nbench\n%%install\n'
  printf 'for i in $(seq 0 %d); do mkdir -p %%{buildroot}/usr/share/bench-$i; echo $i > %%{buildroot}/usr/share/bench-$i/f; done\n' "$npkg"
  for i in $(seq 0 "$npkg"); do
    printf '%%package -n bench-%d\nSummary: bench %d\n%%description -n bench-%d\nbench %d\n%%files -n bench-%d\n/usr/share/bench-%d/f\n' \
      "$i" "$i" "$i" "$i" "$i" "$i"
  done
} > "$spec"
echo "createrepo.sh: building $((npkg + 1)) rpms" >&2
rpmbuild --quiet --define "_topdir $scratch/rpmbuild" -bb "$spec" >/dev/null 2>&1
pkgdir=$top/packages/bench/1.0/1/noarch
mkdir -p "$pkgdir"
mv "$scratch"/rpmbuild/RPMS/noarch/*.rpm "$pkgdir/"

comps='<?xml version="1.0"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>build</id>
    <name>build</name>
    <packagelist>
      <packagereq type="mandatory">bench-0</packagereq>
    </packagelist>
  </group>
</comps>'
mkrepo() { # id count → repos/bench/<id>/x86_64 with the first <count> packages
  local d=$top/repos/bench/$1
  mkdir -p "$d/groups" "$d/x86_64"
  printf '%s\n' "$comps" > "$d/groups/comps.xml"
  ln -sfn ../../../.. "$d/x86_64/toplink"
  : > "$d/x86_64/blocklist"
  for i in $(seq 0 $(($2 - 1))); do echo "toplink/packages/bench/1.0/1/noarch/bench-$i-1.0-1.noarch.rpm"; done \
    > "$d/x86_64/pkglist"
}
mkrepo 1 "$npkg"        # the old repo
mkrepo 2 "$((npkg + 1))" # the new one: one more package
old=$top/repos/bench/1/x86_64
new=$top/repos/bench/2/x86_64
"$cr" -q -o "$old" -i "$old/pkglist" -g "$top/repos/bench/1/groups/comps.xml" "$old" >/dev/null
o=$scratch/out
g=$top/repos/bench/2/groups/comps.xml
direct="$cr --error-exit-val -vd -o $o -i $new/pkglist -g $g"

# Interleaved runs (A B C D, B C D A, …) so that the load of a shared machine drifts over all
# four cases alike; each run's wall time is taken around the command alone (its output
# directory is removed before the clock starts).
cases=("koji-adjutant create" "createrepo_c create" "koji-adjutant update" "createrepo_c update")
run_case() {
  case $1 in
    "koji-adjutant create") "$ours" "$top" "$new" "$o" ;;
    "createrepo_c create") mkdir "$o" && $direct "$new" >"$o.log" 2>&1 ;;
    "koji-adjutant update") "$ours" "$top" "$new" "$o" "$old/repodata" ;;
    "createrepo_c update") mkdir "$o" && cp -r "$old/repodata" "$o/" && $direct --update --skip-stat "$new" >"$o.log" 2>&1 ;;
  esac
}
declare -A times
for c in "${cases[@]}"; do rm -rf "$o" "$o.log"; run_case "$c" || { echo "createrepo.sh: $c failed" >&2; exit 1; }; done  # warm-up
for ((i = 0; i < runs; i++)); do
  for ((j = 0; j < 4; j++)); do
    c=${cases[$(((i + j) % 4))]}
    rm -rf "$o" "$o.log"
    t0=$(date +%s%N)
    run_case "$c" || { echo "createrepo.sh: $c failed" >&2; exit 1; }
    t1=$(date +%s%N)
    times[$c]+="$(((t1 - t0) / 1000)) "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
{
  echo "createrepo of $((npkg + 1)) noarch rpms (update: from the repodata of $npkg), $(nproc) CPUs, $runs interleaved runs, $($cr --version | head -1) ($(date -u +%F))"
  echo
  echo "| case | koji-adjutant | createrepo_c directly | ratio |"
  echo "|---|---|---|---|"
  for c in create update; do
    a=$(echo "${times[koji-adjutant $c]}" | median)
    b=$(echo "${times[createrepo_c $c]}" | median)
    awk -v c="$c" -v a="$a" -v b="$b" 'BEGIN { printf "| %s | %.0f ms | %.0f ms | %.3fx |\n", c, a / 1000, b / 1000, a / b }'
  done
} | tee "$out"
for c in "${cases[@]}"; do echo "$c: ${times[$c]}"; done > "$outdir/createrepo.times"
