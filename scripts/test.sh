#!/usr/bin/env bash
# The test command of the README: every test of the workspace, with the local servers the tests
# use started first (the Firestore emulator, fake-gcs-server with its proxy, llama-server with
# SmolLM2: built once, about 4 minutes, scripts/llama-server.sh) and stopped by PID
# at the end, and the tools they drive installed once (Prometheus, promtool, schemathesis:
# scripts/tools.sh). A server that cannot start fails the run with its reason: no test is silently
# skipped. Tests that stop and restart a server (outages) start their own instances with the
# same scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/athena-target}"
run=$(mktemp -d "${TMPDIR:-/tmp}/athena-test.XXXXXX")
trap 'scripts/firestore-emulator.sh stop "$run"; scripts/fake-gcs.sh stop "$run"; scripts/llama-server.sh stop "$run"; rm -rf "$run"' EXIT
eval "$(scripts/tools.sh)"
scripts/firestore-emulator.sh start "$run" || { echo "test.sh: retrying the emulator start once" >&2; scripts/firestore-emulator.sh start "$run"; }
scripts/fake-gcs.sh start "$run"
scripts/llama-server.sh start "$run"
export FIRESTORE_EMULATOR_HOST GOOGLE_SERVICE_ACCOUNT GCS_TEST_BUCKET=athena-test LLM_TEST_ENDPOINT
FIRESTORE_EMULATOR_HOST=$(cat "$run/firestore.addr")
GOOGLE_SERVICE_ACCOUNT="$run/gcs-service-account.json"
LLM_TEST_ENDPOINT=$(cat "$run/llm.addr")
cargo test --workspace --locked "$@"
