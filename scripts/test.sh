#!/usr/bin/env bash
# The test command of the README: every test of the workspace, with the local servers the tests
# use started first (today the Firestore emulator) and stopped by PID at the end. A server that
# cannot start fails the run with its reason: no test is silently skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/athena-target}"
run=$(mktemp -d "${TMPDIR:-/tmp}/athena-test.XXXXXX")
trap 'scripts/firestore-emulator.sh stop "$run"; rm -rf "$run"' EXIT
scripts/firestore-emulator.sh start "$run" || { echo "test.sh: retrying the emulator start once" >&2; scripts/firestore-emulator.sh start "$run"; }
export FIRESTORE_EMULATOR_HOST
FIRESTORE_EMULATOR_HOST=$(cat "$run/firestore.addr")
cargo test --workspace --locked "$@"
