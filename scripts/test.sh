#!/usr/bin/env bash
# Runs followthrough's whole test suite: the same command for a newcomer and for CI.
# It installs or starts what the tests need first, so a fresh machine with only the
# Rust toolchain can run it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest..." >&2
  cargo install cargo-nextest --locked
fi

# Benchmarks are not run here (their figures live in BENCHMARKS.md), but they must
# still compile, or the next person to measure finds them broken.
cargo check --workspace --benches --quiet

scripts/install-browser.sh
cargo nextest run --workspace --no-fail-fast "$@"
