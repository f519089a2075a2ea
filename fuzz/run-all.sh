#!/bin/bash
# fuzz/run-all.sh [SECONDS] -- run every fuzz target for SECONDS (default 600) each, one after
# the other, one worker each, and print a table of executions, coverage and crashes.
#
# Environment:
#   FUZZ_TARGETS      space-separated subset of targets (default: all, see `cargo fuzz list`)
#   FUZZ_TARGET_DIR   cargo target dir of the instrumented build (default: fuzz/target)
#   FUZZ_ARGS         extra libFuzzer arguments for every target (e.g. "-rss_limit_mb=4096")
#   KOJI_ADJUTANT_FIXTURES  fixture dir for the seeds (default: tests/fixtures/make-fixtures.sh)
#
# Seeds are generated into fuzz/corpus/<target>/ (gitignored) on the first run; the corpus
# grows from run to run. Crashes are written to fuzz/artifacts/<target>/ and stop that target;
# the others still run. Logs: fuzz/logs/<target>.log. Exit status: 1 if any target crashed or
# failed to run. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain it runs
# with RUSTC_BOOTSTRAP=1. See docs/fuzzing.md.
set -euo pipefail

secs=${1:-600}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$here"
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
tdir=${FUZZ_TARGET_DIR:-$here/target}
build=(--target-dir "$tdir" -O --debug-assertions)

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 2; }
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

if [ ! -d corpus ] || [ -z "$(ls -A corpus 2>/dev/null)" ]; then
    fixtures=${KOJI_ADJUTANT_FIXTURES:-$("$repo/tests/fixtures/make-fixtures.sh")}
    python3 "$here/mkseeds.py" corpus "$fixtures" "$repo"
fi

if [ -z "${FUZZ_TARGETS:-}" ]; then
    cargo fuzz build "${build[@]}" >&2
else
    for t in $targets; do cargo fuzz build "${build[@]}" "$t" >&2; done
fi

# Per-target libFuzzer options: inputs that are files (tars) get more room.
opts_for() {
    local o=(-timeout=20 -rss_limit_mb=2048 -print_final_stats=1)
    case $1 in
        layer_unpack | oci_archive) o+=(-max_len=65536) ;;
        image_manifest) o+=(-max_len=16384) ;;
        *) o+=(-max_len=8192) ;;
    esac
    [ -f "dict/$1.dict" ] && o+=("-dict=dict/$1.dict")
    echo "${o[@]}"
}

mkdir -p logs
rows=()
status=0
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log=logs/$t.log
    echo "== $t: ${secs}s" >&2
    start=$(date +%s)
    # shellcheck disable=SC2046,SC2086
    if cargo fuzz run "${build[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$secs" $(opts_for "$t") ${FUZZ_ARGS:-} >"$log" 2>&1; then
        rc=0
    else
        rc=$?
        status=1
    fi
    took=$(($(date +%s) - start))
    after=$(find "artifacts/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rows+=("$t ${took} ${execs:-?} ${eps:-?} ${cov:-?} ${ft:-?} ${corp:-?} $((after - before)) $rc")
    if [ "$rc" != 0 ]; then
        echo "   $t exited $rc; see fuzz/$log" >&2
        grep -E '^(SUMMARY|thread .* panicked)' "$log" | head -3 >&2 || true
    fi
done

printf '\n%-18s %7s %12s %8s %7s %8s %7s %8s %4s\n' target seconds execs exec/s cov ft corpus crashes rc
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-18s %7s %12s %8s %7s %8s %7s %8s %4s\n' $r
done
exit $status
