#!/usr/bin/env bash
# What rate limits add per call: the same metered call (a budgeted customer, an app key,
# SQLite, the nginx upstream) for a customer without rate limits and for one with all
# three (requests and tokens per minute, calls in flight; set high enough that nothing is
# refused, so every call is admitted, counted, and its slot released). Runs alternate
# A/B/A/B in one sitting; a third pair adds the app key's own limits on top.
# Needs: nginx, wrk (Debian: apt-get install nginx-light wrk) and the project installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-3}
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
BIG='{"requests_per_minute":1000000000,"tokens_per_minute":1000000000000,"max_concurrent":1000000}'
curl -fs -X POST http://127.0.0.1:18787/v1/customers -H "$ADMIN" \
  -d '{"external_id":"bench-off","name":"No limits","monthly_budget_usd":1000000}' >/dev/null
curl -fs -X POST http://127.0.0.1:18787/v1/customers -H "$ADMIN" \
  -d "{\"external_id\":\"bench-on\",\"name\":\"Limits\",\"monthly_budget_usd\":1000000,\"limits\":$BIG}" >/dev/null
key() { curl -fs -X POST http://127.0.0.1:18787/v1/keys -H "$ADMIN" -d "$1" | \
  $PY -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }
PLAIN_KEY=$(key '{"name":"bench"}')
LIMITED_KEY=$(key "{\"name\":\"bench-limited\",\"limits\":$BIG}")

run() {  # customer, key -> "p50 p99 rps errors"
  out=$(BENCH_CUSTOMER=$1 BENCH_KEY=$2 wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
    -s "$here/post.lua" http://127.0.0.1:18787/v1/chat/completions)
  $PY "$here/parse_wrk.py" <<<"$out" || { echo "$out" >&2; exit 1; }
}
BENCH_CUSTOMER=bench-off BENCH_KEY=$PLAIN_KEY wrk -t1 -c8 -d3s -s "$here/post.lua" \
  http://127.0.0.1:18787/v1/chat/completions >/dev/null
BENCH_CUSTOMER=bench-on BENCH_KEY=$LIMITED_KEY wrk -t1 -c8 -d3s -s "$here/post.lua" \
  http://127.0.0.1:18787/v1/chat/completions >/dev/null

echo "| round | limits | p50 | p99 | req/s | non-2xx |"
echo "|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  read -r p50 p99 rps err <<<"$(run bench-off "$PLAIN_KEY")"
  echo "| $r | off (budget only) | ${p50} ms | ${p99} ms | $rps | $err |"
  read -r p50 p99 rps err <<<"$(run bench-on "$PLAIN_KEY")"
  echo "| $r | customer's three limits | ${p50} ms | ${p99} ms | $rps | $err |"
  read -r p50 p99 rps err <<<"$(run bench-on "$LIMITED_KEY")"
  echo "| $r | customer's and key's | ${p50} ms | ${p99} ms | $rps | $err |"
done
echo
echo "Admitted and refused, per customer (none may be refused):"
for c in bench-off bench-on; do
  curl -fs "http://127.0.0.1:18787/v1/requests?customer_id=$c&status=refused&limit=1" -H "$ADMIN" | \
    $PY -c "import json,sys; d=json.load(sys.stdin)['data']; print('$c refused:', len(d))"
done
