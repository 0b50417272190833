#!/usr/bin/env bash
# Ringside headless with $RINGSIDE_WORKERS worker processes (full metering on SQLite), loaded
# by the shared harness's load.sh at 32 connections; appends its JSON line to OUT ($1).
#   RINGSIDE_WORKERS=2 bench/workers.sh OUT.jsonl PEERS_BENCH_DIR
set -euo pipefail
OUT="$1"; PEERS="$2"; W="${RINGSIDE_WORKERS:-1}"
VENV="${RINGSIDE_VENV:-/tmp/anchors/ringside-venv}"
WORK=$(mktemp -d); PORT=8792; KEY=bench-admin-key-0123456789abcdef
cat > "$WORK/ringside.toml" <<'TOML'
[providers.bench]
base_url = "http://127.0.0.1:18080/v1"
timeout_s = 30

[prices."bench/gpt-4o-mini"]
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60

[server]
log_level = "warning"
TOML
RINGSIDE_ADMIN_KEY=$KEY "$VENV/bin/ringside" serve --port $PORT --workers "$W" \
    --data-dir "$WORK/data" --config "$WORK/ringside.toml" >"$WORK/log" 2>&1 & PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 150); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
A="Authorization: Bearer $KEY"
curl -fs -X POST "http://127.0.0.1:$PORT/v1/customers" -H "$A" -H 'Content-Type: application/json' \
    -d '{"external_id":"cus_123","name":"Bench","monthly_budget_usd":1000000}' >/dev/null
APP=$(curl -fs -X POST "http://127.0.0.1:$PORT/v1/keys" -H "$A" -d '{"name":"bench"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
PIDS="$PID $(pgrep -P $PID | tr "\n" " " || true)"
OUT="$OUT" LABEL="ringside-${W}w" MODEL=fc:bench/gpt-4o-mini PIDS="$PIDS" LAT_CONNS="" TPUT_CONNS=32 \
    "$PEERS/load.sh" "http://127.0.0.1:$PORT/v1/chat/completions" "Authorization: Bearer $APP" \
    'FC-Customer: cus_123'
echo "   ringside-${W}w ledger: $(curl -fs "http://127.0.0.1:$PORT/v1/usage?customer_id=cus_123" -H "$A" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"], "requests metered")')"
