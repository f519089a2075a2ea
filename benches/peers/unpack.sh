#!/bin/bash
# unpack.sh — layer unpack throughput: koji-adjutant's unpacker against `tar -xzf` and
# `pigz -dc | tar -x`, on the same gzip layer, in one hyperfine run, on tmpfs.
#
# Usage: benches/peers/unpack.sh [RUNS]   (as root: ownership shifted like the daemon does)
# Input: the first layer of the rpmroot fixture (438 MB tar, 148 MB gzip, ~10k entries);
#        tests/fixtures/make-fixtures.sh --rpmroot builds it. KOJI_ADJUTANT_FIXTURES overrides.
# Output: a markdown table (medians, MB/s of uncompressed data) on stdout and in
#         $OUT (default target dir/peers/unpack.md), hyperfine JSON next to it.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=${1:-5}
target=${CARGO_TARGET_DIR:-$repo/target}
outdir=$target/peers; mkdir -p "$outdir"
out=${OUT:-$outdir/unpack.md}

for t in hyperfine pigz tar jq; do command -v $t >/dev/null || { echo "unpack.sh: $t is missing" >&2; exit 1; }; done
fx=${KOJI_ADJUTANT_FIXTURES:-$("$repo/tests/fixtures/make-fixtures.sh" --rpmroot)}
layout=$fx/oci/rpmroot
man=$(jq -r '.manifests[0].digest' "$layout/index.json" | cut -d: -f2)
blob=$layout/blobs/sha256/$(jq -r '.layers[0].digest' "$layout/blobs/sha256/$man" | cut -d: -f2)
cfg=$(jq -r '.config.digest' "$layout/blobs/sha256/$man" | cut -d: -f2)
diff_id=$(jq -r '.rootfs.diff_ids[0]' "$layout/blobs/sha256/$cfg")

(cd "$repo" && cargo build -q --profile bench -p adjutant-runtime --example unpack-layer)
ours=$target/release/examples/unpack-layer
[ -x "$ours" ] || ours=$target/bench/examples/unpack-layer
own=ignore; [ "$(id -u)" = 0 ] && own=shift:100000

scratch=$(mktemp -d /dev/shm/ka-peers-unpack.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
tarsize=$(pigz -dc "$blob" | wc -c)
gzsize=$(stat -c %s "$blob")
d=$scratch/out
hyperfine -N --runs "$runs" --warmup 1 --export-json "$outdir/unpack.json" \
  --prepare "rm -rf $d" \
  -n koji-adjutant "$ours $blob $d gzip $diff_id $own" \
  -n 'tar -xzf' "bash -c 'mkdir $d && tar -xzf $blob -C $d'" \
  -n 'pigz -dc | tar -x' "bash -c 'mkdir $d && pigz -dc $blob | tar -x -C $d'" >&2

{
  echo "Layer unpack on tmpfs: rpmroot base layer, $((tarsize / 1000000)) MB tar, $((gzsize / 1000000)) MB gzip, $(nproc) CPUs, $runs runs ($(date -u +%F))"
  echo
  echo "| unpacker | median | MB/s (uncompressed) | vs pigz -dc \| tar -x |"
  echo "|---|---|---|---|"
  pigz_med=$(jq -r '.results[] | select(.command=="pigz -dc | tar -x") | .median' "$outdir/unpack.json")
  jq -r --argjson size "$tarsize" --argjson pigz "$pigz_med" '.results[] |
    "| \(.command|gsub("\\|";"\\|")) | \(.median*1000|floor) ms | \($size/.median/1e6|floor) | \($pigz/.median*100|floor/100)x |"' "$outdir/unpack.json"
} | tee "$out"
