#!/usr/bin/env bash
# The benchmark smoke CI runs (issue 17 §6): each bench below on a reduced size, a few seconds
# each, failing only on a gross regression measured as a ratio to its baseline in the same run
# (never on an absolute time): the store against SQLite, a deferred-durability backtest
# against a durable commit per tick, the tick's cost per pool at 60 pools against 6.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/athena-target}"
export ATHENA_BENCH_SMOKE=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for bench in store_vs_sqlite backtest many_pools; do
  started=$(date +%s)
  if cargo bench --locked --bench "$bench" -- --noplot >"$out" 2>&1; then
    grep -E "^smoke:" "$out" | sed "s/^/bench-smoke: $bench: /"
    echo "bench-smoke: $bench passed in $(( $(date +%s) - started )) s"
  else
    tail -n 40 "$out" >&2
    echo "bench-smoke: $bench FAILED (a gross regression, or the bench broke)" >&2
    exit 1
  fi
done
echo "bench-smoke: passed"
