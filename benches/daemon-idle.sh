#!/bin/bash
# Idle cost of the daemon: RSS and CPU while it polls a hub with no work for it.
# Usage: benches/daemon-idle.sh KOJID_CONF [SECONDS]   (default 120 s)
# The config must reach a hub (e.g. the realhub, docs/realhub.md). Uses the release
# binary ($BIN, default $CARGO_TARGET_DIR/release/koji-adjutant).
set -euo pipefail
conf=$1
secs=${2:-120}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/koji-adjutant}
log=$(mktemp)
"$bin" daemon -c "$conf" --fg --force-lock >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -f "$log"' EXIT
sleep 10
kill -0 "$pid" || { cat "$log"; exit 1; }
t0=$(awk '{print $14+$15}' "/proc/$pid/stat"); s0=$(date +%s.%N)
sleep "$secs"
t1=$(awk '{print $14+$15}' "/proc/$pid/stat"); s1=$(date +%s.%N)
grep -E "VmRSS|VmHWM|Threads" "/proc/$pid/status"
hz=$(getconf CLK_TCK)
awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s0="$s0" -v s1="$s1" \
    'BEGIN { c = (b - a) / hz; w = s1 - s0; printf "cpu: %.2f s over %.1f s = %.3f %% of a core\n", c, w, 100 * c / w }'
kill -TERM "$pid"; wait "$pid"; echo "exit $?"
