#!/bin/bash
# Check koji-adjutant's daemon against a real Koji 1.35.3 hub (the realhub of
# /work/shared/realhub, which must be up: `KOJI_SRC=/opt/koji-src realhub.sh up`).
# Covers: password and client-certificate login, an assigned task taken and closed,
# a failing task, an unknown method refused, a foreground task, `koji cancel`
# noticed (the task's processes killed), `koji restart-hosts` completed across the
# daemon's re-exec, SIGTERM shutdown, and uploads (docs/realhub.md).
# Usage: tests/realhub/check.sh        (exit 0 when every check passes)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ka-target-hub}
realhub=${REALHUB_SH:-/work/shared/realhub/realhub.sh}
eval "$("$realhub" env)"
work=$(mktemp -d /var/tmp/ka-realhub-check.XXXXXX)
pass=0 fail=0
ok()   { echo "PASS: $*"; pass=$((pass+1)); }
bad()  { echo "FAIL: $*"; fail=$((fail+1)); }
daemon_pid=""
cleanup() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$realhub" status >/dev/null || { echo "realhub is not up"; exit 2; }
(cd "$repo" && cargo build -q --bin koji-adjutant --bin koji-adjutant-full --example hubcheck) || exit 2
bin=$CARGO_TARGET_DIR/debug/koji-adjutant
hubcheck=$CARGO_TARGET_DIR/debug/examples/hubcheck

common="topurl = $REALHUB_TOPURL
topdir = $REALHUB_TOPDIR
workdir = $work/work
sleeptime = 2
minspace = 0
retry_interval = 2
max_retries = 5"
cat > "$work/password.conf" <<CONF
[kojid]
server = $REALHUB_SERVER
user = $REALHUB_BUILDER
password = $REALHUB_BUILDER_PASSWORD
$common
[adjutant]
store_root = $work/store
CONF
cat > "$work/cert.conf" <<CONF
[kojid]
server = $REALHUB_SERVER_TLS
cert = $REALHUB_BUILDER_CERT
serverca = $REALHUB_SERVERCA
$common
[adjutant]
store_root = $work/store
CONF

state() { koji call getTaskInfo "$1" 2>/dev/null | sed -n "s/^ *'state': \([0-9]*\),.*/\1/p"; }
wait_state() {  # wait_state TASK STATE SECONDS
    local i
    for ((i = 0; i < $3 * 2; i++)); do
        [ "$(state "$1")" = "$2" ] && return 0
        sleep 0.5
    done
    return 1
}
mktask() { koji-admin call --python makeTask "\"$1\"" "$2" | tail -1; }

start_daemon() {  # start_daemon CONF LOG
    "$bin" daemon -c "$1" --fg --force-lock --verbose >"$2" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 1 40); do
        grep -q "connected to the hub" "$2" && return 0
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.25
    done
    return 1
}
stop_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
    local rc=$?
    daemon_pid=""
    return $rc
}

for mode in password cert; do
    log=$work/daemon-$mode.log
    if start_daemon "$work/$mode.conf" "$log"; then ok "$mode login (exclusive session, host.getID)"; else bad "$mode login"; cat "$log"; continue; fi

    t=$(mktask sleep '[1]')
    if wait_state "$t" 2 60 && [ "$(koji call getTaskResult "$t" 2>&1 | tail -1)" = "None" ]; then
        ok "$mode: assigned task $t taken and closed"
    else bad "$mode: task $t not closed (state $(state "$t"))"; fi

    t=$(mktask someMethod '[]')
    if wait_state "$t" 2 60 && [ "$(koji call getTaskResult "$t" 2>&1 | tail -1)" = "42" ]; then
        ok "$mode: foreground task $t returned 42"
    else bad "$mode: foreground task $t"; fi

    t=$(mktask sleep '["BAD_ARG"]')
    if wait_state "$t" 5 60 && (koji call getTaskResult "$t" 2>&1 || true) | grep -q "TypeError"; then
        ok "$mode: failing task $t FAILED with its fault"
    else bad "$mode: failing task $t (state $(state "$t"))"; fi

    t=$(mktask noSuchMethod$mode '[1]')
    found=""
    for _ in $(seq 1 60); do
        if koji-admin call scheduler.getTaskRefusals 2>/dev/null | tr -d '\n' | grep -q "'msg': 'no handler for method',[^}]*'task_id': $t"; then found=1; break; fi
        sleep 0.5
    done
    if [ -n "$found" ] && [ "$(state "$t")" = 0 ]; then ok "$mode: unknown method task $t refused (hard), back to FREE"
    else bad "$mode: unknown method task $t not refused"; fi
    koji-admin cancel "$t" >/dev/null 2>&1

    t=$(mktask fork '[2, 600]')
    if wait_state "$t" 1 60; then
        sleep 1
        kids=$(pgrep -P "$daemon_pid" -x sleep | wc -l)
        koji-admin cancel "$t" >/dev/null 2>&1
        gone=""
        for _ in $(seq 1 40); do
            if [ "$(pgrep -P "$daemon_pid" -x sleep | wc -l)" = 0 ] && grep -q "killing task.*task=$t" "$log"; then gone=1; break; fi
            sleep 0.5
        done
        if [ "$kids" = 2 ] && [ -n "$gone" ]; then ok "$mode: koji cancel of task $t noticed, its 2 processes killed"
        else bad "$mode: cancel of task $t (processes before: $kids)"; fi
    else bad "$mode: fork task $t never opened"; fi

    if [ "$mode" = password ]; then
        out=$(timeout 180 koji-admin restart-hosts --wait 2>&1)
        rc=$?
        rt=$(printf '%s\n' "$out" | sed -n 's/^\([0-9][0-9]*\) restartHosts .*/\1/p' | head -1)
        if [ $rc = 0 ] && [ -n "$rt" ] && [ "$(state "$rt")" = 2 ] && grep -q "restarting" "$log"; then
            ok "koji restart-hosts task $rt completed; the daemon re-executed itself"
        else bad "koji restart-hosts (rc $rc): $out"; fi
    fi

    if stop_daemon; then ok "$mode: SIGTERM: clean exit 0"; else bad "$mode: exit status on SIGTERM"; fi
    if koji list-hosts 2>/dev/null | grep -q "^builder1 *Y *N"; then ok "$mode: host reported not ready after shutdown"
    else bad "$mode: host still ready after shutdown"; fi
done

# uploads, as the host (no daemon running)
for mode in password cert; do
    t=$(mktask sleep '[1]')
    if res=$("$hubcheck" upload -c "$work/$mode.conf" "$t" 2621440 2>&1); then
        rel=$(koji call getTaskInfo "$t" >/dev/null 2>&1; printf 'tasks/%d/%d' $((t % 10000)) "$t")
        f=$REALHUB_TOPDIR/work/$rel/payload.bin
        if [ "$(state "$t")" = 2 ] && [ "$(stat -c %s "$f" 2>/dev/null)" = 2621440 ] \
            && [ "$(cat "$REALHUB_TOPDIR/work/$rel/check.log" 2>/dev/null)" = "$(printf 'first line\nsecond line')" ]; then
            ok "$mode: uploads into $rel (2.5 MiB in 1 MiB chunks, incremental log), task closed: $res"
        else bad "$mode: upload result $res; file $(stat -c %s "$f" 2>&1)"; fi
    else bad "$mode: hubcheck upload: $res"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
