#!/usr/bin/env bash
# The recovery benchmarks (benches/recovery.rs) against the real servers: starts the Firestore
# emulator and the GCS server in a temporary run directory, runs the bench, stops them by PID.
# Arguments name the sections to run (first_tick, checkpoint, restore_gcs; default all).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/athena-target}"
run=$(mktemp -d "${TMPDIR:-/tmp}/athena-bench.XXXXXX")
trap 'scripts/firestore-emulator.sh stop "$run"; scripts/fake-gcs.sh stop "$run"; rm -rf "$run"' EXIT
scripts/firestore-emulator.sh start "$run"
scripts/fake-gcs.sh start "$run"
export FIRESTORE_EMULATOR_HOST GOOGLE_SERVICE_ACCOUNT GCS_TEST_BUCKET=athena-test
FIRESTORE_EMULATOR_HOST=$(cat "$run/firestore.addr")
GOOGLE_SERVICE_ACCOUNT="$run/gcs-service-account.json"
cargo bench --locked --bench recovery -- "$@"
