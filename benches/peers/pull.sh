#!/bin/bash
# pull.sh — pulling the rpmroot image from the local registry: `koji-adjutant image pull`
# (fetch + verify into the store; and with --unpack) against `skopeo copy` to an OCI
# directory, in one hyperfine run. Both write to tmpfs.
#
# Usage: benches/peers/pull.sh [RUNS]
# Needs the test registry with test/rpmroot:latest: KOJI_ADJUTANT_TEST_REGISTRY, else
# tests/registry.sh start is run (and the registry stopped at exit).
# Output: a markdown table of medians on stdout and in $OUT (default target dir/peers/pull.md).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=${1:-5}
target=${CARGO_TARGET_DIR:-$repo/target}
outdir=$target/peers; mkdir -p "$outdir"
out=${OUT:-$outdir/pull.md}
for t in hyperfine skopeo jq; do command -v $t >/dev/null || { echo "pull.sh: $t is missing" >&2; exit 1; }; done

started=""
if [ -z "${KOJI_ADJUTANT_TEST_REGISTRY:-}" ]; then
  eval "$("$repo/tests/registry.sh" start)"
  started=1
fi
reg=$KOJI_ADJUTANT_TEST_REGISTRY
(cd "$repo" && cargo build -q --profile bench --bin koji-adjutant --bin koji-adjutant-full)
ka=$target/release/koji-adjutant
[ -x "$ka" ] || ka=$target/bench/koji-adjutant

scratch=$(mktemp -d /dev/shm/ka-peers-pull.XXXXXX)
cleanup() { rm -rf "$scratch"; [ -z "$started" ] || "$repo/tests/registry.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
ref=$reg/test/rpmroot:latest
size=$(skopeo inspect --tls-verify=false --raw "docker://$ref" | jq '[.layers[].size] | add')
hyperfine -N --runs "$runs" --warmup 1 --export-json "$outdir/pull.json" \
  -n 'skopeo copy' --prepare "rm -rf $scratch/skopeo $scratch/ka" \
    "skopeo copy -q --src-tls-verify=false docker://$ref oci:$scratch/skopeo:latest" \
  -n 'koji-adjutant image pull' --prepare "rm -rf $scratch/skopeo $scratch/ka" \
    "$ka --root $scratch/ka image pull -q --policy always --insecure-registry $reg $ref" \
  -n 'koji-adjutant image pull --unpack' --prepare "rm -rf $scratch/skopeo $scratch/ka" \
    "$ka --root $scratch/ka image pull -q --unpack --policy always --insecure-registry $reg $ref" >&2

{
  echo "Pull of $ref ($((size / 1000000)) MB of layers) to tmpfs, $(nproc) CPUs, $runs runs ($(date -u +%F))"
  echo
  echo "| command | median | vs skopeo copy |"
  echo "|---|---|---|"
  sk=$(jq -r '.results[] | select(.command=="skopeo copy") | .median' "$outdir/pull.json")
  jq -r --argjson sk "$sk" '.results[] | "| \(.command) | \(.median*1000|floor) ms | \(.median/$sk*100|floor/100)x |"' "$outdir/pull.json"
} | tee "$out"
