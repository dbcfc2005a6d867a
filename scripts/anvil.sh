#!/usr/bin/env bash
# Starts or stops anvil, a local EVM node, for the on-chain tests, on 127.0.0.1.
#   scripts/anvil.sh start RUN_DIR   -> writes RUN_DIR/anvil.pid and RUN_DIR/anvil.addr
#   scripts/anvil.sh stop RUN_DIR
# ANVIL_PORT picks the port (a test that restarts the node); otherwise a free one is taken.
# ANVIL_ARGS adds arguments (e.g. "--base-fee 1000000000").
# anvil is the plain binary of the npm package @foundry-rs/anvil-linux-amd64, pinned with the
# contract artifacts by chain/package-lock.json and installed here once per lockfile
# (npm ci --ignore-scripts), so the PID kept is anvil's own.
set -euo pipefail
cmd=${1:?usage: $0 start|stop RUN_DIR}
run=${2:?usage: $0 start|stop RUN_DIR}
chain=$(cd "$(dirname "$0")/../chain" && pwd)
anvil=$chain/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
mkdir -p "$run"

# Aerodrome's Pool and PoolFactory sources, from the npm package sphere-mezo-solidity-files
# (whose dependencies, hardhat among them, the devnet does not need): the tarball alone, checked
# against its sha256, unpacked under node_modules (so a fresh npm ci unpacks it again).
AERODROME_TGZ=sphere-mezo-solidity-files-1.2.0.tgz
AERODROME_SHA256=9b0b839d17c8aecbe69521998152a468b6d4bf724fe5fec9b7668f7010b415e1

install() {
  # Tests start nodes in parallel: one install at a time (unpacking replaces the directory).
  exec 9>"$chain/.install.lock"
  flock 9
  "$(dirname "$0")/npm-ci.sh" "$chain" "anvil, contract artifacts"
  local aero=$chain/node_modules/.aerodrome
  if [ ! -f "$aero/.unpacked" ]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent sphere-mezo-solidity-files@1.2.0 >/dev/null)
    echo "$AERODROME_SHA256  $tmp/$AERODROME_TGZ" | sha256sum -c --quiet
    tar xzf "$tmp/$AERODROME_TGZ" -C "$tmp"
    rm -rf "$aero" && mkdir -p "$aero"
    cp -r "$tmp/package/domains/aerodrome/contracts" "$aero/"
    rm -rf "$tmp"
    touch "$aero/.unpacked"
  fi
  exec 9>&-
}

case "$cmd" in
install)
  install
  ;;
start)
  install
  port=${ANVIL_PORT:-}
  [ -n "$port" ] || port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # shellcheck disable=SC2086
  "$anvil" --host 127.0.0.1 --port "$port" ${ANVIL_ARGS:-} >"$run/anvil.log" 2>&1 &
  echo $! >"$run/anvil.pid"
  for _ in $(seq 1 120); do
    # Ready when this anvil says it listens (not merely when the port answers: another node
    # may hold it) and answers.
    if grep -q "^Listening on 127.0.0.1:$port" "$run/anvil.log" && curl -sf -H 'content-type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' \
        "http://127.0.0.1:$port" >/dev/null 2>&1; then
      echo "127.0.0.1:$port" >"$run/anvil.addr"
      echo "anvil: ready on 127.0.0.1:$port (pid $(cat "$run/anvil.pid"))" >&2
      exit 0
    fi
    if ! kill -0 "$(cat "$run/anvil.pid")" 2>/dev/null; then
      echo "anvil: exited during start-up (port $port in use? set ANVIL_PORT); its log:" >&2
      tail -20 "$run/anvil.log" >&2
      exit 1
    fi
    sleep 0.25
  done
  echo "anvil: not ready after 30 s; its log:" >&2
  tail -20 "$run/anvil.log" >&2
  kill "$(cat "$run/anvil.pid")" 2>/dev/null || true
  exit 1
  ;;
stop)
  # Waits for anvil to exit: with --state it writes the chain to disk on its way out, and a
  # restart on the same port must find the port free.
  if [ -f "$run/anvil.pid" ]; then
    pid=$(cat "$run/anvil.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    rm -f "$run/anvil.pid" "$run/anvil.addr"
  fi
  ;;
*)
  echo "usage: $0 install|start|stop RUN_DIR" >&2
  exit 2
  ;;
esac
