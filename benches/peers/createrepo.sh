#!/bin/bash
# createrepo.sh — the createrepo task's local step (koji-adjutant's LocalRepo::create with the
# host's createrepo_c: update seeding, log file, `$ argv` line) against running createrepo_c
# directly with the same arguments, on the same Koji-style repo, in one hyperfine run.
#
# Usage: benches/peers/createrepo.sh [RUNS] [PACKAGES]   (defaults: 10 runs, 2000 packages)
# Input: PACKAGES noarch rpms built with rpmbuild (one spec, one subpackage each), laid out as
#        the hub lays them out: <topdir>/packages/..., repos/bench/<id>/x86_64/{pkglist,toplink},
#        repos/bench/<id>/groups/comps.xml.
# Two cases: "create" (a fresh repo) and "update" (the previous repo's repodata + one new package,
#        --update --skip-stat, as for every repo after the first).
# Output: a markdown table (medians) on stdout and in $OUT (default target dir/peers/createrepo.md),
#         hyperfine JSON next to it.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=${1:-10}
npkg=${2:-2000}
target=${CARGO_TARGET_DIR:-$repo/target}
outdir=$target/peers; mkdir -p "$outdir"
out=${OUT:-$outdir/createrepo.md}

for t in hyperfine createrepo_c rpmbuild jq; do
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

hyperfine -N --runs "$runs" --warmup 1 --export-json "$outdir/createrepo.json" \
  --prepare "rm -rf $o $o.log" \
  -n 'koji-adjutant create' "$ours $top $new $o" \
  -n 'createrepo_c create' "bash -c 'mkdir $o && exec $direct $new > $o.log 2>&1'" \
  -n 'koji-adjutant update' "$ours $top $new $o $old/repodata" \
  -n 'createrepo_c update' "bash -c 'mkdir $o && cp -r $old/repodata $o/ && exec $direct --update --skip-stat $new > $o.log 2>&1'" >&2

{
  echo "createrepo of $((npkg + 1)) noarch rpms (update: from the repodata of $npkg), $(nproc) CPUs, $runs runs, $($cr --version | head -1) ($(date -u +%F))"
  echo
  echo "| case | koji-adjutant | createrepo_c directly | ratio |"
  echo "|---|---|---|---|"
  for c in create update; do
    jq -r --arg c "$c" '
      (.results[] | select(.command=="koji-adjutant \($c)") | .median) as $a |
      (.results[] | select(.command=="createrepo_c \($c)") | .median) as $b |
      "| \($c) | \($a*1000|floor) ms | \($b*1000|floor) ms | \($a/$b*1000|floor/1000)x |"' "$outdir/createrepo.json"
  done
} | tee "$out"
