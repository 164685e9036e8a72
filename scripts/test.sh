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

# The PostgreSQL store's tests, and the app's pass on PostgreSQL below, need a server on
# 127.0.0.1:5432 (database `test`, see docs/postgres.md): start the machine's cluster if
# it is installed but not running.
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  echo "starting PostgreSQL..." >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi

# Benchmarks are not run here (their figures live in BENCHMARKS.md), but they must
# still compile, or the next person to measure finds them broken.
cargo check --workspace --benches --quiet

scripts/install-browser.sh
# Both passes run even if the first fails, so one run shows every failure; the script
# fails if either did.
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?

# The app's integration suite again, on the PostgreSQL store (a schema per test in the
# database above): every behaviour the first pass checked on SQLite must hold there too.
# Left out, as they would add nothing PostgreSQL-specific, only their seconds: the
# `rules_cli` tests, which open no store, the browser test, whose console reads and
# replays through the same store calls the `ui` tests make on both backends, and the
# `instances` tests, which run several servers on PostgreSQL in either pass. With a
# filter in "$@" that matches no test of this binary, this pass only warns.
FOLLOWTHROUGH_TEST_STORE=postgres cargo nextest run -p followthrough --test it \
  --no-fail-fast --no-tests=warn \
  -E 'not (test(/^rules_cli::/) | test(/^ui_browser::/) | test(/^instances::/))' "$@" || status=$?

exit "$status"
