#!/usr/bin/env bash
# Installs what the benchmarks compare Assay with (not needed by the test suite):
# wrk (HTTP load from a second process), redis-benchmark (with redis-server), TPC-H data
# (tpchgen-cli) and the peers: Python deltalake and pyarrow, DuckDB, Polars,
# DataFusion-python, and the PostgreSQL readers of Polars (connectorx) and ADBC. Idempotent.
set -euo pipefail

say() { printf '[bench-setup] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_packages=()
command -v wrk >/dev/null 2>&1 || apt_packages+=(wrk)
command -v redis-benchmark >/dev/null 2>&1 || apt_packages+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    say "apt: ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${apt_packages[@]}"
fi

py_packages=(tpchgen-cli deltalake pyarrow duckdb polars datafusion adbc-driver-flightsql adbc-driver-manager connectorx adbc-driver-postgresql)
if ! python3 -c 'import deltalake, pyarrow, duckdb, polars, datafusion, adbc_driver_flightsql, connectorx, adbc_driver_postgresql' >/dev/null 2>&1 \
    || ! command -v tpchgen-cli >/dev/null 2>&1; then
    say "pip: ${py_packages[*]}"
    python3 -m pip install --quiet "${py_packages[@]}" \
        || python3 -m pip install --quiet --break-system-packages "${py_packages[@]}"
fi
say "ok"
