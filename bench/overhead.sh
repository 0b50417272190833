#!/usr/bin/env bash
# Reproduce bench/RESULTS.md: nginx fake upstream, Ringside headless on SQLite with full
# metering (a budgeted customer, an app key), wrk at 1/8/32 connections, direct vs Ringside.
# Needs: nginx, wrk (Debian: apt-get install nginx-light wrk) and the project installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DURATION=${BENCH_DURATION:-10s}
PY=${PYTHON:-python}
work=$(mktemp -d)
mkdir -p "$work/nginx/tmp"
cp "$here/nginx.conf" "$work/nginx/"
cleanup() { kill "${NGINX_PID:-}" "${RS_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & NGINX_PID=$!
export RINGSIDE_ADMIN_KEY=bench-admin-key-0123456789
$PY -m gateway serve --port 18787 --data-dir "$work/data" --config "$here/ringside.toml" \
    >"$work/ringside.log" 2>&1 & RS_PID=$!
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:18787/healthz >/dev/null 2>&1 && \
  curl -fs -o /dev/null http://127.0.0.1:18080/v1/chat/completions -X POST -d '{}' && break
  sleep 0.1
done
ADMIN="Authorization: Bearer $RINGSIDE_ADMIN_KEY"
curl -fs -X POST http://127.0.0.1:18787/v1/customers -H "$ADMIN" \
  -d '{"external_id":"bench-customer","name":"Bench","monthly_budget_usd":1000000}' >/dev/null
export BENCH_KEY=$(curl -fs -X POST http://127.0.0.1:18787/v1/keys -H "$ADMIN" \
  -d '{"name":"bench"}' | $PY -c 'import json,sys; print(json.load(sys.stdin)["key"])')
export BENCH_CUSTOMER=bench-customer

# Warm up both paths (connection pools, caches, SQLite pages) before measuring.
wrk -t1 -c8 -d3s -s "$here/post.lua" http://127.0.0.1:18787/v1/chat/completions >/dev/null
BENCH_BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}]}' \
  wrk -t1 -c8 -d1s -s "$here/post.lua" http://127.0.0.1:18080/v1/chat/completions >/dev/null

run() {  # target url, connections -> "p50 p99 rps errors"
  out=$(wrk -t1 -c"$2" -d"$DURATION" --latency -s "$here/post.lua" "$1")
  $PY "$here/parse_wrk.py" <<<"$out" || { echo "$out" >&2; exit 1; }
}
echo "| connections | direct p50 | direct p99 | direct req/s | ringside p50 | ringside p99 | ringside req/s | errors | added p50 | added p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for c in 1 8 32; do
  read -r dp50 dp99 drps derr <<<"$(BENCH_BODY='{"model":"bench","messages":[{"role":"user","content":"Say hello"}],"max_tokens":64}' run http://127.0.0.1:18080/v1/chat/completions "$c")"
  read -r rp50 rp99 rrps rerr <<<"$(run http://127.0.0.1:18787/v1/chat/completions "$c")"
  added50=$($PY -c "print(round($rp50-$dp50,3))"); added99=$($PY -c "print(round($rp99-$dp99,3))")
  echo "| $c | ${dp50} ms | ${dp99} ms | $drps | ${rp50} ms | ${rp99} ms | $rrps | $rerr | ${added50} ms | ${added99} ms |"
done
echo
echo "Stream first byte (sequential, one connection):"
$PY "$here/ttfb.py" http://127.0.0.1:18787 http://127.0.0.1:18080 "$BENCH_KEY" "$BENCH_CUSTOMER"
echo
echo "Metered requests in the ledger:"
curl -fs "http://127.0.0.1:18787/v1/usage?customer_id=bench-customer" -H "$ADMIN" | \
  $PY -c 'import json,sys; u=json.load(sys.stdin); print(u["requests"], "requests,", u["total_cost_usd"], "USD cost")'
