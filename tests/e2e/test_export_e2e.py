"""A large CSV export against a real `ringside serve`, with the server's memory watched.

Hundreds of thousands of request-log rows are written straight into the server's SQLite
file; `/v1/requests` with `Accept: text/csv` is then read as a stream while the server's
resident memory (VmRSS) is sampled. The export reads the log a page at a time, so the
server's memory must stay flat while a CSV several times larger than the bound goes by.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.services.usage import REQUEST_COLUMNS
from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

ROWS = 300_000
# The server's growth while it exports. The CSV is more than 1.5x this, so an export
# that buffered its rows (or its text) would blow through it; what may grow is SQLite's
# page cache (16 MB per reader connection, two readers) and the allocator's slack.
BOUND_MB = 50
# Long model names (a model may have 255 characters) make each row ~330 bytes.
MODELS = ("mock-fast-" + "x" * 140, "mock-smart-" + "y" * 140)
START_MS = 1_774_828_800_000  # 2026-03-30


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fill_request_log(db: Path, n: int) -> None:
    """`n` logged requests, written as the settlement writes them (one executemany)."""
    rows = (
        (
            f"req_{i:011d}bulk{i % 97:02d}",
            f"cus_bulk{i % 50}",
            "mock",
            MODELS[i % 2],
            "chat",
            i % 3 == 0,
            ("ok", "ok", "ok", "error", "cut")[i % 5],
            200,
            "upstream_error" if i % 5 == 3 else None,
            100 + i % 1000,
            i % 7,
            0,
            200 + i % 500,
            0,
            1_234_567 + i,
            2_098_763 + i,
            3_000_000,
            False,
            i % 900,
            START_MS + i * 1_000,
        )
        for i in range(n)
    )
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO request_log (id, customer_id, provider, model, endpoint, stream, "
            "status, http_status, error_code, input_tokens, cached_tokens, cache_write_tokens, "
            "output_tokens, reasoning_tokens, cost_nanos, price_nanos, held_nanos, over_hold, "
            "latency_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?)",
            rows,
        )
    conn.close()


def test_a_large_csv_export_streams_in_constant_memory(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    server = ringside_server()
    assert server.proc is not None
    fill_request_log(server.data_dir / "ringside.db", ROWS)
    headers = server.headers(Accept="text/csv")
    url = f"{server.base_url}/v1/requests"

    # Warm up the export path (imports, the database pages' cache) on a narrow filter.
    small = httpx.get(url, params={"customer_id": "nobody"}, headers=headers, timeout=60)
    assert small.status_code == 404  # filters are checked before the first byte
    warm = httpx.get(url, params={"until": "2026-03-30T01:00:00Z"}, headers=headers, timeout=60)
    assert warm.status_code == 200 and len(warm.text.splitlines()) == 1 + 3_600
    baseline = rss_mb(server.proc.pid)

    peak = baseline
    count = 0
    size = 0
    with httpx.stream("GET", url, headers=headers, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert "content-length" not in r.headers
        lines = r.iter_lines()
        header = next(lines)
        assert header == ",".join(REQUEST_COLUMNS)
        previous_id = None
        for line in lines:
            count += 1
            size += len(line) + 1
            if count % 5_000 == 0:
                peak = max(peak, rss_mb(server.proc.pid))
                row = next(csv.reader([line]))
                # Newest first, every row whole.
                assert len(row) == len(REQUEST_COLUMNS)
                assert previous_id is None or row[0] < previous_id
                previous_id = row[0]
    peak = max(peak, rss_mb(server.proc.pid))
    assert count == ROWS
    assert size > 1.5 * BOUND_MB * 1024 * 1024, size  # the bound means something
    assert peak - baseline < BOUND_MB, (baseline, peak)
    assert "Traceback" not in server.log()
