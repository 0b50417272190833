"""Generate a big Ringside ledger: N request-log rows with the rollups that match them.

    .venv/bin/python bench/big_ledger.py --database-url sqlite:////tmp/ringside-big/ringside.db
    .venv/bin/python bench/big_ledger.py --database-url postgresql://postgres@127.0.0.1/ringside_big

Options: --rows (default 10,000,000), --customers (2,000), --days (90), --end (an RFC 3339
time, default now), --seed, --skew (the Zipf exponent of the customers' traffic), --fresh
(delete the SQLite file, or drop the PostgreSQL database, first). A PostgreSQL database
that does not exist is created; one that already holds customers is refused.

The schema is the product's: the real migrations run first (`gateway.db.migrate`). Then,
in big transactions (SQLite: executemany with journal_mode=OFF and synchronous=OFF during
the load, WAL again at the end; PostgreSQL: COPY), it writes what settlements would have
written (`gateway/ledger/settle.py` and `gateway/ledger/sql.py`), row for row:

- `request_log`: every call, oldest first, ids time-ordered like `gateway.ids.new_id`;
  statuses ok (with usage), cut (a stream cut short, charged), error (an upstream
  failure: no usage, nothing charged, the hold recorded) and refused (402, logged by
  the reservation like `log_refusal`);
- `usage_daily`: per UTC day of `created_ms`, customer ('' = untagged) and
  "provider/model", the sums of the calls that had usage (ok and cut), exactly as the
  `rollup_upsert` statement adds them up;
- `budget_period`: per customer and month, the cost spent (`period_settle`);
- `wallet` and `wallet_transaction` for prepaid customers: a debit per priced call
  (`txn_insert`), top-ups whenever the balance would not cover the next call;
- `customer`: N customers with a skewed (Zipf) share of the traffic; most postpaid with a
  monthly budget, some unlimited, one in ten prepaid, a few suspended or archived.

Not written: holds (settled holds are not read by any usage or dashboard query), events
and webhooks. `/v1/usage` and the request log agree exactly on every customer, day and
model; the script checks the totals at the end (`--no-check` skips it).

The secondary indexes of the bulk tables are dropped during the load and recreated at the
end from the migrations' own DDL (read back from the database): the usual way to bulk load,
and it leaves exactly the product's schema. On PostgreSQL it ends with VACUUM ANALYZE, what
autovacuum would have done by itself. Put the database under /tmp: 10M rows take about
3 minutes and 3.5 GB on SQLite, 4.8 GB on PostgreSQL (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY_MS = 86_400_000
CHUNK = 100_000  # rows per executemany / COPY write

# Wallet transactions and rollups keep the column order of gateway/ledger/sql.py.
REQUEST_COLUMNS = (
    "id",
    "customer_id",
    "provider",
    "model",
    "endpoint",
    "stream",
    "status",
    "http_status",
    "error_code",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "price_nanos",
    "held_nanos",
    "over_hold",
    "latency_ms",
    "created_ms",
)
TXN_COLUMNS = (
    "id",
    "customer_id",
    "type",
    "amount_nanos",
    "balance_after_nanos",
    "request_id",
    "description",
    "created_ms",
)
USAGE_COLUMNS = (
    "day",
    "customer_id",
    "model",
    "requests",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "price_nanos",
)
PERIOD_COLUMNS = ("customer_id", "period", "spent_nanos", "held_nanos", "warned", "exceeded")
WALLET_COLUMNS = (
    "customer_id",
    "balance_nanos",
    "held_nanos",
    "low_armed",
    "empty_armed",
    "updated_ms",
)
CUSTOMER_COLUMNS = (
    "id",
    "external_id",
    "name",
    "email",
    "status",
    "monthly_budget_nanos",
    "markup",
    "prepaid",
    "low_balance_threshold_nanos",
    "stripe_customer_id",
    "metadata",
    "created_ms",
    "updated_ms",
    "archived_ms",
)
# Tables whose secondary indexes are dropped during the load and rebuilt after it.
BULK_TABLES = ("request_log", "wallet_transaction", "usage_daily")


@dataclass(frozen=True)
class Model:
    provider: str
    name: str
    endpoints: tuple[str, ...]  # chat | messages | embeddings
    input_nanos: int  # per token
    cached_nanos: int
    output_nanos: int
    reasoning: bool = False

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.name}"


# Six models over three providers, at list prices in nano-USD per token.
MODELS = (
    Model("openai", "gpt-4.1", ("chat",), 2_000, 500, 8_000),
    Model("openai", "o4-mini", ("chat",), 1_100, 275, 4_400, reasoning=True),
    Model("openai", "text-embedding-3-small", ("embeddings",), 20, 20, 0),
    Model("anthropic", "claude-sonnet-4", ("messages", "chat"), 3_000, 300, 15_000),
    Model("anthropic", "claude-haiku-3.5", ("messages", "chat"), 800, 80, 4_000),
    Model("mistral", "mistral-large", ("chat",), 2_000, 2_000, 6_000),
)
MAX_OUTPUT = 4_096  # the worst case a hold reserves for a chat call
UPSTREAM_ERRORS = (
    (502, "upstream_error"),
    (504, "upstream_timeout"),
    (429, "upstream_rate_limited"),
)


# ---------------------------------------------------------------------------- ids

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_3 = [a + b + c for a in _B36 for b in _B36 for c in _B36]  # 46,656 three-digit chunks


def b36_11(n: int) -> str:
    """`n` in 11 base-36 digits, as `gateway.ids` spells the time prefix (fast path)."""
    n, d = divmod(n, 46_656)
    n, c = divmod(n, 46_656)
    a, b = divmod(n, 46_656)
    return _B36_3[a][-2:] + _B36_3[b] + _B36_3[c] + _B36_3[d]


def random_tails(rng: random.Random, count: int) -> list[str]:
    """Random 14-digit id tails. The time prefix alone makes generated ids unique."""
    return ["".join(rng.choice(_B36) for _ in range(14)) for _ in range(count)]


# ---------------------------------------------------------------------------- customers


@dataclass
class Cust:
    index: int
    id: str
    external_id: str
    name: str
    status: str
    prepaid: bool
    budgeted: bool
    markup: tuple[int, int] | None  # (numerator, denominator) or None: the global 1
    model_cum: list[float]
    created_ms: int
    topup_nanos: int
    balance: int = 0
    wallet_updated_ms: int = 0
    refused_months: set[int] = field(default_factory=set)

    def markup_text(self) -> str | None:
        if self.markup is None:
            return None
        num, den = self.markup
        return str(num / den)


def make_customers(
    rng: random.Random, count: int, start_ms: int, rows: int, days: int
) -> list[Cust]:
    tails = random_tails(rng, count)
    markups: list[tuple[int, int] | None] = [None, None, None, (5, 4), (3, 2), (6, 5)]
    out = []
    for i in range(count):
        created_ms = start_ms - rng.randint(1, 60) * DAY_MS - rng.randint(0, DAY_MS)
        weights = [rng.random() ** 3 for _ in MODELS]
        total = sum(weights)
        cum, acc = [], 0.0
        for w in weights:
            acc += w / total
            cum.append(acc)
        cum[-1] = 1.0
        prepaid = i % 10 == 3
        status = "active"
        if i % 97 == 41:
            status = "suspended"
        elif i % 151 == 77:
            status = "archived"
        # A top-up covers roughly a week of this customer's expected traffic.
        share = 1 / (i + 1)
        topup = max(10, int(share * rows / days * 7 * 0.002)) * 10**9
        out.append(
            Cust(
                index=i,
                id=f"cus_{b36_11(created_ms * 1000 + i)}{tails[i]}",
                external_id=f"big-{i:05d}",
                name=f"Customer {i:05d}",
                status=status,
                prepaid=prepaid,
                budgeted=not prepaid and rng.random() < 0.7,
                markup=rng.choice(markups),
                model_cum=cum,
                created_ms=created_ms,
                topup_nanos=topup,
            )
        )
    return out


# ---------------------------------------------------------------------------- generation


@dataclass
class Totals:
    usage: dict[int, list[int]] = field(default_factory=dict)  # rollup key -> 8 sums
    spent: dict[tuple[int, int], int] = field(default_factory=dict)  # (customer, month) -> cost
    log_rows: int = 0
    txns: int = 0


class Generator:
    """Yields chunks of request-log rows and wallet transactions; accumulates the rollups."""

    def __init__(
        self, customers: list[Cust], rows: int, start_ms: int, end_ms: int, seed: int, skew: float
    ) -> None:
        self.customers = customers
        self.rows = rows
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.rng = random.Random(seed)
        self.totals = Totals()
        weights = [1 / (i + 1) ** skew for i in range(len(customers))]
        untagged = sum(weights) * 0.01  # 1% of calls carry no customer
        cum, acc = [], 0.0
        for w in [*weights, untagged]:
            acc += w
            cum.append(acc)
        self.cust_cum = cum
        self.cust_total = acc
        first_day = start_ms // DAY_MS
        self.first_day = first_day
        n_days = (end_ms - 1) // DAY_MS - first_day + 1
        self.day_names = [
            datetime.fromtimestamp((first_day + d) * DAY_MS / 1000, UTC).strftime("%Y-%m-%d")
            for d in range(n_days)
        ]
        months = sorted({d[:7] for d in self.day_names})
        self.month_names = months
        self.day_month = [months.index(d[:7]) for d in self.day_names]
        self.id_tails = random_tails(self.rng, 4096)
        self.topup_tail = "0000000000000t"

    def chunks(self) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        rng = self.rng
        rnd = rng.random
        expo = rng.expovariate
        customers = self.customers
        n_cust = len(customers)
        cust_cum, cust_total = self.cust_cum, self.cust_total
        usage, spent = self.totals.usage, self.totals.spent
        first_day, day_month = self.first_day, self.day_month
        tails = self.id_tails
        n_models = len(MODELS)
        step = (self.end_ms - self.start_ms) / self.rows
        start_ms = self.start_ms
        last_us = 0
        model_keys = [m.key for m in MODELS]
        for lo in range(0, self.rows, CHUNK):
            hi = min(lo + CHUNK, self.rows)
            log: list[tuple[Any, ...]] = []
            txns: list[tuple[Any, ...]] = []
            for i in range(lo, hi):
                t = start_ms + int((i + rnd()) * step)
                us = t * 1000
                if us <= last_us:
                    us = last_us + 1
                last_us = us
                rid = "req_" + b36_11(us) + tails[i & 4095]
                ci = bisect(cust_cum, rnd() * cust_total)
                if ci >= n_cust:
                    c = None
                    mi = int(rnd() * n_models)
                else:
                    c = customers[ci]
                    mi = bisect(c.model_cum, rnd())
                    if mi >= n_models:
                        mi = n_models - 1
                m = MODELS[mi]
                endpoint = m.endpoints[0] if rnd() < 0.7 else m.endpoints[-1]
                stream = endpoint != "embeddings" and rnd() < 0.4
                limited = c is not None and (c.prepaid or c.budgeted)
                input_tokens = 20 + int(expo(1 / 900))
                bound = input_tokens * m.input_nanos + (
                    MAX_OUTPUT * m.output_nanos if endpoint != "embeddings" else 0
                )
                markup = c.markup if c is not None else None
                if markup is not None:
                    price_bound = (bound * markup[0] + markup[1] - 1) // markup[1]
                else:
                    price_bound = bound
                held = (price_bound if c.prepaid else bound) if (c is not None and limited) else 0
                r = rnd()
                day = t // DAY_MS - first_day
                if limited and r < 0.02:
                    assert c is not None
                    code = "customer_wallet_empty" if c.prepaid else "customer_budget_exceeded"
                    c.refused_months.add(day_month[day])
                    key = (ci, day_month[day])
                    spent[key] = spent.get(key, 0)
                    log.append(
                        (
                            rid,
                            c.id,
                            m.provider,
                            m.name,
                            endpoint,
                            stream,
                            "refused",
                            402,
                            code,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            False,
                            0,
                            t,
                        )
                    )
                    continue
                cid = c.id if c is not None else None
                if r < 0.045:
                    status_code, code = UPSTREAM_ERRORS[int(rnd() * 3)]
                    latency = 50 + int(expo(1 / 2000))
                    log.append(
                        (
                            rid,
                            cid,
                            m.provider,
                            m.name,
                            endpoint,
                            stream,
                            "error",
                            status_code,
                            code,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            held,
                            False,
                            latency,
                            t,
                        )
                    )
                    if c is not None:
                        key = (ci, day_month[day])
                        spent[key] = spent.get(key, 0)
                    continue
                cut = stream and r < 0.06
                if endpoint == "embeddings":
                    output_tokens = reasoning = cached = 0
                else:
                    output_tokens = 1 + int(expo(1 / 350))
                    if cut:
                        output_tokens //= 2
                    reasoning = int(output_tokens * rnd()) if m.reasoning else 0
                    cached = (input_tokens * int(rnd() * 8)) // 10 if rnd() < 0.3 else 0
                cost = (
                    (input_tokens - cached) * m.input_nanos
                    + cached * m.cached_nanos
                    + output_tokens * m.output_nanos
                )
                if markup is not None:
                    price = (cost * markup[0] * 2 + markup[1]) // (markup[1] * 2)
                else:
                    price = cost
                latency = 150 + output_tokens * 12 + int(expo(1 / 200))
                log.append(
                    (
                        rid,
                        cid,
                        m.provider,
                        m.name,
                        endpoint,
                        stream,
                        "cut" if cut else "ok",
                        200,
                        "upstream_error" if cut else None,
                        input_tokens,
                        cached,
                        0,
                        output_tokens,
                        reasoning,
                        cost,
                        price,
                        held,
                        False,
                        latency,
                        t,
                    )
                )
                ukey = ((day * (n_cust + 1) + ci) * n_models) + mi
                sums = usage.get(ukey)
                if sums is None:
                    usage[ukey] = [
                        1,
                        input_tokens,
                        cached,
                        0,
                        output_tokens,
                        reasoning,
                        cost,
                        price,
                    ]
                else:
                    sums[0] += 1
                    sums[1] += input_tokens
                    sums[2] += cached
                    sums[4] += output_tokens
                    sums[5] += reasoning
                    sums[6] += cost
                    sums[7] += price
                if c is not None:
                    key = (ci, day_month[day])
                    spent[key] = spent.get(key, 0) + cost
                    if c.prepaid and price:
                        settled = t + latency
                        if c.balance < price:
                            c.balance += c.topup_nanos
                            txns.append(
                                (
                                    "txn_" + b36_11(us) + self.topup_tail,
                                    c.id,
                                    "topup",
                                    c.topup_nanos,
                                    c.balance,
                                    None,
                                    "auto top-up",
                                    settled - 1,
                                )
                            )
                        c.balance -= price
                        c.wallet_updated_ms = settled
                        txns.append(
                            (
                                "txn_" + b36_11(us) + tails[i + 7 & 4095],
                                c.id,
                                "usage",
                                -price,
                                c.balance,
                                rid,
                                model_keys[mi],
                                settled,
                            )
                        )
            self.totals.log_rows += len(log)
            self.totals.txns += len(txns)
            yield log, txns

    def usage_rows(self) -> list[tuple[Any, ...]]:
        n_cust, n_models = len(self.customers), len(MODELS)
        out = []
        for key in sorted(self.totals.usage):
            rest, mi = divmod(key, n_models)
            day, ci = divmod(rest, n_cust + 1)
            cid = self.customers[ci].id if ci < n_cust else ""
            s = self.totals.usage[key]
            out.append((self.day_names[day], cid, MODELS[mi].key, *s))
        return out

    def customer_rows(self, now_ms: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(customers, budget periods); budgets are set from each customer's real spend."""
        rng = random.Random(self.rng.random())
        per_month: dict[int, dict[int, int]] = {}
        for (ci, month), cost in self.totals.spent.items():
            per_month.setdefault(ci, {})[month] = cost
        customers, periods = [], []
        for c in self.customers:
            months = per_month.get(c.index, {})
            budget = None
            if c.budgeted:
                peak = max(months.values(), default=0)
                # Most customers sit well under their cap; a few run close to or over it.
                factor = rng.choice((0.95, 1.1, 1.5, 2.0, 3.0, 3.0, 4.0, 5.0))
                budget = max(10 * 10**9, int(peak * factor) // 10**9 * 10**9)
            for month, cost in sorted(months.items()):
                warned = budget is not None and cost * 10 >= budget * 8
                exceeded = month in c.refused_months and not c.prepaid
                periods.append((c.id, self.month_names[month], cost, 0, warned, exceeded))
            customers.append(
                (
                    c.id,
                    c.external_id,
                    c.name,
                    f"billing+{c.index}@example.com",
                    c.status,
                    budget,
                    c.markup_text(),
                    c.prepaid,
                    5 * 10**9 if c.prepaid else None,
                    None,
                    '{"tier":"%s"}' % ("enterprise" if c.index < 20 else "standard"),
                    c.created_ms,
                    now_ms,
                    now_ms if c.status == "archived" else None,
                )
            )
        return customers, periods

    def wallet_rows(self) -> list[tuple[Any, ...]]:
        return [
            (c.id, c.balance, 0, True, True, c.wallet_updated_ms or c.created_ms)
            for c in self.customers
            if c.prepaid
        ]


# ---------------------------------------------------------------------------- writers


class Writer:
    """Bulk writes into one database; `finish` rebuilds the dropped indexes."""

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def finish(self) -> dict[str, float]:
        raise NotImplementedError

    def scalar(self, sql: str) -> Any:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteWriter(Writer):
    def __init__(self, path: str) -> None:
        import sqlite3

        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-1000000")  # 1 GB, during the load only
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self.indexes: list[tuple[str, str]] = []
        for table in BULK_TABLES:
            for name, sql in self.conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (table,),
            ).fetchall():
                self.indexes.append((name, sql))
                self.conn.execute(f'DROP INDEX "{name}"')
        self.conn.execute("BEGIN")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        cols = ", ".join(columns)
        self.conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def finish(self) -> dict[str, float]:
        self.conn.execute("COMMIT")
        timings = {}
        for name, sql in self.indexes:
            t0 = time.perf_counter()
            self.conn.execute(sql)
            timings[name] = time.perf_counter() - t0
        # Back to the product's journal; the gateway's connections set synchronous=NORMAL.
        self.conn.execute("PRAGMA journal_mode=WAL")
        return timings

    def scalar(self, sql: str) -> Any:
        return self.conn.execute(sql).fetchone()[0]

    def size_bytes(self) -> int:
        return sum(
            os.path.getsize(p)
            for p in (self.path, self.path + "-wal", self.path + "-shm")
            if os.path.exists(p)
        )

    def close(self) -> None:
        self.conn.close()


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return str(value)


class PostgresWriter(Writer):
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)
        self.conn.execute("SET maintenance_work_mem = '512MB'")
        self.conn.execute("SET synchronous_commit = off")
        self.indexes: list[tuple[str, str]] = []
        for table in BULK_TABLES:
            rows = self.conn.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
                "AND i.tablename = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint k "
                "WHERE k.conname = i.indexname)",
                (table,),
            ).fetchall()
            for name, sql in rows:
                self.indexes.append((name, sql))
                self.conn.execute(f'DROP INDEX "{name}"')

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
        cols = ", ".join(columns)
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            copy.write(text.encode())

    def commit(self) -> None:
        self.conn.commit()

    def finish(self) -> dict[str, float]:
        self.conn.commit()
        timings = {}
        for name, sql in self.indexes:
            t0 = time.perf_counter()
            self.conn.execute(sql)
            self.conn.commit()
            timings[name] = time.perf_counter() - t0
        # What autovacuum does to an insert-only table by itself: visibility map, statistics.
        self.conn.autocommit = True
        t0 = time.perf_counter()
        self.conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - t0
        return timings

    def scalar(self, sql: str) -> Any:
        row = self.conn.execute(sql).fetchone()
        return None if row is None else row[0]

    def size_bytes(self) -> int:
        return int(self.scalar("SELECT pg_database_size(current_database())"))

    def close(self) -> None:
        self.conn.close()


def _pg_admin(url: str) -> Callable[[str, tuple[Any, ...]], bool]:
    """Run one statement on the server's maintenance database (autocommit); True when it
    returned or touched a row."""
    import psycopg

    parsed = urlparse(url)

    def run(sql: str, params: tuple[Any, ...] = ()) -> bool:
        last: Exception | None = None
        for admin_db in ("postgres", "test"):
            try:
                with psycopg.connect(
                    parsed._replace(path=f"/{admin_db}").geturl(), autocommit=True
                ) as conn:
                    cur = conn.execute(sql, params)
                    return cur.rowcount > 0
            except psycopg.OperationalError as exc:
                last = exc
        raise SystemExit(f"cannot reach PostgreSQL's maintenance database: {last}")

    return run


def prepare_target(url: str, fresh: bool) -> None:
    """SQLite: delete the file with --fresh. PostgreSQL: create the database if it is not
    there; with --fresh, drop it first."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = Path(sqlite_path(url))
        if path.exists() and fresh:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        return
    name = parsed.path.lstrip("/")
    run = _pg_admin(url)
    if fresh:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', ())
    if not run("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
        run(f'CREATE DATABASE "{name}"', ())


def sqlite_path(url: str) -> str:
    parsed = urlparse(url)
    return parsed.path if url.startswith("sqlite:////") else parsed.path[1:]


# ---------------------------------------------------------------------------- main


def human_bytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def generate(args: argparse.Namespace) -> int:
    from gateway.db.database import Database
    from gateway.db.migrate import migrate

    end = (
        datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(UTC)
        if args.end
        else datetime.now(UTC)
    )
    end_ms = int(end.timestamp() * 1000)
    start_ms = int((end - timedelta(days=args.days)).timestamp() * 1000)
    url: str = args.database_url
    prepare_target(url, args.fresh)
    t_start = time.perf_counter()

    db = Database(url)
    try:
        migrate(db)
        empty = db.run_sync(
            lambda: db.peewee.execute_sql("SELECT COUNT(*) FROM customer").fetchone()[0] == 0
        )
    finally:
        db.close()
    if not empty:
        print(f"{url} already has customers: use --fresh or another database", file=sys.stderr)
        return 2
    t_migrated = time.perf_counter()

    writer: Writer = (
        SqliteWriter(sqlite_path(url)) if url.startswith("sqlite") else PostgresWriter(url)
    )
    rng = random.Random(args.seed)
    customers = make_customers(rng, args.customers, start_ms, args.rows, args.days)
    gen = Generator(customers, args.rows, start_ms, end_ms, args.seed + 1, args.skew)
    written = 0
    last_report = time.perf_counter()
    for log, txns in gen.chunks():
        writer.insert("request_log", REQUEST_COLUMNS, log)
        if txns:
            writer.insert("wallet_transaction", TXN_COLUMNS, txns)
        written += len(log)
        if written % 1_000_000 < CHUNK:
            writer.commit()
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            rate = written / (last_report - t_migrated)
            print(f"  {written:,} rows ({rate:,.0f} rows/s)", flush=True)
    t_logged = time.perf_counter()
    customer_rows, period_rows = gen.customer_rows(end_ms)
    writer.insert("customer", CUSTOMER_COLUMNS, customer_rows)
    writer.insert("budget_period", PERIOD_COLUMNS, period_rows)
    writer.insert("wallet", WALLET_COLUMNS, gen.wallet_rows())
    usage_rows = gen.usage_rows()
    for lo in range(0, len(usage_rows), CHUNK):
        writer.insert("usage_daily", USAGE_COLUMNS, usage_rows[lo : lo + CHUNK])
    t_rest = time.perf_counter()
    index_times = writer.finish()
    t_indexed = time.perf_counter()

    agree = None
    if args.check:
        log_cost = writer.scalar(
            "SELECT SUM(cost_nanos) + SUM(price_nanos) + COUNT(*) FROM request_log "
            "WHERE status IN ('ok', 'cut')"
        )
        rollup_cost = writer.scalar(
            "SELECT SUM(cost_nanos) + SUM(price_nanos) + SUM(requests) FROM usage_daily"
        )
        agree = int(log_cost or 0) == int(rollup_cost or 0)
    size = writer.size_bytes()
    writer.close()
    t_end = time.perf_counter()

    heaviest = customers[0]  # the Zipf distribution's first rank
    print()
    print(f"database: {url}")
    print(
        f"request_log rows: {gen.totals.log_rows:,}; customers: {len(customers):,}; "
        f"usage_daily rows: {len(usage_rows):,}; budget periods: {len(period_rows):,}; "
        f"wallet transactions: {gen.totals.txns:,}"
    )
    begin = datetime.fromtimestamp(start_ms / 1000, UTC)
    print(f"time range: {begin:%Y-%m-%d %H:%M} -> {end:%Y-%m-%d %H:%M} UTC")
    print(f"heaviest customer: {heaviest.id} ({heaviest.external_id})")
    print(f"migrations: {t_migrated - t_start:.1f} s")
    print(
        f"request log + wallet transactions: {t_logged - t_migrated:.1f} s "
        f"({gen.totals.log_rows / (t_logged - t_migrated):,.0f} rows/s)"
    )
    print(f"customers, periods, wallets, rollups: {t_rest - t_logged:.1f} s")
    for name, secs in index_times.items():
        print(f"  {name}: {secs:.1f} s")
    print(f"indexes (+ vacuum/analyze): {t_indexed - t_rest:.1f} s")
    if agree is not None:
        print(
            f"check (log vs rollups, {t_end - t_indexed:.1f} s): {'agree' if agree else 'DIFFER'}"
        )
    print(f"total: {t_end - t_start:.1f} s; database size: {human_bytes(size)}")
    return 0 if agree in (None, True) else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--database-url", default="sqlite:////tmp/ringside-big/ringside.db")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--customers", type=int, default=2_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--end", help="the newest call's time (RFC 3339); default now")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skew", type=float, default=1.0, help="Zipf exponent of traffic per customer")
    p.add_argument("--fresh", action="store_true", help="start from an empty database")
    p.add_argument("--no-check", dest="check", action="store_false")
    args = p.parse_args(argv)
    if args.rows < 1 or args.customers < 1 or args.days < 1:
        p.error("--rows, --customers and --days must be positive")
    return generate(args)


if __name__ == "__main__":
    raise SystemExit(main())
