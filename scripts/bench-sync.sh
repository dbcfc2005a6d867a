#!/usr/bin/env bash
# The sync benchmark (benches/sync_drain.rs) against the Firestore emulator: starts the
# emulator in a temporary run directory, runs the bench, stops the emulator by PID.
# Extra arguments go to `cargo bench` (e.g. `-- --noplot`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/athena-target}"
run=$(mktemp -d "${TMPDIR:-/tmp}/athena-bench.XXXXXX")
trap 'scripts/firestore-emulator.sh stop "$run"; rm -rf "$run"' EXIT
scripts/firestore-emulator.sh start "$run"
FIRESTORE_EMULATOR_HOST=$(cat "$run/firestore.addr")
export FIRESTORE_EMULATOR_HOST
cargo bench --locked --bench sync_drain "$@"
