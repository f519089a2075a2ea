#!/bin/bash
# registry.sh start|stop|env|status — the local registry koji-adjutant's tests pull from.
#
#   start   start Debian's docker-registry on 127.0.0.1:5000 (plain HTTP, no auth), wait until it
#           answers, push the fixture images, print `export KOJI_ADJUTANT_TEST_REGISTRY=ADDR`.
#           Idempotent: a registry started by this script and still running is reused (the
#           images are pushed again; blobs it has are not uploaded twice).
#   stop    kill it by its pid file and remove its state directory (config, data, log).
#   env     print the export line if the registry is running; fail otherwise.
#   status  exit 0 if it is running and answering.
#
# Images (from make-fixtures.sh; --rpmroot is built if missing) pushed as ADDR/test/NAME:latest:
#   busybox, busybox-uncompressed, multilayer, multilayer-zstd, devnodes, rpmroot;
#   multiarch (skopeo copy --all: an OCI image index); busybox-v2s2 (busybox converted by skopeo to
#   Docker v2 schema 2 media types).
#
# Environment:
#   KOJI_ADJUTANT_REGISTRY_ADDR  listen address (default 127.0.0.1:5000)
#   KOJI_ADJUTANT_REGISTRY_DIR   state directory (default /var/tmp/koji-adjutant-registry-<port>)
#   KOJI_ADJUTANT_FIXTURES       fixtures directory (default: output of make-fixtures.sh --rpmroot)
#   REGISTRY_NO_RPMROOT=1        do not build or push rpmroot (quick manual runs)
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
addr=${KOJI_ADJUTANT_REGISTRY_ADDR:-127.0.0.1:5000}
state=${KOJI_ADJUTANT_REGISTRY_DIR:-/var/tmp/koji-adjutant-registry-${addr##*:}}
pidfile=$state/registry.pid

say() { echo "registry.sh: $*" >&2; }
die() { echo "registry.sh: error: $*" >&2; exit 1; }

running() {  # our registry process is alive
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$(command -v docker-registry)")" ]
}
answering() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$addr/v2/")" = 200 ]; }
print_env() { echo "export KOJI_ADJUTANT_TEST_REGISTRY=$addr"; }

# push LAYOUT NAME [skopeo copy options]: blobs the registry already has are not uploaded again.
push() {
  local layout=$1 name=$2; shift 2
  timeout 300 skopeo copy -q --dest-tls-verify=false "$@" "oci:$layout:latest" "docker://$addr/test/$name:latest" >&2 \
    || die "pushing $layout to $addr/test/$name:latest failed"
}

start() {
  command -v docker-registry >/dev/null || die "docker-registry is missing (run tests/setup-host.sh)"
  if running && answering; then
    say "reusing the registry on $addr (pid $(cat "$pidfile"))"
  else
    if running; then stop; fi
    answering && die "something else already answers on http://$addr/v2/ (set KOJI_ADJUTANT_REGISTRY_ADDR)"
    rm -rf "$state"; mkdir -p "$state/data"
    cat > "$state/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $state/data}, delete: {enabled: true}}
http: {addr: $addr, secret: koji-adjutant-tests}
EOF
    setsid docker-registry serve "$state/config.yml" > "$state/registry.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 100); do
      answering && break
      running || die "docker-registry exited: $(cat "$state/registry.log")"
      sleep 0.1
    done
    answering || { stop; die "docker-registry did not answer on $addr within 10 s"; }
    say "started on $addr (pid $(cat "$pidfile"), state $state)"
  fi

  local fx=${KOJI_ADJUTANT_FIXTURES:-}
  if [ -z "$fx" ]; then
    if [ "${REGISTRY_NO_RPMROOT:-}" = 1 ]; then fx=$("$here/fixtures/make-fixtures.sh")
    else fx=$("$here/fixtures/make-fixtures.sh" --rpmroot); fi
  fi
  local name
  for name in busybox busybox-uncompressed multilayer multilayer-zstd devnodes; do
    push "$fx/oci/$name" "$name" --preserve-digests
  done
  push "$fx/oci/multiarch" multiarch --all --preserve-digests
  push "$fx/oci/busybox" busybox-v2s2 --format v2s2
  if [ "${REGISTRY_NO_RPMROOT:-}" != 1 ]; then
    [ -f "$fx/oci/rpmroot/index.json" ] || die "$fx has no oci/rpmroot (make-fixtures.sh --rpmroot)"
    push "$fx/oci/rpmroot" rpmroot --preserve-digests
  fi
  print_env
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    if running; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
      say "stopped pid $pid"
    fi
  fi
  # Only ever remove a directory this script made (it holds config.yml).
  if [ -d "$state" ] && [ -f "$state/config.yml" ]; then rm -rf "$state"; fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  env) running && answering || die "no registry of ours is running on $addr"; print_env ;;
  status) running && answering ;;
  *) echo "usage: registry.sh start|stop|env|status" >&2; exit 2 ;;
esac
