#!/usr/bin/env bash
# A local chain to run Athena against (config/examples/local-anvil.toml):
#   scripts/devnet.sh start [RUN_DIR]  installs anvil and the contract artifacts (npm, once), starts
#                                      anvil on 127.0.0.1:${ANVIL_PORT:-8545}, deploys the tokens,
#                                      the UniswapV2 factory, router and six pairs, Aerodrome's
#                                      pool factory, two pools and router
#                                      (RUN_DIR/deployment.json), and starts a trader that swaps
#                                      every ${DEVNET_TRADE_EVERY_MS:-2000} ms (RUN_DIR/trader.log;
#                                      DEVNET_TRADER=off starts none)
#   scripts/devnet.sh stop [RUN_DIR]   stops the trader and anvil, which saves the chain in
#                                      RUN_DIR/state.json; the next start resumes it (delete
#                                      RUN_DIR to start afresh)
# RUN_DIR defaults to .devnet in the repository.
set -euo pipefail
cmd=${1:?usage: $0 start|stop [RUN_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
run=${2:-$root/.devnet}
mkdir -p "$run"

case "$cmd" in
start)
  if [ -f "$run/anvil.pid" ] && kill -0 "$(cat "$run/anvil.pid")" 2>/dev/null; then
    echo "devnet: already running (anvil pid $(cat "$run/anvil.pid")); scripts/devnet.sh stop first" >&2
    exit 1
  fi
  # The chain lives in RUN_DIR/state.json (written by anvil when it stops): a second start
  # resumes it, with the same contracts at the same addresses, instead of deploying again.
  state="$run/state.json"
  fresh=yes
  [ -f "$state" ] && [ -f "$run/deployment.json" ] && fresh=no
  ANVIL_PORT=${ANVIL_PORT:-8545} ANVIL_ARGS="--state $state ${ANVIL_ARGS:-}" \
    "$root/scripts/anvil.sh" start "$run"
  rpc="http://$(cat "$run/anvil.addr")"
  if [ "$fresh" = yes ]; then
    node "$root/chain/devnet.mjs" deploy --rpc "$rpc" --out "$run/deployment.json"
  else
    echo "devnet: resumed the chain saved in $state" >&2
  fi
  if [ "${DEVNET_TRADER:-on}" = off ]; then
    echo "devnet: anvil on $rpc, pools in $run/deployment.json, no trader (DEVNET_TRADER=off)" >&2
    exit 0
  fi
  node "$root/chain/devnet.mjs" trade --rpc "$rpc" --deployment "$run/deployment.json" \
    --every "${DEVNET_TRADE_EVERY_MS:-2000}" --seed "${DEVNET_SEED:-1}" >"$run/trader.log" 2>&1 &
  echo $! >"$run/trader.pid"
  echo "devnet: anvil on $rpc, pools in $run/deployment.json, trader pid $(cat "$run/trader.pid")" >&2
  ;;
stop)
  if [ -f "$run/trader.pid" ]; then
    kill "$(cat "$run/trader.pid")" 2>/dev/null || true
    rm -f "$run/trader.pid"
  fi
  "$root/scripts/anvil.sh" stop "$run"
  echo "devnet: stopped; the chain is saved in $run/state.json" >&2
  ;;
*)
  echo "usage: $0 start|stop [RUN_DIR]" >&2
  exit 2
  ;;
esac
