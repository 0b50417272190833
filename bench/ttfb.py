"""Time to first byte of a streamed completion, direct to the upstream vs through Ringside.

Sequential requests on one keep-alive connection; prints p50/p99 in ms for each target.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import httpx

N = int(os.environ.get("BENCH_TTFB_N", "400"))


def measure(url: str, headers: dict[str, str], body: dict[str, object]) -> list[float]:
    out = []
    with httpx.Client(timeout=30) as client:
        for i in range(N + 20):
            start = time.perf_counter()
            with client.stream("POST", url, headers=headers, json=body) as resp:
                chunks = resp.iter_raw()
                next(chunks)
                ttfb = time.perf_counter() - start
                for _ in chunks:
                    pass
            if i >= 20:  # warm-up excluded
                out.append(ttfb * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> int:
    gateway, upstream, key, customer = sys.argv[1:5]
    body = {
        "model": "fc:benchsse/bench",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 64,
    }
    direct = measure(f"{upstream}/sse/v1/chat/completions", {}, {**body, "model": "bench"})
    via = measure(
        f"{gateway}/v1/chat/completions",
        {"Authorization": f"Bearer {key}", "FC-Customer": customer},
        body,
    )
    result = {
        "direct_p50_ms": round(statistics.median(direct), 3),
        "direct_p99_ms": round(pct(direct, 0.99), 3),
        "ringside_p50_ms": round(statistics.median(via), 3),
        "ringside_p99_ms": round(pct(via, 0.99), 3),
    }
    result["added_p50_ms"] = round(result["ringside_p50_ms"] - result["direct_p50_ms"], 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
