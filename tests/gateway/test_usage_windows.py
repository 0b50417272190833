"""`/v1/usage` over any window: whole days from the rollups, partial days from the log.

The ledger here is written by real metered calls (the settle path writes the request-log
row and the rollup together) spread over four days across a month boundary; every
window, grouping and customer filter must give exactly what the request log alone sums
to. Small data: what these tests pin is exactness and the query plan, not speed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.clock import from_ms, iso
from gateway.db.database import tuples
from gateway.db.models import RequestLog
from gateway.ledger import nanos_to_json
from gateway.services.usage import LogWindow, parse_time, plan_usage
from gateway.wiring import Gateway
from tests.conftest import MutableClock, admin

START = datetime(2026, 3, 30, 21, 7, 13, tzinfo=UTC)
CONFIG = '[billing]\nuntagged = "allow"\n'
BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock(START)


@pytest.fixture
async def ledger(
    gateway_factory: Any, clock: MutableClock
) -> AsyncIterator[tuple[AsyncTestClient[Any], Gateway, dict[str, str]]]:
    """~50 calls every 97 minutes from Mar 30 21:07 to Apr 2: ok, cut, error, refused."""
    gw = gateway_factory(CONFIG)
    async with AsyncTestClient(app=create_app(gw)) as c:
        ids = {}
        for ext, extra in (("a", {}), ("b", {}), ("tight", {"monthly_budget_usd": 0.00001})):
            r = await c.post(
                "/v1/customers", json={"external_id": ext, "name": ext, **extra}, headers=admin()
            )
            assert r.status_code == 201, r.text
            ids[ext] = r.json()["id"]
        for i in range(50):
            clock.now = START + timedelta(minutes=97 * i, milliseconds=i)
            who = ("a", "b", "a", None, "tight")[i % 5]
            headers = admin({"FC-Customer": ids[who]} if who else {})
            model = ("mock-fast", "mock-smart")[i % 2]
            content = f"hi [mock:tokens={3 + i % 7}]"
            stream = False
            if i % 11 == 6:
                content += " [mock:error=500]"
            elif i % 13 == 4:
                content += " [mock:cut=2]"
                stream = True
            body: dict[str, Any] = {
                "model": f"fc:mock/{model}",
                "messages": [{"role": "user", "content": content}],
            }
            if stream:
                body["stream"] = True
            r = await c.post("/v1/chat/completions", json=body, headers=headers)
            r.read()
        statuses = gw.db.run_sync(
            lambda: {s for (s,) in tuples(RequestLog.select(RequestLog.status).distinct())}
        )
        assert statuses == {"ok", "cut", "error", "refused"}
        yield c, gw, ids


def from_log(
    gw: Gateway,
    since: datetime | None,
    until: datetime | None,
    customer: str | None,
    group: str | None,
) -> dict[str, Any]:
    """The reference: sums over the request log's rows alone, in Python."""
    R = RequestLog
    rows = gw.db.run_sync(lambda: list(R.select().where(R.status.in_(["ok", "cut"]))))
    totals = [0] * 7
    groups: dict[str, list[int]] = defaultdict(lambda: [0] * 5)
    for r in rows:
        if customer is not None and r.customer_id != customer:
            continue
        if since is not None and r.created_ms < int(since.timestamp() * 1000):
            continue
        if until is not None and r.created_ms >= int(until.timestamp() * 1000):
            continue
        values = (1, r.input_tokens, r.output_tokens, r.cached_tokens, r.reasoning_tokens)
        nanos = (r.cost_nanos, r.price_nanos)
        for i, v in enumerate((*values, *nanos)):
            totals[i] += v
        if group:
            key = {
                "day": from_ms(r.created_ms).strftime("%Y-%m-%d"),
                "model": f"fc:{r.provider}/{r.model}",
                "customer": r.customer_id or "",
            }[group]
            for i, v in enumerate((*values[:3], *nanos)):
                groups[key][i] += v

    def money(cost: int, price: int) -> dict[str, Decimal]:
        return {
            "total_cost_usd": dec(nanos_to_json(cost)),
            "total_price_usd": dec(nanos_to_json(price)),
            "margin_usd": dec(nanos_to_json(price - cost)),
        }

    label = "customer_id" if group == "customer" else group
    return {
        "requests": totals[0],
        "input_tokens": totals[1],
        "output_tokens": totals[2],
        "cached_tokens": totals[3],
        "reasoning_tokens": totals[4],
        **money(totals[5], totals[6]),
        "breakdown": [
            {
                str(label): key or None,
                "requests": g[0],
                "input_tokens": g[1],
                "output_tokens": g[2],
                **money(g[3], g[4]),
            }
            for key, g in sorted(groups.items())
        ],
    }


def dec(raw: Any) -> Decimal:
    return Decimal(bytes(raw).decode())


WINDOWS = [
    # sub-day bounds on both sides, whole days between (rollups + two log edges)
    ("2026-03-30T22:00:00Z", "2026-04-02T03:30:00Z"),
    # edges that cover most of their day: that day's rollup minus the log outside
    ("2026-03-30T00:00:01Z", "2026-04-01T23:59:59Z"),
    ("2026-03-31T00:00:00.250Z", "2026-04-01T23:00:00.750Z"),
    # inside one day: short (log) and long (rollup minus the log around it)
    ("2026-03-31T09:00:00Z", "2026-03-31T11:30:00Z"),
    ("2026-03-31T01:00:00Z", "2026-03-31T23:00:00Z"),
    # across one midnight without a whole day between
    ("2026-03-31T20:00:00Z", "2026-04-01T04:00:00Z"),
    ("2026-03-31T02:00:00Z", "2026-04-01T22:00:00Z"),
    # one side open
    ("2026-03-31T13:45:00Z", None),
    (None, "2026-04-01T07:15:00Z"),
    (None, "2026-04-01T20:15:00+02:00"),
    # whole days (rollups only) and no bounds at all
    ("2026-03-31", "2026-04-01"),
    ("2026-03-31T00:00:00Z", "2026-04-02T00:00:00Z"),
    (None, None),
    # nothing there
    ("2026-03-29T05:00:00Z", "2026-03-29T07:00:00Z"),
]


@BOTH
@pytest.mark.parametrize("group", [None, "day", "model", "customer"])
async def test_any_window_equals_the_request_log_alone(
    ledger: tuple[AsyncTestClient[Any], Gateway, dict[str, str]], group: str | None
) -> None:
    c, gw, ids = ledger
    for since, until in WINDOWS:
        for customer in (None, ids["a"], ids["tight"]):
            params = {k: v for k, v in (("since", since), ("until", until)) if v}
            if group:
                params["group_by"] = group
            if customer:
                params["customer_id"] = customer
            r = await c.get("/v1/usage", params=params, headers=admin())
            assert r.status_code == 200, r.text
            got = json.loads(r.text, parse_float=Decimal)
            lo, hi = bounds(since, until)
            want = from_log(gw, lo, hi, customer, group)
            assert {k: got[k] for k in want} == want, (since, until, customer, group)
            assert got["since"] == (iso(lo) if lo else None)
            assert got["group_by"] == group and got["object"] == "usage"


def test_plans_read_whole_days_from_rollups_and_at_most_half_a_day_of_log() -> None:
    plan = plan_usage(at("2026-03-30T22:00:00Z"), at("2026-04-02T03:30:00Z"))
    assert plan.days == (("2026-03-31", "2026-04-02"),)
    assert plan.windows == (
        LogWindow("2026-03-30", ms("2026-03-30T22:00:00Z"), ms("2026-03-31T00:00:00Z")),
        LogWindow("2026-04-02", ms("2026-04-02T00:00:00Z"), ms("2026-04-02T03:30:00Z")),
    )
    plan = plan_usage(at("2026-03-30T00:00:01Z"), at("2026-04-01T23:59:59Z"))
    assert plan.days == (
        ("2026-03-31", "2026-04-01"),
        ("2026-03-30", "2026-03-31"),
        ("2026-04-01", "2026-04-02"),
    )
    assert plan.windows == (
        LogWindow("2026-03-30", ms("2026-03-30T00:00:00Z"), ms("2026-03-30T00:00:01Z"), -1),
        LogWindow("2026-04-01", ms("2026-04-01T23:59:59Z"), ms("2026-04-02T00:00:00Z"), -1),
    )
    whole = plan_usage(at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z"))
    assert whole.days == (("2026-03-01", "2026-04-01"),) and whole.windows == ()
    assert plan_usage(None, None).days == ((None, None),)
    inside = plan_usage(at("2026-03-31T09:00:00Z"), at("2026-03-31T11:30:00Z"))
    assert inside.days == () and len(inside.windows) == 1
    for since, until in WINDOWS:
        for w in plan_usage(*bounds(since, until)).windows:
            assert w.end_ms - w.start_ms <= 43_200_000  # half a day


def bounds(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    return parse_time(since, "since", end=False)[0], parse_time(until, "until", end=True)[0]


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def test_customer_reads_use_the_customer_indexes(gateway: Gateway) -> None:
    """SQLite's plans (no statistics, as the product runs): an index range per customer,
    no sort of all the customer's calls, no scan of every customer's rollups."""
    gw = gateway
    cid = gw.db.run_sync(gw.services.customers.create_sync, {"external_id": "x", "name": "X"})["id"]
    seen: list[tuple[str, Any]] = []
    original = gw.db.peewee.execute_sql

    def spy(query: str, params: Any = None, *args: Any, **kw: Any) -> Any:
        if query.lstrip().upper().startswith("SELECT") and (
            "request_log" in query or "usage_daily" in query
        ):
            seen.append((query, params))
        return original(query, params, *args, **kw)

    def plans() -> list[str]:
        return [
            " / ".join(str(r[-1]) for r in original("EXPLAIN QUERY PLAN " + q, p).fetchall())
            for q, p in seen
        ]

    gw.db.peewee.execute_sql = spy  # type: ignore[method-assign,assignment]
    try:
        usage = gw.services.usage
        params = {
            "customer_id": cid,
            "since": "2026-03-30T22:00:00Z",
            "until": "2026-04-02T03:30:00Z",
        }
        gw.db.run_sync(usage.usage_sync, {**params, "group_by": "model"})
        gw.db.run_sync(usage.requests_sync, {"customer_id": cid, "limit": "50"})
        gw.db.run_sync(usage.requests_sync, {"customer_id": cid, "starting_after": "req_z"})
        usage_plan, first_page, deep_page = gw.db.run_sync(plans)
    finally:
        gw.db.peewee.execute_sql = original  # type: ignore[method-assign]
    assert "usage_daily USING INDEX usage_daily_customer_id_day" in usage_plan
    assert "request_log USING INDEX request_log_customer_id_created_ms" in usage_plan
    for page in (first_page, deep_page):
        assert "request_log_customer_id_id" in page and "TEMP B-TREE" not in page, page
