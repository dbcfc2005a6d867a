#!/usr/bin/env bash
# Starts or stops Google's Firestore emulator for the tests, on 127.0.0.1.
#   scripts/firestore-emulator.sh start RUN_DIR   -> writes RUN_DIR/firestore.pid and RUN_DIR/firestore.addr
#   scripts/firestore-emulator.sh stop RUN_DIR
# FIRESTORE_EMULATOR_PORT picks the port (a test that starts the emulator after the agent);
# otherwise a free one is taken.
# The emulator is Debian's google-cloud-cli-firestore-emulator (Java 17), preinstalled on these
# machines; java runs the jar directly so that the PID we keep is the emulator's own.
set -euo pipefail
JAR=${FIRESTORE_EMULATOR_JAR:-/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar}
cmd=${1:?usage: $0 start|stop RUN_DIR}
run=${2:?usage: $0 start|stop RUN_DIR}
mkdir -p "$run"

case "$cmd" in
start)
  if ! command -v java >/dev/null; then
    echo "firestore-emulator: java is not installed (the emulator needs Java 17: apt-get install openjdk-17-jre-headless)" >&2
    exit 1
  fi
  if [ ! -f "$JAR" ]; then
    echo "firestore-emulator: $JAR not found (install the Debian package google-cloud-cli-firestore-emulator)" >&2
    exit 1
  fi
  port=${FIRESTORE_EMULATOR_PORT:-}
  [ -n "$port" ] || port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  java -cp "$JAR" com.google.cloud.datastore.emulator.firestore.CloudFirestore \
    start --host=127.0.0.1 --port="$port" >"$run/firestore.log" 2>&1 &
  echo $! >"$run/firestore.pid"
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1; then
      echo "127.0.0.1:$port" >"$run/firestore.addr"
      echo "firestore-emulator: ready on 127.0.0.1:$port (pid $(cat "$run/firestore.pid"))" >&2
      exit 0
    fi
    if ! kill -0 "$(cat "$run/firestore.pid")" 2>/dev/null; then
      echo "firestore-emulator: exited during start-up; its log:" >&2
      tail -20 "$run/firestore.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "firestore-emulator: not ready after 60 s; its log:" >&2
  tail -20 "$run/firestore.log" >&2
  kill "$(cat "$run/firestore.pid")" 2>/dev/null || true
  exit 1
  ;;
stop)
  if [ -f "$run/firestore.pid" ]; then
    kill "$(cat "$run/firestore.pid")" 2>/dev/null || true
    rm -f "$run/firestore.pid" "$run/firestore.addr"
  fi
  ;;
*)
  echo "usage: $0 start|stop RUN_DIR" >&2
  exit 2
  ;;
esac
