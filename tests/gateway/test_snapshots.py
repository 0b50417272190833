"""The dashboard's snapshot queries (gateway/services/snapshots.py), headless."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from gateway.clock import day_of, month_of, to_ms
from gateway.db.models import BudgetPeriod, Customer, RequestLog, UsageDaily, Wallet
from gateway.services.snapshots import CLOSED_DAYS_TTL_MS, OLDER_DAYS_TTL_MS, SnapshotReader
from gateway.wiring import Gateway
from tests.conftest import MutableClock

NOW = datetime(2026, 4, 15, 12, 0, 30, tzinfo=UTC)
USD = 1_000_000_000


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock(NOW)


def create(gw: Gateway, ext: str, **body: Any) -> str:
    out = gw.db.run_sync(
        gw.services.customers.create_sync, {"external_id": ext, "name": ext.title(), **body}
    )
    return str(out["id"])


def usage(gw: Gateway, cid: str, day: datetime, model: str, n: int, cost: int, price: int) -> None:
    gw.db.run_sync(
        lambda: UsageDaily.insert(
            day=day_of(day),
            customer_id=cid,
            model=model,
            requests=n,
            input_tokens=n * 100,
            output_tokens=n * 10,
            cost_nanos=cost,
            price_nanos=price,
        ).execute()
    )


def period(gw: Gateway, cid: str, spent: int, *, exceeded: bool = False, held: int = 0) -> None:
    gw.db.run_sync(
        lambda: BudgetPeriod.insert(
            customer_id=cid,
            period=month_of(NOW),
            spent_nanos=spent,
            held_nanos=held,
            exceeded=exceeded,
        ).execute()
    )


def wallet(gw: Gateway, cid: str, balance: int, *, empty_flag: bool = False) -> None:
    gw.db.run_sync(
        lambda: Wallet.insert(
            customer_id=cid,
            balance_nanos=balance,
            held_nanos=0,
            empty_armed=not empty_flag,
            updated_ms=to_ms(NOW),
        ).execute()
    )


def log(
    gw: Gateway, cid: str | None, i: int, at: datetime, status: str = "ok", price: int = 0
) -> None:
    gw.db.run_sync(
        lambda: RequestLog.insert(
            id=f"req_{i:025d}",
            customer_id=cid,
            provider="mock",
            model="mock-fast",
            endpoint="chat",
            status=status,
            http_status=200 if status == "ok" else 402,
            input_tokens=10,
            output_tokens=5,
            cost_nanos=price // 2,
            price_nanos=price,
            latency_ms=100 + i,
            created_ms=to_ms(at),
        ).execute()
    )


@contextmanager
def count_queries(gw: Gateway) -> Iterator[list[str]]:
    seen: list[str] = []
    db = gw.db.peewee
    original = db.execute_sql

    def counting(sql: str, params: Any = None, *args: Any, **kw: Any) -> Any:
        seen.append(sql)
        return original(sql, params, *args, **kw)

    db.execute_sql = counting  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        db.execute_sql = original  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- customers


def test_customer_rows_month_to_date_and_badges(gateway: Gateway) -> None:
    gw = gateway
    acme = create(gw, "acme", monthly_budget_usd=Decimal(100))
    capped = create(gw, "capped", monthly_budget_usd=Decimal(10))
    refused = create(gw, "refused", monthly_budget_usd=Decimal(10))
    raised = create(gw, "raised", monthly_budget_usd=Decimal(1000))
    empty = create(gw, "empty", prepaid=True)
    low = create(gw, "low", prepaid=True, low_balance_threshold_usd=Decimal(5))
    flagged = create(gw, "flagged", prepaid=True)
    paused = create(gw, "paused")
    gone = create(gw, "gone")
    gw.db.run_sync(
        lambda: Customer.update(status="suspended").where(Customer.id == paused).execute()
    )
    gw.db.run_sync(lambda: Customer.update(status="archived").where(Customer.id == gone).execute())
    last_month = NOW - timedelta(days=20)
    usage(gw, acme, last_month, "mock/mock-fast", 5, 9 * USD, 12 * USD)  # not this month
    usage(gw, acme, NOW - timedelta(days=3), "mock/mock-fast", 10, 2 * USD, 3 * USD)
    usage(gw, acme, NOW, "mock/mock-smart", 4, 1 * USD, 2 * USD)
    period(gw, acme, 3 * USD)
    period(gw, capped, 10 * USD)
    period(gw, refused, 9 * USD, exceeded=True)  # refused near the cap
    period(gw, raised, 10 * USD, exceeded=True)  # refused, then the budget was raised
    wallet(gw, empty, 0)
    wallet(gw, low, 2 * USD)
    wallet(gw, flagged, USD // 100, empty_flag=True)

    rows, today, month = gw.db.run_sync(SnapshotReader().customers, NOW)
    by = {r.external_id: r for r in rows}
    a = by["acme"]
    assert (a.mtd_requests, a.mtd_cost_nanos, a.mtd_price_nanos) == (14, 3 * USD, 5 * USD)
    assert a.margin_nanos == 2 * USD
    assert a.budget_share == pytest.approx(0.03)
    assert (today.requests, today.cost_nanos, today.price_nanos) == (4, USD, 2 * USD)
    assert (month.requests, month.cost_nanos, month.price_nanos) == (14, 3 * USD, 5 * USD)
    assert month.margin_pct == pytest.approx(40.0)
    states = {ext: r.state() for ext, r in by.items()}
    assert states == {
        "acme": "active",
        "capped": "over budget",
        "refused": "over budget",
        "raised": "active",
        "empty": "wallet empty",
        "low": "active",
        "flagged": "wallet empty",
        "paused": "suspended",
        "gone": "archived",
    }
    risks = {ext: r.risk() for ext, r in by.items() if r.risk()}
    assert risks == {
        "capped": "over budget",
        "refused": "over budget",
        "empty": "wallet empty",
        "low": "wallet below threshold",
        "flagged": "wallet empty",
    }
    assert by["acme"].wallet_nanos is None  # postpaid: no wallet column value
    assert by["low"].wallet_nanos == 2 * USD
    assert [r.external_id for r in rows] == sorted(r.external_id for r in rows)  # stable order


def test_customers_snapshot_is_not_n_plus_one(gateway: Gateway) -> None:
    gw = gateway
    reader = SnapshotReader()
    for i in range(3):
        create(gw, f"c{i}", prepaid=True)
    gw.db.run_sync(reader.customers, NOW)  # warm the closed-days cache
    with count_queries(gw) as few:
        gw.db.run_sync(reader.customers, NOW)
    for i in range(3, 60):
        create(gw, f"c{i}", monthly_budget_usd=Decimal(5))
    with count_queries(gw) as many:
        rows, _, _ = gw.db.run_sync(reader.customers, NOW)
    assert len(rows) == 60
    assert len(many) == len(few) <= 2


def test_closed_days_are_cached_and_today_is_live(gateway: Gateway, clock: MutableClock) -> None:
    gw = gateway
    cid = create(gw, "acme")
    reader = SnapshotReader()
    usage(gw, cid, NOW - timedelta(days=2), "m", 1, USD, USD)
    rows, _, _ = gw.db.run_sync(reader.customers, clock())
    assert rows[0].mtd_cost_nanos == USD
    # A late settlement for a closed day: picked up once the cache lapses.
    usage(gw, cid, NOW - timedelta(days=1), "m", 1, USD, USD)
    usage(gw, cid, NOW, "m", 1, USD, USD)
    rows, _, _ = gw.db.run_sync(reader.customers, clock())
    assert rows[0].mtd_cost_nanos == 2 * USD  # today's row counts at once
    clock.advance(seconds=CLOSED_DAYS_TTL_MS / 1000 + 1)
    rows, _, _ = gw.db.run_sync(reader.customers, clock())
    assert rows[0].mtd_cost_nanos == 3 * USD


def test_midnight_reads_only_the_day_that_just_closed(
    gateway: Gateway, clock: MutableClock
) -> None:
    """The closed days are cached per day: the first refresh of a day reads the day that
    just closed, not the whole month (every customer's rollups) again."""
    gw = gateway
    cid = create(gw, "acme")
    reader = SnapshotReader()
    for days_ago in (3, 2, 1, 0):
        usage(gw, cid, NOW - timedelta(days=days_ago), "m", 1, USD, 2 * USD)
    clock.now = NOW.replace(hour=23, minute=58)
    rows, _, month = gw.db.run_sync(reader.customers, clock())
    assert rows[0].mtd_cost_nanos == 4 * USD and month.price_nanos == 8 * USD
    clock.now = NOW.replace(hour=0, minute=0, second=5) + timedelta(days=1)
    usage(gw, cid, clock.now, "m", 1, USD, 2 * USD)
    with count_queries(gw) as queries:
        rows, today, month = gw.db.run_sync(reader.customers, clock())
    assert rows[0].mtd_cost_nanos == 5 * USD and today.cost_nanos == USD
    assert (month.requests, month.cost_nanos, month.price_nanos) == (5, 5 * USD, 10 * USD)
    usage_reads = [q for q in queries if "usage_daily" in q]
    assert len(usage_reads) == 2  # the new yesterday and today, not the month
    assert all(">=" not in q and q.count("?") == 1 for q in usage_reads)


def test_older_closed_days_are_reread_after_their_own_ttl(
    gateway: Gateway, clock: MutableClock
) -> None:
    """Days before yesterday are re-read once they are OLDER_DAYS_TTL_MS old, one day per
    refresh, so no refresh pays for the whole month."""
    gw = gateway
    cid = create(gw, "acme")
    reader = SnapshotReader()
    usage(gw, cid, NOW - timedelta(days=5), "m", 1, USD, USD)
    gw.db.run_sync(reader.customers, clock())
    # A settlement replayed from the spool into an older day.
    usage(gw, cid, NOW - timedelta(days=6), "m", 1, USD, USD)
    clock.advance(seconds=CLOSED_DAYS_TTL_MS / 1000 + 1)
    rows, _, _ = gw.db.run_sync(reader.customers, clock())
    assert rows[0].mtd_cost_nanos == USD  # yesterday re-read, the older days not yet
    clock.advance(seconds=OLDER_DAYS_TTL_MS / 1000)
    for _ in range(NOW.day - 2):  # the days before yesterday
        with count_queries(gw) as queries:
            rows, _, month = gw.db.run_sync(reader.customers, clock())
        reads = [q for q in queries if "usage_daily" in q]
        # Today's, and one query for yesterday (its own TTL ran out too the first time)
        # and one older day at most.
        assert len(reads) == 2 and all(">=" not in q and q.count("?") <= 2 for q in reads)
    assert rows[0].mtd_cost_nanos == 2 * USD and month.cost_nanos == 2 * USD
    with count_queries(gw) as queries:
        gw.db.run_sync(reader.customers, clock())
    assert len([q for q in queries if "usage_daily" in q]) == 1  # today's: all fresh again


def test_narrowed_reads_skip_a_cold_month_cache(gateway: Gateway) -> None:
    """A customer's detail on a cold cache sums only that customer's days."""
    gw = gateway
    a, b = create(gw, "acme"), create(gw, "beta")
    for cid, cost in ((a, USD), (b, 7 * USD)):
        usage(gw, cid, NOW - timedelta(days=9), "m", 2, cost, 2 * cost)
        usage(gw, cid, NOW - timedelta(days=1), "m", 1, cost, 2 * cost)
        usage(gw, cid, NOW, "m", 1, cost, 2 * cost)
    reader = SnapshotReader()
    with count_queries(gw) as queries:
        rows, today, month = gw.db.run_sync(reader.customers, NOW, [a])
    assert [(r.external_id, r.mtd_requests, r.mtd_cost_nanos) for r in rows] == [
        ("acme", 4, 3 * USD)
    ]
    assert (today.cost_nanos, month.cost_nanos, month.price_nanos) == (USD, 3 * USD, 6 * USD)
    closed = [q for q in queries if "usage_daily" in q and "<" in q]
    assert len(closed) == 1 and " IN " in closed[0]  # that customer's days only
    rows, _, month = gw.db.run_sync(reader.customers, NOW)  # the full read fills the cache
    assert month.cost_nanos == 24 * USD
    with count_queries(gw) as queries:
        rows, _, month = gw.db.run_sync(reader.customers, NOW, [b])
    assert month.cost_nanos == 21 * USD
    assert not [q for q in queries if "usage_daily" in q and "<" in q]  # served from the cache


# ---------------------------------------------------------------------------- activity


def test_series_per_second_and_per_minute(gateway: Gateway) -> None:
    gw = gateway
    cid = create(gw, "acme")
    log(gw, cid, 1, NOW - timedelta(seconds=1), price=100)
    log(gw, cid, 2, NOW - timedelta(seconds=1), price=100)
    log(gw, cid, 3, NOW, price=50)
    log(gw, cid, 4, NOW, status="refused")
    log(gw, cid, 5, NOW - timedelta(seconds=2), status="error")
    log(gw, cid, 6, NOW - timedelta(minutes=5), price=1000)
    log(gw, cid, 7, NOW - timedelta(hours=2), price=99999)  # outside both windows
    s = gw.db.run_sync(SnapshotReader().series, NOW)
    assert len(s.requests_per_s) == 60 and len(s.spend_per_min_nanos) == 30
    assert s.requests_per_s[-3:] == [1, 2, 1]  # refusals are not traffic
    assert (s.last_minute_requests, s.last_minute_errors, s.last_minute_refused) == (4, 1, 1)
    assert s.spend_per_min_nanos[-1] == 250
    assert s.spend_per_min_nanos[-6] == 1000
    assert sum(s.spend_per_min_nanos) == 1250


def test_overview_top_and_at_risk(gateway: Gateway) -> None:
    gw = gateway
    big = create(gw, "big")
    small = create(gw, "small")
    near = create(gw, "near", monthly_budget_usd=Decimal(10))
    create(gw, "idle")
    usage(gw, big, NOW, "m", 1, 5 * USD, 6 * USD)
    usage(gw, small, NOW, "m", 1, USD, 2 * USD)
    usage(gw, near, NOW, "m", 1, 3 * USD, 3 * USD)
    period(gw, near, int(8.5 * USD))
    ov = gw.db.run_sync(SnapshotReader().overview, NOW)
    assert [c.external_id for c in ov.top_by_cost()] == ["big", "near", "small"]
    assert [(c.external_id, why) for c, why in ov.at_risk()] == [("near", "85% of budget")]
    assert ov.period == "2026-04"


def test_requests_tail_and_filters(gateway: Gateway) -> None:
    gw = gateway
    a = create(gw, "acme")
    b = create(gw, "beta")
    for i in range(5):
        log(gw, a if i % 2 else b, i, NOW - timedelta(seconds=10 - i), status="ok")
    log(gw, None, 9, NOW)  # untagged
    reader = SnapshotReader()
    tail = gw.db.run_sync(reader.requests, 3)
    assert [r.id for r in tail] == [f"req_{i:025d}" for i in (9, 4, 3)]
    assert tail[0].customer_name is None and tail[1].customer_name == "Beta"
    only_a = gw.db.run_sync(lambda: reader.requests(customer_ids=[a]))
    assert {r.customer_id for r in only_a} == {a} and len(only_a) == 2
    assert gw.db.run_sync(lambda: reader.requests(customer_ids=[])) == []
    assert gw.db.run_sync(lambda: reader.requests(status="refused")) == []


def test_customer_detail_and_keys(gateway: Gateway) -> None:
    import asyncio

    gw = gateway
    cid = create(gw, "acme", monthly_budget_usd=Decimal(50))
    usage(gw, cid, NOW, "mock/mock-fast", 3, USD, 2 * USD)
    usage(gw, cid, NOW, "mock/mock-smart", 1, 4 * USD, 5 * USD)
    usage(gw, cid, NOW - timedelta(days=1), "mock/mock-fast", 2, USD, USD)
    log(gw, cid, 1, NOW)
    gw.db.run_sync(gw.ledger.topup_sync, "acme", 7 * USD, "credit")
    detail = gw.db.run_sync(SnapshotReader().customer_detail, cid, NOW)
    assert detail.customer.external_id == "acme"
    assert [(u.key, u.requests) for u in detail.by_model] == [
        ("mock/mock-smart", 1),
        ("mock/mock-fast", 5),
    ]
    assert [u.key for u in detail.by_day] == [day_of(NOW), day_of(NOW - timedelta(days=1))]
    assert [t.type for t in detail.transactions] == ["topup"]
    assert len(detail.requests) == 1
    asyncio.run(gw.services.keys.create({"name": "backend"}))
    keys = gw.db.run_sync(SnapshotReader.keys)
    assert [k.name for k in keys] == ["backend"] and keys[0].prefix.startswith("rs_")


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_dashboard_reads_on_each_database(gateway: Gateway) -> None:
    """The overview's series groups by an expression: PostgreSQL must see the one in
    SELECT and the one in GROUP BY as the same (no bound parameter in either)."""
    gw = gateway
    a = create(gw, "acme", monthly_budget_usd=Decimal(50))
    usage(gw, a, NOW - timedelta(days=2), "mock/mock-fast", 2, USD, 2 * USD)
    usage(gw, a, NOW - timedelta(days=1), "mock/mock-fast", 1, USD, 2 * USD)
    usage(gw, a, NOW, "mock/mock-smart", 1, USD, 2 * USD)
    log(gw, a, 1, NOW - timedelta(seconds=1), price=100)
    log(gw, a, 2, NOW, status="refused")
    reader = SnapshotReader()
    ov = gw.db.run_sync(reader.overview, NOW)
    assert (ov.month.requests, ov.month.cost_nanos, ov.today.cost_nanos) == (4, 3 * USD, USD)
    assert ov.series.requests_per_s[-2] == 1 and ov.series.last_minute_refused == 1
    assert ov.series.spend_per_min_nanos[-1] == 100
    today, month = gw.db.run_sync(reader.totals, NOW)
    assert (today.requests, month.requests) == (1, 4)
    detail = gw.db.run_sync(SnapshotReader().customer_detail, a, NOW)
    assert detail.customer.mtd_cost_nanos == 3 * USD
    assert [u.key for u in detail.by_model] == ["mock/mock-fast", "mock/mock-smart"]
    assert [r.id for r in detail.requests] == [f"req_{2:025d}", f"req_{1:025d}"]


def test_snapshots_module_stays_headless() -> None:
    # rich itself may arrive with httpx's CLI module; Textual and the dashboard must not.
    code = (
        "import sys, gateway.services.snapshots, gateway.app; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'ringside_tui')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
