"""Time `/v1/usage`, `/v1/requests` and the dashboard's reads on a big ledger.

    .venv/bin/python bench/big_ledger_query.py --database-url sqlite:////tmp/ringside-big/ringside.db
    .venv/bin/python bench/big_ledger_query.py --database-url postgresql://postgres@127.0.0.1/ringside_big

Run it on a database made by `bench/big_ledger.py`. It writes nothing to the ledger.

- HTTP: a real gateway (`python -m gateway serve --database-url ...`, started here on a free
  port of 127.0.0.1 and stopped at the end; `--url` uses one already running instead)
  answers the `/v1/usage` and `/v1/requests` calls, timed from a client in this process.
  Note that the gateway applies pending migrations when it starts.
- In process: the same calls through `UsageService` (built by `gateway.wiring.build_gateway`
  on a `gateway.db.database.Database`, run on its reader threads with `db.read`), and the
  dashboard's reads through `SnapshotReader` (`overview`, `customers`, `requests`,
  `customer_detail`), at the time of the newest call in the log and, for the reads that
  sum the month's rollups, at the end of the last whole month.

All of it for the heaviest customer (the most requests in the rollups), some of it for
the median one too. The month is the latest calendar month the data covers entirely.
Each query runs a few times to warm up, then `--iterations` times; the table gives p50,
p95 and the first (cold) call. `--only TEXT` (repeatable) keeps the queries whose name
has TEXT, `--no-http` skips the gateway process, `--json FILE` keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_KEY = "bench-admin-key-0123456789"
WARMUP = 3


@dataclass
class Timing:
    name: str
    how: str  # http | service | reader
    first_ms: float
    p50_ms: float
    p95_ms: float
    detail: str = ""
    error: str = ""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(
    name: str, how: str, fn: Callable[[], Awaitable[Any]], iterations: int, detail: str = ""
) -> Timing:
    """Warm-up calls, then `iterations` timed ones. A query that fails is reported as such."""
    samples = []
    first = 0.0
    try:
        for i in range(WARMUP + iterations):
            t0 = time.perf_counter()
            await fn()
            ms = (time.perf_counter() - t0) * 1000
            if i == 0:
                first = ms
            if i >= WARMUP:
                samples.append(ms)
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        print(f"  {name} ({how}): FAILED {error}", flush=True)
        return Timing(name, how, math.nan, math.nan, math.nan, detail, error)
    t = Timing(name, how, first, statistics.median(samples), pct(samples, 95), detail)
    print(f"  {name} ({how}): p50 {t.p50_ms:.1f} ms, p95 {t.p95_ms:.1f} ms", flush=True)
    return t


def start_server(url: str, scratch: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "RINGSIDE_ADMIN_KEY": ADMIN_KEY}
    data_dir = scratch / "serve"
    log = (scratch / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            url,
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(base: str, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"the gateway exited with {proc.returncode}")
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the gateway did not come up")


def month_bounds(first_ms: int, last_ms: int) -> tuple[str, str]:
    """The latest calendar month entirely inside [first_ms, last_ms]: (first day, last day)."""
    last = datetime.fromtimestamp(last_ms / 1000, UTC)
    month_start = datetime(last.year, last.month, 1, tzinfo=UTC)
    while True:
        prev_end = month_start
        month_start = (month_start - timedelta(days=1)).replace(day=1)
        if month_start.timestamp() * 1000 >= first_ms:
            return month_start.strftime("%Y-%m-%d"), (prev_end - timedelta(days=1)).strftime(
                "%Y-%m-%d"
            )
        if month_start.timestamp() * 1000 < first_ms - 366 * 86_400_000:
            raise SystemExit("the data does not cover a whole calendar month")


async def run(args: argparse.Namespace) -> list[Timing]:
    with tempfile.TemporaryDirectory(prefix="ringside-big-") as scratch:
        for sub in ("serve", "bench"):
            (Path(scratch) / sub).mkdir()
        return await measure_all(args, Path(scratch))


async def measure_all(args: argparse.Namespace, scratch: Path) -> list[Timing]:
    import httpx

    from gateway.config import load_settings
    from gateway.db.database import Database
    from gateway.events import EventBus
    from gateway.services.snapshots import SnapshotReader
    from gateway.wiring import build_gateway

    url: str = args.database_url
    proc = None

    def selected(name: str) -> bool:
        return not args.only or any(o in name for o in args.only)

    base = args.url
    if args.http and base is None:
        t0 = time.perf_counter()
        proc, base = start_server(url, scratch)
        try:
            await wait_ready(base, proc, args.startup_timeout)
        except BaseException:
            proc.kill()
            print((scratch / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        print(f"gateway up at {base} in {time.perf_counter() - t0:.1f} s")
    elif base is not None:
        await wait_ready(base, None, 10)

    settings = load_settings(
        None,
        env={"RINGSIDE_ADMIN_KEY": ADMIN_KEY},
        overrides={"database_url": url, "data_dir": str(scratch / "bench")},
    )
    db = Database(url)
    gw = build_gateway(settings, db, admin_key=ADMIN_KEY, bus=EventBus())
    usage = gw.services.usage
    timings: list[Timing] = []
    try:

        def facts() -> tuple[str, int, int, int, str, str]:
            sql = db.peewee.execute_sql
            cid, count = sql(
                "SELECT customer_id, SUM(requests) FROM usage_daily WHERE customer_id <> '' "
                "GROUP BY customer_id ORDER BY 2 DESC LIMIT 1"
            ).fetchone()
            first_ms, last_ms = sql(
                "SELECT MIN(created_ms), MAX(created_ms) FROM request_log"
            ).fetchone()
            # A deep page: the customer's calls from half way back in the data.
            mid = (int(first_ms) + int(last_ms)) // 2
            ph = "?" if db.is_sqlite else "%s"
            deep = sql(
                f"SELECT id FROM request_log WHERE customer_id = {ph} AND created_ms < {ph} "
                "ORDER BY created_ms DESC LIMIT 1",
                (cid, mid),
            ).fetchone()[0]
            # And a customer from the middle of the distribution (the long tail's side).
            median = sql(
                "SELECT customer_id, SUM(requests) FROM usage_daily WHERE customer_id <> '' "
                "GROUP BY customer_id ORDER BY 2 DESC, 1 "
                "LIMIT 1 OFFSET (SELECT COUNT(DISTINCT customer_id) / 2 FROM usage_daily)"
            ).fetchone()
            return (
                str(cid),
                int(count),
                int(first_ms),
                int(last_ms),
                str(deep),
                f"{median[0]}:{int(median[1])}",
            )

        cid, count, first_ms, last_ms, deep_cursor, median = await db.read(facts)
        light, light_count = median.split(":")
        month_first, month_last = month_bounds(first_ms, last_ms)
        rows = await db.read(
            lambda: db.peewee.execute_sql("SELECT COUNT(*) FROM request_log").fetchone()[0]
        )
        print(
            f"{int(rows):,} request-log rows; heaviest customer {cid}: {count:,} calls with "
            f"usage; median customer {light}: {int(light_count):,}; "
            f"month {month_first}..{month_last}"
        )
        deep_rank = await db.read(
            lambda: db.peewee.execute_sql(
                "SELECT COUNT(*) FROM request_log WHERE customer_id = "
                + ("?" if db.is_sqlite else "%s")
                + " AND id > "
                + ("?" if db.is_sqlite else "%s"),
                (cid, deep_cursor),
            ).fetchone()[0]
        )
        m = datetime.fromisoformat(month_first).replace(tzinfo=UTC)
        m_last = datetime.fromisoformat(month_last).replace(tzinfo=UTC)
        cases: list[tuple[str, str, dict[str, str]]] = [
            ("usage, month", "/v1/usage", {"since": month_first, "until": month_last}),
            (
                "usage, month, group_by=model",
                "/v1/usage",
                {"since": month_first, "until": month_last, "group_by": "model"},
            ),
            (
                "usage, month, group_by=day",
                "/v1/usage",
                {"since": month_first, "until": month_last, "group_by": "day"},
            ),
            (
                "usage, sub-day window (12:00 -> 12:00, 29 days)",
                "/v1/usage",
                {
                    "since": f"{month_first}T12:00:00Z",
                    "until": f"{m_last:%Y-%m-%d}T12:00:00Z",
                    "group_by": "model",
                },
            ),
            (
                "usage, sub-day window (00:00:01 -> 23:59:59)",
                "/v1/usage",
                {
                    "since": f"{month_first}T00:00:01Z",
                    "until": f"{m_last:%Y-%m-%d}T23:59:59Z",
                    "group_by": "day",
                },
            ),
            (
                "usage, one hour",
                "/v1/usage",
                {"since": f"{m + timedelta(days=14, hours=9):%Y-%m-%dT%H:%M:%SZ}"}
                | {"until": f"{m + timedelta(days=14, hours=10):%Y-%m-%dT%H:%M:%SZ}"},
            ),
            ("requests, first page (limit=50)", "/v1/requests", {"limit": "50"}),
            (
                f"requests, deep page ({int(deep_rank):,} rows in)",
                "/v1/requests",
                {"limit": "50", "starting_after": deep_cursor},
            ),
            (
                f"requests, first page, median customer ({int(light_count):,} calls)",
                "/v1/requests",
                {"limit": "50", "customer_id": light},
            ),
            (
                "usage, month, group_by=model, median customer",
                "/v1/usage",
                {
                    "since": month_first,
                    "until": month_last,
                    "group_by": "model",
                    "customer_id": light,
                },
            ),
        ]
        cases.append(
            (
                "usage, month, all customers, group_by=customer (not a target)",
                "/v1/usage",
                {
                    "since": month_first,
                    "until": month_last,
                    "group_by": "customer",
                    "customer_id": "",
                },
            )
        )
        cases = [c for c in cases if selected(c[0])]
        for name, path, params in cases:
            q = {"customer_id": cid, **params}
            svc = usage.usage_sync if path == "/v1/usage" else usage.requests_sync

            async def call_service(svc: Any = svc, q: dict[str, str] = q) -> Any:
                return await db.read(svc, dict(q))

            timings.append(await measure(name, "service", call_service, args.iterations))
        if base is not None:
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {args.admin_key}"}, timeout=60
            ) as client:
                for name, path, params in cases:
                    q = {"customer_id": cid, **params}

                    async def call_http(path: str = path, q: dict[str, str] = q) -> Any:
                        r = await client.get(path, params=q)
                        r.raise_for_status()
                        return r.content

                    timings.append(await measure(name, "http", call_http, args.iterations))

        # The dashboard's reads (see ringside_tui: a full customers read every 10 s, the
        # changed customers and the activity (totals + series) on every refresh), at the
        # time of the newest call and, for the rollup-based reads, at the end of the month
        # (29 closed days to sum; the series is left out there: the log runs past it).
        now = datetime.fromtimestamp(last_ms / 1000 + 1, UTC)
        month_end = m_last.replace(hour=23, minute=0)
        changed = await db.read(
            lambda: [
                str(r[0])
                for r in db.peewee.execute_sql(
                    "SELECT id FROM customer ORDER BY id LIMIT 20"
                ).fetchall()
            ]
        )
        warm: dict[datetime, SnapshotReader] = {}

        def reader_at(at: datetime) -> SnapshotReader:
            return warm.setdefault(at, SnapshotReader())

        def ticking(at: datetime) -> Callable[[], datetime]:
            # Refreshes a minute apart: yesterday is re-read on every one and, ten minutes
            # in, one older day per refresh too (the worst refreshes of a running dashboard).
            ticks = iter(range(1, 10**6))
            return lambda: at + timedelta(seconds=61 * next(ticks))

        def activity(r: SnapshotReader, at: datetime) -> Any:
            return r.totals(at), r.series(at)

        day = f"day {now.day}"
        ticker, ticker_totals = ticking(month_end), ticking(month_end)
        ticking_reader, ticking_totals_reader = SnapshotReader(), SnapshotReader()
        dashboard: list[tuple[str, Callable[[], Any], str]] = [
            ("overview, first open (cold cache)", lambda: SnapshotReader().overview(now), day),
            ("overview", lambda: reader_at(now).overview(now), day),
            ("activity refresh (totals + series)", lambda: activity(reader_at(now), now), day),
            ("customers, full read", lambda: reader_at(now).customers(now), day),
            (
                "customers, 20 changed",
                lambda: reader_at(now).customers(now, changed),
                day,
            ),
            (
                "customers, full read",
                lambda: reader_at(month_end).customers(month_end),
                "month end",
            ),
            (
                "customers, first open (cold cache)",
                lambda: SnapshotReader().customers(month_end),
                "month end",
            ),
            (
                "totals, re-reading a day each time",
                lambda: ticking_totals_reader.totals(ticker_totals()),
                "month end",
            ),
            (
                "customers, full read re-reading a day each time",
                lambda: ticking_reader.customers(ticker()),
                "month end",
            ),
            ("requests tail (200, all)", lambda: SnapshotReader.requests(), ""),
            (
                "requests tail (200, heaviest customer)",
                lambda: SnapshotReader.requests(200, customer_id=cid),
                "",
            ),
            ("customer detail", lambda: reader_at(now).customer_detail(cid, now), day),
            (
                "customer detail, first open (cold cache)",
                lambda: SnapshotReader().customer_detail(cid, month_end),
                "month end",
            ),
        ]
        for name, fn, when in dashboard:
            name = f"dashboard {name}"
            if selected(name):

                async def call_reader(fn: Callable[[], Any] = fn) -> Any:
                    return await db.read(fn)

                timings.append(await measure(name, "reader", call_reader, args.iterations, when))
    finally:
        db.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return timings


def table(timings: list[Timing], target_ms: float) -> str:
    lines = [
        "| query | via | p50 | p95 | first call | ≤ target |",
        "|---|---|---|---|---|---|",
    ]
    for t in timings:
        name = f"{t.name} ({t.detail})" if t.detail else t.name
        if t.error:
            lines.append(f"| {name} | {t.how} | fails: {t.error} | | | **no** |")
            continue
        ok = "yes" if t.p95_ms <= target_ms else "**no**"
        lines.append(
            f"| {name} | {t.how} | {t.p50_ms:.1f} ms | {t.p95_ms:.1f} ms | "
            f"{t.first_ms:.1f} ms | {ok} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--database-url", default="sqlite:////tmp/ringside-big/ringside.db")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--url", help="a gateway already serving this database (admin key below)")
    p.add_argument(
        "--admin-key",
        default=os.environ.get("RINGSIDE_ADMIN_KEY", ADMIN_KEY),
        help="for --url (default: $RINGSIDE_ADMIN_KEY)",
    )
    p.add_argument("--no-http", dest="http", action="store_false", help="in process only")
    p.add_argument("--startup-timeout", type=float, default=600)
    p.add_argument("--target-ms", type=float, default=50)
    p.add_argument("--json", help="also write the timings to this file")
    p.add_argument("--only", action="append", help="only the queries whose name has this")
    args = p.parse_args()
    timings = asyncio.run(run(args))
    print()
    print(table(timings, args.target_ms))
    if args.json:
        Path(args.json).write_text(json.dumps([t.__dict__ for t in timings], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
