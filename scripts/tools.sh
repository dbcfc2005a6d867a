#!/usr/bin/env bash
# Installs (once) the tools the tests drive besides the servers: Prometheus and promtool
# (Debian package `prometheus`; a scrape of the running agent and `promtool check metrics`)
# and schemathesis (PyPI, pinned, in a virtualenv under ${ATHENA_TOOLS_DIR:-~/.cache/athena-tools};
# fuzzes the API from its OpenAPI document), Debian's chromium and playwright-core (npm, pinned
# by web/package-lock.json; the dashboard's browser test), and checks that the vendored uPlot in
# web/vendor is the copy npm installs. Prints the `export` lines for scripts/test.sh:
#   eval "$(scripts/tools.sh)"
set -euo pipefail
tools=${ATHENA_TOOLS_DIR:-$HOME/.cache/athena-tools}
schemathesis_version=4.32.5
venv=$tools/schemathesis-$schemathesis_version

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "tools: installing Prometheus (Debian package prometheus)" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >&2 \
    || { $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >&2; } \
    || { echo "tools: apt-get could not install prometheus" >&2; exit 1; }
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "tools: installing chromium (Debian package; the dashboard's browser test)" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2 \
    || { $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2; } \
    || { echo "tools: apt-get could not install chromium" >&2; exit 1; }
fi

web=$(cd "$(dirname "$0")/../web" && pwd)
"$(dirname "$0")/npm-ci.sh" "$web" "playwright-core, uplot; no browser download"
for f in uPlot.iife.min.js uPlot.min.css; do
  cmp -s "$web/vendor/$f" "$web/node_modules/uplot/dist/$f" \
    || { echo "tools: web/vendor/$f differs from the uplot package in web/package-lock.json: run scripts/vendor-web.sh" >&2; exit 1; }
done

if [ ! -x "$venv/bin/st" ]; then
  echo "tools: installing schemathesis $schemathesis_version from PyPI into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version" >&2 \
    || { echo "tools: pip could not install schemathesis (is PyPI reachable?)" >&2; exit 1; }
fi
echo "export SCHEMATHESIS_BIN=$venv/bin/st"
