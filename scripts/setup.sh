#!/usr/bin/env bash
# Installs what Assay's tests need on a fresh Debian machine. Idempotent: each step checks
# first and does nothing when the tool is already there.
#
# Needs: a Rust toolchain (rustup) already installed; root or sudo for apt.
set -euo pipefail

say() { printf '[setup] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_packages=()
command -v cc >/dev/null 2>&1 || apt_packages+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || apt_packages+=(pkg-config)
command -v python3 >/dev/null 2>&1 || apt_packages+=(python3)
python3 -m pip --version >/dev/null 2>&1 || apt_packages+=(python3-pip)
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
# PostgreSQL and MariaDB: the test kit starts throwaway servers (initdb/postgres,
# mariadb-install-db/mariadbd) on free ports, never the system ones.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || apt_packages+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_packages+=(mariadb-server)
# promtool (Debian package prometheus) checks the real /metrics output in the telemetry
# test; its server is not needed, nor started by the tests.
if ! command -v promtool >/dev/null 2>&1; then
    say "apt: prometheus (for promtool)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends prometheus
    # Only the tool is wanted: the package's own server does not stay running.
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi
# Nginx for deploy/local.sh and the replica tests, which start their own on free ports; the
# package's own server on port 80 is not wanted.
nginx_missing=0
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || nginx_missing=1
if [ "$nginx_missing" = 1 ]; then
    say "apt: nginx-light"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nginx-light \
        || $SUDO apt-get install -y -qq --no-install-recommends nginx
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
    [ -f /run/nginx.pid ] && $SUDO nginx -s quit >/dev/null 2>&1 || true
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
    say "apt: ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${apt_packages[@]}"
fi

# Python: the independent Delta reader, the ADBC Flight SQL driver, the S3 server (moto) and
# the Azure SDK the test kit creates Azurite containers with.
py_packages=(deltalake pyarrow adbc-driver-flightsql adbc-driver-manager "moto[server]" azure-storage-blob)
if ! python3 -c 'import deltalake, pyarrow, adbc_driver_flightsql, adbc_driver_manager, moto.server, azure.storage.blob' >/dev/null 2>&1 \
    || ! command -v moto_server >/dev/null 2>&1; then
    say "pip: ${py_packages[*]}"
    python3 -m pip install --quiet "${py_packages[@]}" \
        || python3 -m pip install --quiet --break-system-packages "${py_packages[@]}"
fi

# Unity Catalog clients: DuckDB 1.5.5 with its unity_catalog, delta and httpfs extensions
# from PyPI (the tests load them by path; nothing is downloaded at test time).
uc_packages=(duckdb==1.5.5 duckdb-extension-unity-catalog==1.5.5 duckdb-extension-delta==1.5.5 duckdb-extension-httpfs==1.5.5)
if ! python3 -c 'import duckdb, duckdb_extension_unity_catalog, duckdb_extension_delta, duckdb_extension_httpfs; assert duckdb.__version__ == "1.5.5"' >/dev/null 2>&1; then
    say "pip: ${uc_packages[*]}"
    python3 -m pip install --quiet "${uc_packages[@]}" \
        || python3 -m pip install --quiet --break-system-packages "${uc_packages[@]}"
fi
# The official unitycatalog-client SDK in a virtualenv of its own: it pins pydantic and
# aiohttp below what moto needs.
uc_venv="${ASSAY_UC_VENV:-$HOME/.cache/assay-uc-venv}"
if ! "$uc_venv/bin/python" -c 'import unitycatalog.client' >/dev/null 2>&1; then
    say "venv: unitycatalog-client==0.7.0 ($uc_venv)"
    python3 -m venv "$uc_venv" 2>/dev/null || {
        $SUDO apt-get install -y -qq python3-venv
        python3 -m venv "$uc_venv"
    }
    "$uc_venv/bin/python" -m pip install --quiet "unitycatalog-client==0.7.0"
fi

# Azurite: Microsoft's Azure Storage emulator, from npm.
if ! command -v azurite-blob >/dev/null 2>&1; then
    say "npm: azurite"
    $SUDO npm install --global --silent azurite
fi

# The web console's browser test: Debian's Chromium, driven by playwright-core (pinned in
# tests/browser/package-lock.json; no browser download).
if ! command -v chromium >/dev/null 2>&1; then
    say "apt: chromium"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
# The console's pinned third-party files (console/package-lock.json), against which the
# suite checks the copies committed in console/vendor/.
console_dir="$(cd "$(dirname "$0")/../console" && pwd)"
if [ ! -f "$console_dir/node_modules/chart.js/package.json" ]; then
    say "npm: the console's pinned packages (console/)"
    (cd "$console_dir" && npm ci --silent --no-audit --no-fund)
fi
browser_tests="$(cd "$(dirname "$0")/../tests/browser" && pwd)"
if [ ! -d "$browser_tests/node_modules/playwright-core" ]; then
    say "npm: playwright-core (tests/browser)"
    (cd "$browser_tests" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
fi

# cargo-nextest runs the suite (the test script falls back to `cargo test` without it).
if ! cargo nextest --version >/dev/null 2>&1; then
    say "cargo-nextest not found; installing (a few minutes)"
    cargo install --locked cargo-nextest || say "cargo-nextest install failed; using cargo test"
fi

say "ok"
