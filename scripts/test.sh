#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, format check, lints, every test.
#
#   scripts/test.sh
#
# Builds into $CARGO_TARGET_DIR. Unset, that is the clone's own target/ when the quick start
# (`cargo run -- run`, the same dev profile) already built there, so its build is reused;
# otherwise ~/.cache/assay-target, so a warm cache is reused across clones.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d target/debug/deps ]; then
        CARGO_TARGET_DIR="$PWD/target"
    else
        CARGO_TARGET_DIR="$HOME/.cache/assay-target"
    fi
fi
export CARGO_TARGET_DIR
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "[test] cargo fmt --check"
cargo fmt --all --check

echo "[test] cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "[test] tests"
if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests; run them first so the suite's summary closes the log
    cargo test --workspace --doc --locked
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
