#!/usr/bin/env python3
"""The performance issue's tables from one sitting of `bench/run.sh`.

    python3 bench/report.py OUTDIR

Reads OUTDIR/peers/results.jsonl (the shared harness's load.sh lines), OUTDIR/streams.jsonl
and OUTDIR/workers.jsonl, and prints Markdown: per target the added p50 at 1 connection,
req/s at 32 (JSON and SSE), CPU ms per call (the gateway's CPU seconds / requests served in
the phase) and peak RSS; Ringside's ratios to each peer against the targets; the streams;
1 -> 2 workers. Standard library only.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

PEERS = {"mlflow-1w": "MLflow AI Gateway (1 worker)", "portkey-lock": "Portkey (lockfile deps)"}
TARGETS = {
    "ringside": "Ringside headless",
    "ringside-dash": "Ringside, dashboard open",
    **PEERS,
}


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip().startswith("{")]


def phase(rows: list[dict[str, Any]], label: str, conns: int) -> dict[str, Any] | None:
    found = [r for r in rows if r["label"] == label and r["conns"] == conns]
    return found[-1] if found else None


def cpu_ms_per_call(r: dict[str, Any] | None) -> float | None:
    if not r or not r.get("proc") or not r.get("requests"):
        return None
    return 1000.0 * float(r["proc"]["cpu_s"]) / float(r["requests"])


def num(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def peers_table(rows: list[dict[str, Any]]) -> list[str]:
    direct = phase(rows, "direct", 1)
    base = direct["lat_ms"]["p50"] if direct else 0.0
    out = [
        "| target | added p50, 1 conn | req/s at 32 | CPU ms/call at 32 | streams req/s at 32"
        " | CPU ms/call, streams | RSS peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, name in TARGETS.items():
        lat, tput = phase(rows, label, 1), phase(rows, label, 32)
        stream = phase(rows, f"{label}-stream", 32)
        if not (lat or tput):
            continue
        added = lat["lat_ms"]["p50"] - base if lat else None
        rss = max(
            (r["proc"]["rss_peak_mb"] for r in (lat, tput, stream) if r and r.get("proc")),
            default=None,
        )
        out.append(
            f"| {name} | {num(added)} ms | {num(tput['rps'] if tput else None, 0)} "
            f"| {num(cpu_ms_per_call(tput))} | {num(stream['rps'] if stream else None, 0)} "
            f"| {num(cpu_ms_per_call(stream))} | {num(rss, 0)} MB |"
        )
    return out


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| measure | Ringside | / MLflow | / Portkey | target |", "|---|---|---|---|---|"]

    def rps(label: str) -> float | None:
        r = phase(rows, label, 32)
        return float(r["rps"]) if r else None

    def p50(label: str) -> float | None:
        r = phase(rows, label, 1)
        return float(r["lat_ms"]["p50"]) if r else None

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or not b else f"{a / b:.2f}x"

    rs, ml, pk = rps("ringside"), rps("mlflow-1w"), rps("portkey-lock")
    out.append(f"| req/s at 32 | {num(rs, 0)} | {ratio(rs, ml)} | {ratio(rs, pk)} | >= 2x both |")
    rs_s, ml_s, pk_s = rps("ringside-stream"), rps("mlflow-1w-stream"), rps("portkey-lock-stream")
    out.append(
        f"| streamed req/s at 32 | {num(rs_s, 0)} | {ratio(rs_s, ml_s)} | {ratio(rs_s, pk_s)} "
        "| >= 2x MLflow |"
    )
    lr, lm, lp = p50("ringside"), p50("mlflow-1w"), p50("portkey-lock")
    out.append(f"| p50 at 1 conn (ms) | {num(lr, 3)} | {num(lm, 3)} | {num(lp, 3)} | below both |")
    dash = rps("ringside-dash")
    out.append(f"| dashboard open / headless | {ratio(dash, rs)} | | | >= 0.90x |")
    return out


def streams_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| target | N | completed | TTFB p50 ms | TTFB p99 ms | duration p50 ms | duration p99 ms"
        " | RSS peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.get('label')} | {r['n']} | {r['completed']} | {r['ttfb_ms_p50']} "
            f"| {r['ttfb_ms_p99']} | {r['duration_ms_p50']} | {r['duration_ms_p99']} "
            f"| {r.get('rss_peak_mb')} |"
        )
    return out


def workers_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| workers | runs (req/s at 32) | median req/s | CPU ms/call |", "|---|---|---|---|"]
    for w in (1, 2):
        runs = [r for r in rows if r["label"] == f"ringside-{w}w"]
        if not runs:
            continue
        rps = [float(r["rps"]) for r in runs]
        cpu = [c for c in (cpu_ms_per_call(r) for r in runs) if c is not None]
        out.append(
            f"| {w} | {', '.join(f'{x:,.0f}' for x in rps)} | {statistics.median(rps):,.0f} "
            f"| {num(statistics.median(cpu) if cpu else None)} |"
        )
    return out


def main() -> None:
    outdir = Path(sys.argv[1])
    peers = lines(outdir / "peers" / "results.jsonl")
    env = outdir / "peers" / "env.txt"
    if env.exists():
        print("```\n" + env.read_text().strip() + "\n```\n")
    if peers:
        print("### Peers, one sitting\n")
        print("\n".join(peers_table(peers)) + "\n")
        print("\n".join(ratios(peers)) + "\n")
    streams = lines(outdir / "streams.jsonl")
    if streams:
        print("### Concurrent 5 s streams\n")
        print("\n".join(streams_table(streams)) + "\n")
    workers = lines(outdir / "workers.jsonl")
    if workers:
        print("### Workers (wrk on the same 2 cores)\n")
        print("\n".join(workers_table(workers)) + "\n")
    big = outdir / "bigledger.txt"
    if big.exists():
        print("### Big ledger\n")
        print(big.read_text())


if __name__ == "__main__":
    main()
