#!/usr/bin/env bash
# The test command of the README: every test of the workspace.
# Later issues add the local servers (Firestore emulator, fake-gcs-server, anvil) here: this
# script starts each one it needs, fails loudly when one cannot start, and stops them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/athena-target}"
exec cargo test --workspace --locked "$@"
