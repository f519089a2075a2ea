#!/bin/bash
# Check the rpm build tasks against a real Koji 1.35.3 hub (the realhub of
# /work/shared/realhub, up with kojira running): a scratch build and a non-scratch
# build of an SRPM, submitted with the koji CLI as alice to target `dist`, taken by
# koji-adjutant as build host builder1: build → (waitrepo) → rebuildSRPM → buildArch
# → moveBuildToScratch / completeBuild + tagBuild. Checks that both tasks close, the
# rpms are in getTaskResult and download from topurl, and the build is tagged.
#
# BUILDROOT=container (default): `koji-adjutant daemon` with container buildroots from
# the rpmroot fixture image, imported into the daemon's store as
# localhost/buildroot:latest (the image the realhub's dist-build extra names).
# BUILDROOT=host: examples/hostbuild_daemon.rs, the same task handlers with the host's
# rpmbuild instead of containers (the test double of tests/support/hostbroot.rs).
# Usage: [BUILDROOT=host] tests/realhub/build-check.sh   (exit 0 when every check passes)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ka-target-rpmtasks}
realhub=${REALHUB_SH:-/work/shared/realhub/realhub.sh}
eval "$("$realhub" env)"
work=$(mktemp -d /var/tmp/ka-realhub-build.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/store" "$work/work"
pass=0 fail=0
ok()   { echo "PASS: $*"; pass=$((pass+1)); }
bad()  { echo "FAIL: $*"; fail=$((fail+1)); }
daemon_pid=""
cleanup() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$realhub" status >/dev/null || { echo "realhub is not up"; exit 2; }
buildroot=${BUILDROOT:-container}
if [ "$buildroot" = host ]; then
    (cd "$repo" && cargo build -q --example hostbuild_daemon) || exit 2
    daemon=("$CARGO_TARGET_DIR/debug/examples/hostbuild_daemon" -c "$work/kojid.conf")
else
    (cd "$repo" && cargo build -q --bin koji-adjutant --bin koji-adjutant-full) || exit 2
    bin=$CARGO_TARGET_DIR/debug/koji-adjutant
    rpmroot=$("$repo/tests/fixtures/make-fixtures.sh" --rpmroot)/oci/rpmroot || exit 2
    "$bin" image import --quiet --root "$work/store" "oci:$rpmroot:latest" localhost/buildroot:latest \
        && ok "rpmroot imported as localhost/buildroot:latest" || { bad "image import"; exit 1; }
    daemon=("$bin" daemon -c "$work/kojid.conf" --fg --force-lock --verbose)
fi

cat > "$work/kojid.conf" <<CONF
[kojid]
server = $REALHUB_SERVER
user = $REALHUB_BUILDER
password = $REALHUB_BUILDER_PASSWORD
topurl = $REALHUB_TOPURL
topdir = $REALHUB_TOPDIR
workdir = $work/work
sleeptime = 2
minspace = 0
retry_interval = 2
max_retries = 5
[adjutant]
store_root = $work/store
max_load_per_cpu = 0
status_bind =
CONF

# an SRPM of the package the realhub lists in dist-dest, with a release unique to
# this run (a non-scratch build of an existing N-V-R is refused by the hub)
rel=$(date +%s)
mkdir -p "$work/rpmbuild"
cat > "$work/realhub-hello.spec" <<SPEC
Name:           realhub-hello
Version:        1.0
Release:        $rel
Summary:        koji-adjutant realhub build check
License:        MIT
BuildArch:      noarch

%description
Built by tests/realhub/build-check.sh.

%install
mkdir -p %{buildroot}%{_datadir}/realhub-hello
echo hello > %{buildroot}%{_datadir}/realhub-hello/hello.txt

%files
%{_datadir}/realhub-hello/hello.txt
SPEC
rpmbuild -bs --define "_topdir $work/rpmbuild" "$work/realhub-hello.spec" >/dev/null || exit 2
srpm=$work/rpmbuild/SRPMS/realhub-hello-1.0-$rel.src.rpm
nvr=realhub-hello-1.0-$rel

"${daemon[@]}" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 40); do grep -q "connected to the hub" "$work/daemon.log" && break; sleep 0.25; done
grep -q "connected to the hub" "$work/daemon.log" && ok "daemon ($buildroot buildroots) connected as $REALHUB_BUILDER" \
    || { bad "daemon did not connect"; cat "$work/daemon.log"; exit 1; }

taskid() { sed -n 's/^Created task: \([0-9]*\)$/\1/p' "$1"; }
state() { koji call getTaskInfo "$1" 2>/dev/null | sed -n "s/^ *'state': \([0-9]*\),.*/\1/p"; }
wait_done() {  # wait_done TASK SECONDS → final state
    local i s
    for ((i = 0; i < $2; i++)); do
        s=$(state "$1")
        case $s in 2|3|5) echo "$s"; return 0 ;; esac
        sleep 1
    done
    echo "timeout"
}
children() { koji call getTaskChildren "$1" 2>/dev/null; }
child_of() {  # child_of PARENT METHOD → id
    koji call --json-output getTaskChildren "$1" 2>/dev/null \
        | python3 -c "import json,sys; print([t['id'] for t in json.load(sys.stdin) if t['method']=='$2'][0])"
}

# ---- scratch build ---------------------------------------------------------------------
koji-user build --scratch --nowait dist "$srpm" >"$work/scratch.out" 2>&1
t=$(taskid "$work/scratch.out")
s=$(wait_done "$t" 600)
if [ "$s" = 2 ]; then ok "scratch build task $t CLOSED"; else bad "scratch build task $t ended in state $s"; koji taskinfo -v "$t"; tail -40 "$work/daemon.log"; fi
ba=$(child_of "$t" buildArch)
koji call --json-output getTaskResult "$ba" >"$work/scratch-result.json" 2>&1
echo "getTaskResult($ba):"; cat "$work/scratch-result.json"; echo
rpm=$(python3 -c "import json; r=json.load(open('$work/scratch-result.json')); print([p for p in r['rpms'] if p.endswith('.noarch.rpm')][0])")
python3 -c "import json; r=json.load(open('$work/scratch-result.json')); assert sorted(r)==['brootid','logs','rpms','srpms'] and r['srpms'] and isinstance(r['brootid'], int)" \
    && ok "buildArch $ba result has rpms, srpms, logs and a brootid" || bad "buildArch $ba result shape"
base=$(basename "$rpm")
curl -fsS -o "$work/scratch.rpm" "$REALHUB_TOPURL/scratch/alice/task_$t/$base" \
    && rpm -qp --nosignature "$work/scratch.rpm" >/dev/null 2>&1 \
    && ok "scratch rpm downloads from topurl: scratch/alice/task_$t/$base" || bad "scratch rpm download"
koji call --json-output getBuildroot "$(python3 -c "import json; print(json.load(open('$work/scratch-result.json'))['brootid'])")" \
    >"$work/br.json" 2>&1
python3 -c "import json; b=json.load(open('$work/br.json')); assert b['state']==3 and b['task_id']==$ba, b" \
    && ok "buildroot of $ba is EXPIRED and belongs to it" || { bad "buildroot state"; cat "$work/br.json"; }

if [ "$buildroot" = container ]; then
    curl -fsS "$REALHUB_TOPURL/work/tasks/$((ba % 10000))/$ba/mock_config.log" >"$work/mock_config.log" 2>/dev/null
    grep -q "localhost/buildroot:latest" "$work/mock_config.log" \
        && ok "buildArch $ba ran in localhost/buildroot:latest (mock_config.log)" \
        || { bad "mock_config.log does not name the image"; head -30 "$work/mock_config.log"; }
fi

# ---- non-scratch build -----------------------------------------------------------------
koji-user build --nowait dist "$srpm" >"$work/build.out" 2>&1
t=$(taskid "$work/build.out")
s=$(wait_done "$t" 600)
if [ "$s" = 2 ]; then ok "build task $t CLOSED"; else bad "build task $t ended in state $s"; koji taskinfo -v "$t"; tail -40 "$work/daemon.log"; fi
koji buildinfo "$nvr" >"$work/buildinfo.txt" 2>&1
grep -q '^State: COMPLETE' "$work/buildinfo.txt" && ok "$nvr is COMPLETE" || { bad "$nvr not complete"; cat "$work/buildinfo.txt"; }
koji list-tagged dist-dest "realhub-hello" 2>/dev/null | grep -q "^$nvr " \
    && ok "$nvr tagged into dist-dest" || bad "$nvr not tagged"
curl -fsS -o "$work/build.rpm" "$REALHUB_TOPURL/packages/realhub-hello/1.0/$rel/noarch/$nvr.noarch.rpm" \
    && rpm -qp --nosignature "$work/build.rpm" >/dev/null 2>&1 \
    && ok "rpm downloads from topurl: packages/realhub-hello/1.0/$rel/noarch/$nvr.noarch.rpm" \
    || bad "rpm download from packages/"
koji call --json-output listBuildroots buildID=null 2>/dev/null >/dev/null
koji call --json-output getBuild "$nvr" >"$work/build.json" 2>&1
echo "getBuild($nvr):"; cat "$work/build.json"; echo
koji call --json-output listRPMs "$(python3 -c "import json; print(json.load(open('$work/build.json'))['id'])")" >"$work/rpms.json" 2>&1
python3 -c "
import json
rpms = json.load(open('$work/rpms.json'))
assert sorted(r['arch'] for r in rpms) == ['noarch', 'src'], rpms
assert all(isinstance(r['buildroot_id'], int) for r in rpms), rpms
" && ok "listRPMs: noarch + src, each linked to its buildroot" || { bad "listRPMs"; cat "$work/rpms.json"; }

kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=""
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
