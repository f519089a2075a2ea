#!/bin/bash
# benches/peers/start.sh — container start and exec latency against peer runtimes.
#
# Start to exit of /bin/true in the fixture busybox image, with the same isolation
# (user, mount, pid, net, uts, ipc namespaces; /proc, /dev, tmpfs /tmp) — one hyperfine
# run with every peer — and exec into a running container against `podman exec`.
# Writes a markdown table (stdout and $OUT).
#
#   benches/peers/start.sh            # as root; builds the release binary if needed
#
# Environment: RUNS (default 300), PODMAN_RUNS (default 30), OUT (default
# /var/tmp/koji-adjutant-bench/start.md), KA_BIN (default target/release/koji-adjutant
# under $CARGO_TARGET_DIR), SKIP_BUILD=1, SKIP_CRITERION=1.
#
# Notes on fairness, also printed under the table:
# - ours: `koji-adjutant run --rm IMAGE` (the image already in the store and unpacked,
#   as a daemon has it) — pid 1 reaper + the command, an overlay root with an
#   in-memory upper layer, fresh /proc, /dev (tmpfs + device binds + devpts + shm),
#   read-only /sys, tmpfs /tmp, masked /proc paths, hostname, lo up, caps,
#   no_new_privs and the default seccomp filter, uid/gid maps of 65536 ids. No cgroup
#   (no limits asked). Also timed without the filter (`--security-opt
#   seccomp=unconfined`): installing one costs ~0.1 ms of kernel time (its JIT).
# - bwrap: `--unshare-all` (user, ipc, pid, net, uts, cgroup) with `--proc --dev --tmpfs`,
#   a bind of the root (no overlay); timed without a filter and with ours (`--seccomp`,
#   the BPF from `koji-adjutant __adjutant-helper seccomp-bpf`).
# - unshare+chroot: user, mount, pid, net, ipc, uts namespaces; no /proc, /dev or /tmp.
# - runc, crun: OCI bundles with user (0 → 100000, 65536 ids), mount, pid, net, uts, ipc
#   namespaces, their default mounts plus a tmpfs /tmp; cgroups (cgroupfs) as they do
#   by default. crun runs in a mount namespace where the hybrid host's
#   cgroup.controllers is masked (it refuses hybrid hosts with a v2 controller).
# - podman: `podman run --rm --network=none` (its own storage under $WORK).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "start.sh: run as root (runc, crun and podman need it)" >&2; exit 2; }
for t in hyperfine bwrap unshare runc crun podman python3; do
    command -v "$t" >/dev/null || { echo "start.sh: $t is not installed" >&2; exit 2; }
done

HERE=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-300}
PODMAN_RUNS=${PODMAN_RUNS:-30}
OUT=${OUT:-/var/tmp/koji-adjutant-bench/start.md}
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
KA_BIN=${KA_BIN:-$TARGET/release/koji-adjutant}
mkdir -p "$(dirname "$OUT")"

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$HERE" && cargo build --release --bin koji-adjutant --bin koji-adjutant-full >&2)
fi
[ -x "$KA_BIN" ] || { echo "start.sh: no binary at $KA_BIN" >&2; exit 2; }

FIX=$("$HERE/tests/fixtures/make-fixtures.sh")
LAYER=$FIX/layers/busybox.tar
[ -f "$LAYER" ] || { echo "start.sh: fixture layer $LAYER missing" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/ka-bench-start.XXXXXX)
chmod 755 "$WORK"
PODMAN="podman --root $WORK/podman/root --runroot $WORK/podman/run --cgroup-manager=cgroupfs --events-backend=file"
EXEC_CID=""
cleanup() {
    set +e
    [ -n "$EXEC_CID" ] && $PODMAN rm -f "$EXEC_CID" >/dev/null 2>&1
    $PODMAN rmi -a -f >/dev/null 2>&1
    rmdir /sys/fs/cgroup/*/libpod_parent 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# Root filesystems: ours and the OCI bundles' owned by container root (host 100000),
# bwrap's and chroot's by host root.
R=$WORK/rootfs-100000
R0=$WORK/rootfs-0
mkdir -p "$R" "$R0"
tar -xf "$LAYER" -C "$R0" --numeric-owner
tar -xf "$LAYER" -C "$R" --numeric-owner
chown -hR 100000:100000 "$R"
chmod 755 "$R" "$R0"

# OCI bundle (runc's default spec, adjusted).
B=$WORK/bundle
mkdir -p "$B"
(cd "$B" && runc spec)
python3 - "$B/config.json" "$R" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"] = {"path": sys.argv[2], "readonly": False}
ns = c["linux"]["namespaces"]
for t in ("user", "network"):
    if not any(n["type"] == t for n in ns):
        ns.append({"type": t})
c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777"]})
# Root cannot raise rlimits above this host's hard limits.
c["process"].pop("rlimits", None)
json.dump(c, open(p, "w"), indent=1)
EOF

# Podman image from the fixture layout.
$PODMAN pull -q "oci:$FIX/oci/busybox:latest" >/dev/null
IMG=$($PODMAN images -q | head -1)
PODMAN_RUN="$PODMAN run --rm --network=none --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 $IMG /bin/true"

# Our store, with the busybox image imported and unpacked (as a daemon would have it).
STORE=$WORK/store
"$KA_BIN" --root "$STORE" image pull "oci:$FIX/oci/busybox:latest" >/dev/null 2>&1
"$KA_BIN" --root "$STORE" run --rm localhost/busybox:latest /bin/true
EMPTY=$WORK/empty-controllers
: > "$EMPTY"
# Our default seccomp filter as raw BPF, for bwrap's --seccomp (the same deny list).
# bwrap reads it from fd 9, which the timed commands inherit from hyperfine: a tiny
# --prepare program rewinds that shared descriptor before every run.
"$KA_BIN" __adjutant-helper seccomp-bpf > "$WORK/seccomp.bpf"
printf '#include <unistd.h>\nint main(void) { return lseek(9, 0, SEEK_SET) != 0; }\n' |
    gcc -O2 -x c -o "$WORK/rewind-fd9" -

# Everything runs in one private mount namespace where cgroup2's controller list is
# empty (crun's hybrid-host refusal); the others do not look at it.
cat > "$WORK/hyperfine.sh" <<EOF
#!/bin/bash
set -e
mount --bind $EMPTY /sys/fs/cgroup/unified/cgroup.controllers
exec 9< $WORK/seccomp.bpf
hyperfine -N --warmup 20 --runs $RUNS --export-json $WORK/start.json --prepare $WORK/rewind-fd9 \\
  -n "koji-adjutant run --rm" "$KA_BIN --root $STORE run --rm localhost/busybox:latest /bin/true" \\
  -n "koji-adjutant run --rm --security-opt seccomp=unconfined" "$KA_BIN --root $STORE run --rm --security-opt seccomp=unconfined localhost/busybox:latest /bin/true" \\
  -n "koji-adjutant run --rm --rootfs" "$KA_BIN --root $STORE run --rm --rootfs $R /bin/true" \\
  -n "bwrap --seccomp (our filter)" "bwrap --unshare-all --bind $R0 / --proc /proc --dev /dev --tmpfs /tmp --seccomp 9 /bin/true" \\
  -n "bwrap" "bwrap --unshare-all --bind $R0 / --proc /proc --dev /dev --tmpfs /tmp /bin/true" \\
  -n "unshare+chroot" "unshare --user --map-root-user --mount --pid --net --ipc --uts --fork chroot $R0 /bin/true" \\
  -n "crun run" "crun --root $WORK/crun-root run --bundle $B c1" \\
  -n "runc run" "runc --root $WORK/runc-root run --bundle $B r1"
hyperfine -N --warmup 3 --runs $PODMAN_RUNS --export-json $WORK/podman.json \\
  -n "podman run --rm" "$PODMAN_RUN"
# Exec into a running container (podman's container also needs the masked list).
cid=\$($PODMAN run -d --network=none --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 $IMG sleep 100000)
echo "\$cid" > $WORK/exec-cid
hyperfine -N --warmup 5 --runs $PODMAN_RUNS --export-json $WORK/podman-exec.json \\
  -n "podman exec" "$PODMAN exec \$cid /bin/true"
$PODMAN rm -f \$cid >/dev/null
EOF
chmod +x "$WORK/hyperfine.sh"
# Let the writeback of what was just built, pulled and unpacked settle first: the first
# command timed otherwise pays for it.
sync
sleep 3
unshare -m --propagation private "$WORK/hyperfine.sh" >&2

EXEC_CID=$(cat "$WORK/exec-cid" 2>/dev/null || true)

# CPU time per start (all processes of a run, `perf stat`): less sensitive than wall
# time to what else the machine is doing.
if command -v perf >/dev/null; then
    perf stat -r 100 -x, -e task-clock -o "$WORK/cpu-ours.csv" -- \
        "$KA_BIN" --root "$STORE" run --rm --security-opt seccomp=unconfined \
        localhost/busybox:latest /bin/true >&2
    perf stat -r 100 -x, -e task-clock -o "$WORK/cpu-bwrap.csv" -- \
        bwrap --unshare-all --bind "$R0" / --proc /proc --dev /dev --tmpfs /tmp /bin/true >&2
fi
# Ours: criterion, through the runtime API, re-executing the same release binary as
# the daemon would.
CRIT=""
if [ -z "${SKIP_CRITERION:-}" ]; then
    (cd "$HERE" && KA_BENCH_HELPER=$KA_BIN cargo bench -p adjutant-runtime --bench containers -- exec_true >&2)
    CRIT=$TARGET/criterion/container/exec_true/new/estimates.json
fi

python3 - "$WORK" "$CRIT" "$OUT" "$RUNS" "$PODMAN_RUNS" <<'EOF'
import json, sys, os, platform
work, crit, out, runs, pruns = sys.argv[1:6]
rows = []
for f in ("start.json", "podman.json"):
    for r in json.load(open(os.path.join(work, f)))["results"]:
        rows.append((r["command"], r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000,
                     len(r["times"])))
median_of = {n: m for n, m, *_ in rows}
ours = median_of["koji-adjutant run --rm"]
ours_nf = median_of["koji-adjutant run --rm --security-opt seccomp=unconfined"]
bwrap = median_of["bwrap"]
bwrap_f = median_of["bwrap --seccomp (our filter)"]
lines = ["## Start to exit of /bin/true (busybox), one hyperfine run", "",
         "| runtime | median ms | mean ± σ ms | runs | median / ours |",
         "|---|---:|---:|---:|---:|"]
for n, med, mean, sd, k in rows:
    lines.append(f"| {n} | {med:.2f} | {mean:.2f} ± {sd:.2f} | {k} | {med / ours:.2f}× |")
lines += ["", f"ours / bwrap, both with our seccomp filter = {ours / bwrap_f:.2f}×; "
          f"both without one (the isolation of the issue's bwrap command line) = {ours_nf / bwrap:.2f}× "
          f"(target ≤ 1.0×); podman / ours = {median_of['podman run --rm'] / ours:.1f}× (target ≥ 30×)", ""]
def cpu(name):
    try:
        for l in open(os.path.join(work, f"cpu-{name}.csv")):
            f = l.split(",")
            if len(f) > 2 and f[2] == "task-clock":
                return float(f[0])
    except (OSError, ValueError):
        return None
co, cb = cpu("ours"), cpu("bwrap")
if co and cb:
    lines += [f"CPU time per start without a seccomp filter (perf stat, mean of 100, all processes): ours {co:.2f} ms, "
              f"bwrap {cb:.2f} ms ({co / cb:.2f}×).", ""]
pe = json.load(open(os.path.join(work, "podman-exec.json")))["results"][0]
lines += ["## Exec /bin/true into a running container", "",
          "| runtime | median ms | how |", "|---|---:|---|",
          f"| podman exec | {pe['median'] * 1000:.2f} | hyperfine, {len(pe['times'])} runs (CLI start included) |"]
if crit:
    c = json.load(open(crit))
    lines.append(f"| koji-adjutant Container::exec | {c['median']['point_estimate'] / 1e6:.2f} | "
                 "criterion (runtime API: step helper forked by the container's zygote, spawn, exec, wait) |")
lines += ["", f"Host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
          f"load average at the end {os.getloadavg()[0]:.2f}.", ""]
text = "\n".join(lines)
open(out, "w").write(text)
print(text)
EOF
