#!/usr/bin/env bash
# `npm ci --ignore-scripts` in DIR, once per lockfile: the lockfile's sha256 is stamped in
# DIR/node_modules/.installed-lock, and a matching stamp skips the install (no network).
#   scripts/npm-ci.sh DIR WHAT   (WHAT names the packages in the messages)
set -euo pipefail
dir=$(cd "${1:?usage: $0 DIR WHAT}" && pwd)
what=${2:-packages}
lock=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
# Tests start nodes in parallel: one install at a time (a second npm ci would delete the
# node_modules the first is filling), and the later ones find the stamp.
exec 8>"$dir/.npm-ci.lock"
flock 8
if [ "$(cat "$dir/node_modules/.installed-lock" 2>/dev/null)" != "$lock" ]; then
  echo "npm-ci: npm ci in $dir ($what)" >&2
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund >&2) \
    || { echo "npm-ci: npm ci failed in $dir (is the npm registry reachable?)" >&2; exit 1; }
  echo "$lock" >"$dir/node_modules/.installed-lock"
fi
