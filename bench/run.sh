#!/usr/bin/env bash
# One command for every figure of the performance issue, in ONE sitting (numbers move between
# runs and machines: compare only rows measured together).
#
#   bash bench/run.sh [OUTDIR]            (default /tmp/ringside-bench/sitting-<UTC time>)
#
# 1. peers      ../shared/peers-bench/anchors/run_anchors.sh: direct, MLflow AI Gateway (1 worker),
#               Portkey (lockfile deps), Ringside headless and with the dashboard open, direct
#               again; wrk at 1 and 32 connections, JSON and SSE; CPU and RSS of each gateway.
# 2. streams    ../shared/peers-bench/streams.py: 1,000 concurrent 5 s streams through Ringside,
#               MLflow and Portkey, and 2,000 through Ringside (completed, TTFB, duration, RSS).
# 3. workers    Ringside `serve --workers 1` and `--workers 2` at 32 connections (wrk on the
#               same cores).
# 4. big ledger bench/big_ledger.py: /v1/usage and the dashboard's reads over 10M log rows.
# 5. report     bench/report.py: the tables of bench/RESULTS.md, with ratios to the peers and
#               CPU ms per metered call (process CPU time / calls).
#
# Needs (Debian, root): apt-get install -y nginx-light wrk curl tmux; the peers install
# themselves outside the repo on first use (/tmp/anchors). PHASES picks phases
# (default "peers streams workers bigledger report"); BIG_ROWS sizes the big ledger.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PEERS="${PEERS_BENCH:-$REPO/../shared/peers-bench}"
OUTDIR="${1:-/tmp/ringside-bench/sitting-$(date -u +%Y%m%dT%H%M%SZ)}"
PHASES="${PHASES:-peers streams workers bigledger report}"
PY="${PYTHON:-python3}"
mkdir -p "$OUTDIR"
export RINGSIDE_MAIN="$REPO"
echo "sitting in $OUTDIR (phases: $PHASES)"

has() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

install_peers() {
    [ -x /tmp/anchors/mlflow-venv/bin/python ] || "$PEERS/anchors/mlflow-gateway.sh" install
    [ -d /tmp/anchors/portkey-lock ] || PORTKEY_DEPS=lock PORTKEY_DIR=/tmp/anchors/portkey-lock \
        "$PEERS/anchors/portkey.sh" install
    "$PEERS/anchors/ringside.sh" install   # what this checkout holds, not editable
}

if has peers || has streams || has workers; then install_peers; fi

# ------------------------------------------------------------------ 1. peers
if has peers; then
    STAGES="direct mlflow1 portkey-lock ringside ringside-dash direct-end" \
        LAT_CONNS="${LAT_CONNS:-1}" TPUT_CONNS="${TPUT_CONNS:-32}" \
        "$PEERS/anchors/run_anchors.sh" "$OUTDIR/peers"
fi

# ------------------------------------------------------------------ 2. streams
if has streams; then
    # The drip upstream takes :18081 (the SSE endpoint every target is configured with).
    "$PEERS/upstream.sh" stop >/dev/null 2>&1 || true
    "$PY" "$PEERS/streams.py" upstream --port 18081 >"$OUTDIR/drip.log" 2>&1 & DRIP=$!
    trap 'kill $DRIP 2>/dev/null || true' EXIT
    sleep 1
    streams() {  # label url n model pid headers...
        local label=$1 url=$2 n=$3 model=$4 pid=$5; shift 5
        local hdrs=(); for h in "$@"; do hdrs+=(--header "$h"); done
        "$PY" "$PEERS/streams.py" load "$url" --n "$n" --ramp 2 --model "$model" --pid "$pid" \
            --label "$label" "${hdrs[@]}" | tee -a "$OUTDIR/streams.jsonl"
    }
    "$PEERS/anchors/ringside.sh" start serve >/dev/null
    mapfile -t RS < <("$PEERS/anchors/ringside.sh" headers)
    pid=$("$PEERS/anchors/ringside.sh" pid)
    streams ringside-1000 http://127.0.0.1:8790/v1/chat/completions 1000 fc:benchsse/gpt-4o-mini "$pid" "${RS[@]}"
    streams ringside-2000 http://127.0.0.1:8790/v1/chat/completions 2000 fc:benchsse/gpt-4o-mini "$pid" "${RS[@]}"
    echo "ringside ledger after the streams: $("$PEERS/anchors/ringside.sh" usage | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["requests"], "requests metered")')" \
        | tee -a "$OUTDIR/streams.log"
    "$PEERS/anchors/ringside.sh" stop >/dev/null
    "$PEERS/anchors/mlflow-gateway.sh" start 1 >/dev/null
    streams mlflow-1000 http://127.0.0.1:5055/v1/chat/completions 1000 gpt-4o-mini-stream \
        "$("$PEERS/anchors/mlflow-gateway.sh" pid)"
    "$PEERS/anchors/mlflow-gateway.sh" stop >/dev/null
    PORTKEY_DIR=/tmp/anchors/portkey-lock "$PEERS/anchors/portkey.sh" start >/dev/null
    streams portkey-1000 http://127.0.0.1:8787/v1/chat/completions 1000 gpt-4o-mini \
        "$(PORTKEY_DIR=/tmp/anchors/portkey-lock "$PEERS/anchors/portkey.sh" pid)" \
        'x-portkey-provider: openai' 'x-portkey-custom-host: http://127.0.0.1:18081/v1' \
        'Authorization: Bearer sk-fake'
    PORTKEY_DIR=/tmp/anchors/portkey-lock "$PEERS/anchors/portkey.sh" stop >/dev/null
    kill $DRIP 2>/dev/null || true; trap - EXIT
fi

# ------------------------------------------------------------------ 3. workers
if has workers; then
    "$PEERS/upstream.sh" start >/dev/null
    for w in 1 2 1 2; do
        RINGSIDE_WORKERS=$w "$HERE/workers.sh" "$OUTDIR/workers.jsonl" "$PEERS"
    done
fi

# ------------------------------------------------------------------ 4. big ledger
if has bigledger; then
    db="$OUTDIR/big.db"
    "$PY" "$HERE/big_ledger.py" --database-url "sqlite:///$db" --rows "${BIG_ROWS:-10000000}" \
        | tee "$OUTDIR/bigledger.txt"
    "$PY" "$HERE/big_ledger_query.py" --database-url "sqlite:///$db" | tee -a "$OUTDIR/bigledger.txt"
    rm -f "$db"*
fi

# ------------------------------------------------------------------ 5. report
if has report; then
    "$PY" "$HERE/report.py" "$OUTDIR" | tee "$OUTDIR/report.md"
fi
