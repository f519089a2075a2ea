#!/bin/bash
# tests/run.sh [--no-lint] [CARGO TEST ARGS...] — THE test command of koji-adjutant.
#
# Prepares everything, then runs the whole suite:
#   1. tests/setup-host.sh         packages, the adjutant-test user, subordinate ids (as root;
#                                  as non-root it only checks)
#   2. make-fixtures.sh --rpmroot  test images and packages -> KOJI_ADJUTANT_FIXTURES
#   3. tests/registry.sh start     local registry with the fixture images -> KOJI_ADJUTANT_TEST_REGISTRY
#                                  (stopped again when this script exits, however it exits)
#   4. shellcheck of the scripts, cargo fmt --check, cargo clippy --all-targets -D warnings,
#      cargo test --workspace
# and prints a summary. Exit status 0 only if every step passed. Steps 1-3 stop the run when
# they fail; of step 4 all always run.
#
# Arguments after the options go to `cargo test` (e.g. `tests/run.sh --no-lint -p adjutant-runtime
# unpack` runs a subset with the full environment). CARGO_TARGET_DIR is honoured.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export PATH="$HOME/.cargo/bin:$PATH"

lint=1
if [ "${1:-}" = --no-lint ]; then lint=0; shift; fi

declare -a summary=()
failed=0
t_start=$SECONDS
say() { printf '\n==> %s\n' "$*" >&2; }
# step NAME CMD...: run, time, record; returns the command's status.
step() {
  local name=$1 t0=$SECONDS rc=0; shift
  say "$name: $*"
  "$@" || rc=$?
  if [ $rc = 0 ]; then summary+=("$(printf '  ok    %-14s %4ds' "$name" $((SECONDS - t0)))")
  else summary+=("$(printf '  FAIL  %-14s %4ds  (exit %d)' "$name" $((SECONDS - t0)) $rc)"); failed=1; fi
  return $rc
}
print_summary() {
  local rc=$?
  if [ -n "${registry_started:-}" ]; then tests/registry.sh stop || true; fi
  {
    printf '\n==> summary (%ds)\n' $((SECONDS - t_start))
    printf '%s\n' "${summary[@]}"
    if [ $failed = 0 ] && [ $rc = 0 ]; then echo "  all steps passed"; else echo "  FAILED"; fi
  } >&2
}
trap print_summary EXIT

if [ "$(id -u)" = 0 ]; then step setup-host tests/setup-host.sh
else step setup-host tests/setup-host.sh --check; fi

fixtures() {
  KOJI_ADJUTANT_FIXTURES=$(tests/fixtures/make-fixtures.sh --rpmroot) || return
  export KOJI_ADJUTANT_FIXTURES
  echo "KOJI_ADJUTANT_FIXTURES=$KOJI_ADJUTANT_FIXTURES" >&2
}
registry() {
  registry_started=1
  local env
  env=$(tests/registry.sh start) || return
  eval "$env"
  export KOJI_ADJUTANT_TEST_REGISTRY
  echo "KOJI_ADJUTANT_TEST_REGISTRY=$KOJI_ADJUTANT_TEST_REGISTRY" >&2
}
step fixtures fixtures
step registry registry

if [ $lint = 1 ]; then
  step shellcheck shellcheck -S warning tests/*.sh tests/fixtures/*.sh scripts/*.sh .ci/run || true
  step fmt cargo fmt --all --check || true
  step clippy cargo clippy --workspace --all-targets --locked -- -D warnings || true
fi
if [ $# = 0 ]; then set -- --workspace; fi
step test cargo test --locked --no-fail-fast "$@" || true
exit $failed
