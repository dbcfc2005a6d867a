#!/usr/bin/env bash
# Copies the dashboard's chart library (uPlot, the version web/package-lock.json pins) from
# web/node_modules into web/vendor, which the binary embeds. Run it after changing the version
# in web/package.json (then `npm install` there); scripts/tools.sh checks the copy on every
# test run.
set -euo pipefail
cd "$(dirname "$0")/../web"
npm ci --ignore-scripts --no-audit --no-fund
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css vendor/
cp node_modules/uplot/LICENSE vendor/uPlot.LICENSE
echo "vendor-web: uplot $(node -p 'require("./node_modules/uplot/package.json").version') copied into web/vendor"
