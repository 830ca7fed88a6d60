#!/usr/bin/env bash
# Copies the console's third-party files from the versions pinned in console/package-lock.json
# into console/vendor/ (committed, so building Assay needs no Node.js). Run after changing a
# version in console/package.json; the test `console::vendored_files_are_the_pinned_ones`
# fails while console/vendor/ differs from the lock file's packages.
set -euo pipefail
cd "$(dirname "$0")/../console"
npm ci --silent --no-audit --no-fund
mkdir -p vendor
cp node_modules/chart.js/dist/chart.umd.min.js vendor/chart.umd.min.js
echo "console/vendor/ updated"
