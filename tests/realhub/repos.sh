#!/bin/bash
# Check koji-adjutant's newRepo/createrepo against a real Koji 1.35.3 hub with kojira (the
# realhub of /work/shared/realhub, which must be up). docs/repos.md explains it.
# Covers: `koji regen-repo` ends with a READY repo served from topurl that dnf reads (groups
# included); a build tagged into a parent of the tag and a `wait-repo --request` (what a build
# waiting for its buildroot does) give a new repo, updated from the previous one, that contains
# the build, and dnf installs it; an external repo merged (mergerepos.log); a host without the
# topdir mount refuses softly.
# Usage: tests/realhub/repos.sh     (exit 0 when every check passes)
#   REALHUB_SH=…/realhub.sh and the REALHUB_* variables of realhub.sh select the hub instance.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ka-target-repos}
realhub=${REALHUB_SH:-/work/shared/realhub/realhub.sh}
eval "$("$realhub" env)"
work=$(mktemp -d /var/tmp/ka-realhub-repos.XXXXXX)
chmod 755 "$work"
pass=0 fail=0
ok()   { echo "PASS: $*"; pass=$((pass+1)); }
bad()  { echo "FAIL: $*"; fail=$((fail+1)); }
daemon_pid=""
stop_daemon() { [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; daemon_pid=""; }
cleanup() { stop_daemon; rm -rf "$work"; }
trap cleanup EXIT

"$realhub" status >/dev/null || { echo "realhub is not up"; exit 2; }
for t in dnf createrepo_c mergerepo_c curl jq; do
  command -v $t >/dev/null || { echo "repos.sh: $t is missing (apt-get install dnf createrepo-c curl jq)"; exit 2; }
done
(cd "$repo" && cargo build -q --bin koji-adjutant --bin koji-adjutant-full) || exit 2
bin=$CARGO_TARGET_DIR/debug/koji-adjutant
fx=${KOJI_ADJUTANT_FIXTURES:-$("$repo/tests/fixtures/make-fixtures.sh")}
tag=dist-build base=dist-base nvr=koji-only-dep-1.0-1

conf() {  # conf TOPDIR EXTRA > file
  cat <<CONF
[kojid]
server = $REALHUB_SERVER
user = $REALHUB_BUILDER
password = $REALHUB_BUILDER_PASSWORD
topurl = $REALHUB_TOPURL
topdir = $1
workdir = $work/work
sleeptime = 2
minspace = 0
$2
[adjutant]
store_root = $work/store
CONF
}
conf "$REALHUB_TOPDIR" "" > "$work/kojid.conf"
mkdir -p "$work/not-mounted"
conf "$work/not-mounted" "" > "$work/nomount.conf"

start_daemon() {  # start_daemon CONF LOG
  "$bin" daemon -c "$1" --fg --force-lock --verbose >"$2" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 40); do
    grep -q "connected to the hub" "$2" && return 0
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "daemon did not start:"; cat "$2"; exit 2
}
repo_field() { koji call getRepo "$1" 2>/dev/null | sed -n "s/^ *'$2': \([0-9]*\),.*/\1/p"; }
dnf_q() {  # dnf_q REPO_URL ROOT args...
  local url=$1 root=$2; shift 2
  timeout 300 dnf -y -q --installroot="$root" --releasever=12 --setopt=reposdir=/dev/null \
    --setopt=cachedir="$root-cache" --repofrompath=koji,"$url" --repo=koji --nogpgcheck "$@"
}

start_daemon "$work/kojid.conf" "$work/daemon.log"

# 1. regen-repo: a READY repo, served from topurl, that dnf reads
r0=$(repo_field "$tag" id)
if timeout 300 koji-admin regen-repo --make-task --wait "$tag" >"$work/regen1.log" 2>&1; then
  ok "regen-repo $tag finished"
else
  bad "regen-repo $tag: $(tail -3 "$work/regen1.log")"
fi
r1=$(repo_field "$tag" id)
[ -n "$r1" ] && [ "$r1" != "$r0" ] && [ "$(repo_field "$tag" state)" = 1 ] \
  && ok "repo $r1 is READY" || bad "no new READY repo for $tag (before: ${r0:-none}, now: ${r1:-none})"
url="$REALHUB_TOPURL/repos/$tag/$r1/x86_64"
curl -fsS "$url/repodata/repomd.xml" -o /dev/null && ok "repomd.xml served at $url" || bad "repomd.xml not served at $url"
if dnf_q "$url" "$work/root1" group list 2>&1 | grep -q '^ *build$'; then
  ok "dnf reads repo $r1 and its build group"
else
  bad "dnf cannot read repo $r1: $(dnf_q "$url" "$work/root1" group list 2>&1 | tail -3)"
fi

# 2. a build tagged into the tag's inheritance, then a repo request as a waiting build makes
koji taginfo "$base" >/dev/null 2>&1 || koji-admin add-tag "$base" --arches=x86_64 >/dev/null
koji list-tag-inheritance "$tag" | grep -q "$base" || koji-admin add-tag-inheritance "$tag" "$base" --priority 10 >/dev/null
koji list-pkgs --tag "$base" 2>/dev/null | grep -q '^koji-only-dep ' || koji-admin add-pkg "$base" koji-only-dep --owner "$REALHUB_ADMIN_USER" >/dev/null
koji buildinfo "$nvr" 2>/dev/null | grep -q 'State: COMPLETE' \
  || koji-admin import "$fx/srpms/koji-only-dep-1.0-1.src.rpm" "$fx/rpms/koji-only-dep-1.0-1.noarch.rpm" >/dev/null
if koji list-tagged "$base" 2>/dev/null | grep -q "^$nvr "; then
  koji-admin call untagBuildBypass "$base" "$nvr" >/dev/null   # re-tag: a new tag event
fi
koji-admin call tagBuildBypass "$base" "$nvr" >/dev/null && ok "$nvr tagged into $base (parent of $tag)" || bad "tagging $nvr"
if timeout 300 koji-admin wait-repo "$tag" --build "$nvr" --request --timeout 4 >"$work/wait.log" 2>&1; then
  ok "wait-repo --request: a new repo with $nvr"
else
  bad "wait-repo: $(tail -3 "$work/wait.log")"
fi
r2=$(repo_field "$tag" id)
[ "$r2" != "$r1" ] && ok "new repo $r2 (was $r1)" || bad "no new repo after tagging"
grep -q "koji-only-dep-1.0-1.noarch.rpm" "$REALHUB_TOPDIR/repos/$tag/$r2/x86_64/pkglist" \
  && ok "repo $r2 pkglist has the build" || bad "repo $r2 pkglist lacks the build"
task=$(koji call repoInfo "$r2" | sed -n "s/^ *'task_id': \([0-9]*\),.*/\1/p")
child=$(koji call getTaskChildren "$task" | sed -n "s/^ *'id': \([0-9]*\),.*/\1/p" | head -1)
log=$(curl -fsS "$REALHUB_TOPURL/work/tasks/$((child % 10000))/$child/createrepo.log" | head -1)
case "$log" in *"--update --skip-stat"*) ok "createrepo $child updated from the old repo";; *) bad "createrepo $child did not update: $log";; esac
url="$REALHUB_TOPURL/repos/$tag/latest/x86_64"
if dnf_q "$url" "$work/root2" install koji-only-dep >/dev/null 2>&1 && [ -f "$work/root2/usr/share/koji-only-dep/marker" ]; then
  ok "dnf installed koji-only-dep from $url"
else
  bad "dnf install from $url: $(dnf_q "$url" "$work/root2" install koji-only-dep 2>&1 | tail -3)"
fi

# 3. an external repo merged in koji mode
mkdir -p "$work/ext/x86_64"
cat > "$work/extpkg.spec" <<'SPEC'
Name: extpkg
Version: 1.0
Release: 1
Summary: an external repo's package
License: MIT
BuildArch: noarch
%description
x
%install
mkdir -p %{buildroot}/usr/share/extpkg; echo ext > %{buildroot}/usr/share/extpkg/f
%files
/usr/share/extpkg/f
SPEC
rpmbuild --quiet --define "_topdir $work/rpmbuild" -bb "$work/extpkg.spec" >/dev/null 2>&1
cp "$work"/rpmbuild/RPMS/noarch/extpkg-1.0-1.noarch.rpm "$work/ext/x86_64/" && createrepo_c -q "$work/ext/x86_64" && chmod -R a+rX "$work/ext"
ext=ka-repos-check-$$
koji-admin add-external-repo -t "$tag" "$ext" "file://$work/ext/\$arch/" --mode koji >/dev/null
timeout 300 koji-admin regen-repo --make-task --wait "$tag" >"$work/regen3.log" 2>&1
r3=$(repo_field "$tag" id)
if gunzip -c "$REALHUB_TOPDIR/repos/$tag/$r3/x86_64/repodata/"*-primary.xml.gz 2>/dev/null | grep -q '<name>extpkg</name>'; then
  ok "repo $r3 merged the external repo"
else
  bad "repo $r3 lacks the external package: $(tail -3 "$work/regen3.log")"
fi
task=$(koji call repoInfo "$r3" | sed -n "s/^ *'task_id': \([0-9]*\),.*/\1/p")
child=$(koji call getTaskChildren "$task" | sed -n "s/^ *'id': \([0-9]*\),.*/\1/p" | head -1)
koji call listTaskOutput "$child" | grep -q mergerepos.log && ok "mergerepos.log uploaded" || bad "no mergerepos.log for task $child"
koji-admin remove-external-repo "$ext" "$tag" >/dev/null
koji-admin remove-external-repo "$ext" >/dev/null 2>&1

# 4. no topdir mount: the newRepo task is refused softly, not failed
stop_daemon
start_daemon "$work/nomount.conf" "$work/daemon-nomount.log"
t=$(koji-admin regen-repo --make-task --nowait "$tag" | sed -n 's/^Created task: //p')
refusal() { koji-admin call --json-output scheduler.getTaskRefusals 2>/dev/null \
  | jq -r --argjson t "$t" '.[] | select(.task_id == $t) | "\(.soft) \(.msg)"'; }
for _ in $(seq 1 60); do
  [ -n "$(refusal)" ] && break
  sleep 1
done
if [ "$(refusal)" = "true No access to repos dir $work/not-mounted/repos" ]; then
  ok "newRepo $t refused softly without the topdir mount"
else
  bad "newRepo $t was not refused: $(grep -i refus "$work/daemon-nomount.log" | tail -2)"
fi
koji call getTaskInfo "$t" | grep -q "'state': 0," && ok "task $t is FREE again" || bad "task $t is not FREE"
koji-admin cancel "$t" >/dev/null 2>&1
stop_daemon

echo "repos.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
