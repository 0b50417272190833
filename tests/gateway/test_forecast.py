"""The spend forecast: the pure forecaster on exact numbers, then through the app (a moved
business clock, metered calls on the mock provider) and in `wallet.low` / `budget.warning`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.clock import iso_ms, to_ms
from gateway.db.models import UsageDaily
from gateway.ledger import NANOS_PER_USD, nanos_to_decimal, usd_to_nanos
from gateway.ledger.forecast import (
    HOUR_MS,
    WEIGHTS_PPM,
    burn_rates,
    next_month_ms,
    spend_forecast,
)
from tests.conftest import MutableClock, admin, unique_id

NOW = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)
USD = NANOS_PER_USD
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def ms(ts: datetime) -> int:
    return to_ms(ts)


def steady_days(
    per_day_cost: int, per_day_price: int, first: str = "2026-04-01", today_hours: int = 12
) -> dict[str, tuple[int, int]]:
    """A steady burn from `first` to NOW: full days, and today's first `today_hours`."""
    out = {}
    day = datetime.fromisoformat(first).replace(tzinfo=UTC)
    while day.date() < NOW.date():
        out[day.strftime("%Y-%m-%d")] = (per_day_cost, per_day_price)
        day += timedelta(days=1)
    out[NOW.strftime("%Y-%m-%d")] = (
        per_day_cost * today_hours // 24,
        per_day_price * today_hours // 24,
    )
    return out


def run(**kw: Any) -> Any:
    kw.setdefault("now_ms", NOW_MS)
    kw.setdefault("first_call_ms", ms(NOW - timedelta(days=30)))
    kw.setdefault("days", {})
    kw.setdefault("budget_nanos", None)
    kw.setdefault("budget_used_nanos", 0)
    kw.setdefault("wallet_available_nanos", None)
    return spend_forecast(**kw)


# ---------------------------------------------------------------------------- pure


def test_steady_burn_gives_exact_times_and_month_end() -> None:
    # $2.40 a day of cost ($0.10 an hour), $3.60 of price ($0.15 an hour), since April 1st.
    days = steady_days(24 * USD // 10, 36 * USD // 10)
    f = run(
        days=days,
        budget_nanos=50 * USD,
        budget_used_nanos=35 * USD,  # $15 left: 150 hours at $0.10
        wallet_available_nanos=3 * USD,  # 20 hours at $0.15
    )
    assert f.cost_nanos_per_hour == USD // 10
    assert f.price_nanos_per_hour == 15 * USD // 100
    assert f.budget_exhausted_ms == ms(NOW + timedelta(hours=150))
    assert f.wallet_empty_ms == ms(NOW + timedelta(hours=20))
    # 14 days and a half so far ($34.80 / $52.20), 15.5 days (372 h) left in April.
    assert f.month_end_cost_nanos == usd_to_nanos("34.8") + 372 * USD // 10
    assert f.month_end_price_nanos == usd_to_nanos("52.2") + 372 * 15 * USD // 100


def test_weighting_favours_recent_days() -> None:
    """The same week's spend reads higher when it is recent, by the 0.7-a-day weights."""
    early = {f"2026-04-{d:02d}": (10 * USD, 10 * USD) for d in (9, 10)}  # 6 and 5 days ago
    late = {f"2026-04-{d:02d}": (10 * USD, 10 * USD) for d in (13, 14)}  # 2 days ago, yesterday
    slow, fast = run(days=early), run(days=late)
    assert fast.cost_nanos_per_hour > 2 * slow.cost_nanos_per_hour
    # Exactly the weighted mean: sum(w x amount) / sum(w x hours observed).
    exposure = sum(w * 24 * HOUR_MS for w in WEIGHTS_PPM[1:]) + WEIGHTS_PPM[0] * 12 * HOUR_MS
    expected = Fraction((WEIGHTS_PPM[1] + WEIGHTS_PPM[2]) * 10 * USD, exposure)
    assert burn_rates(NOW_MS, ms(NOW - timedelta(days=30)), late)[0] == expected
    assert fast.cost_nanos_per_hour == round(expected * HOUR_MS)
    # A week of equal weights would read both the same.
    equal = Fraction(20 * USD, 6 * 24 * HOUR_MS + 12 * HOUR_MS)
    assert round(equal * HOUR_MS) not in (fast.cost_nanos_per_hour, slow.cost_nanos_per_hour)


def test_days_before_the_first_call_are_not_read_as_zero_spend() -> None:
    # First call 30 hours ago, $0.10 an hour since: the rate is $0.10, not diluted by the
    # five empty days before.
    first = NOW - timedelta(hours=30)
    days = {"2026-04-14": (18 * USD // 10, 0), "2026-04-15": (12 * USD // 10, 0)}
    f = run(first_call_ms=ms(first), days=days)
    assert f.cost_nanos_per_hour == USD // 10


def test_less_than_a_day_of_traffic_gives_every_field_null() -> None:
    days = {"2026-04-15": (5 * USD, 5 * USD)}
    for first in (None, ms(NOW - timedelta(hours=23, minutes=59))):
        f = run(first_call_ms=first, days=days, budget_nanos=USD, wallet_available_nanos=USD)
        assert not f.known
        assert (
            f.budget_exhausted_ms,
            f.wallet_empty_ms,
            f.month_end_cost_nanos,
            f.month_end_price_nanos,
        ) == (None, None, None, None)
    assert run(first_call_ms=ms(NOW - timedelta(hours=24)), days=days).known


def test_zero_burn_gives_no_times_and_month_end_is_the_spend_so_far() -> None:
    # Spend on April 1st, outside the 7-day window: no burn now.
    days = {"2026-04-01": (5 * USD, 7 * USD), "2026-03-31": (9 * USD, 9 * USD)}
    f = run(days=days, budget_nanos=10 * USD, budget_used_nanos=5 * USD, wallet_available_nanos=USD)
    assert f.known
    assert f.budget_exhausted_ms is None and f.wallet_empty_ms is None
    assert f.cost_nanos_per_hour == 0 and f.price_nanos_per_hour == 0
    assert (f.month_end_cost_nanos, f.month_end_price_nanos) == (5 * USD, 7 * USD)


def test_a_budget_that_would_run_out_next_month_is_null() -> None:
    """The budget resets on the 1st: exhaustion after the month end does not happen."""
    now = datetime(2026, 4, 30, 20, 0, tzinfo=UTC)  # 4 hours left in April
    days = {f"2026-04-{d:02d}": (24 * USD // 10, 0) for d in range(24, 30)}
    days["2026-04-30"] = (2 * USD, 0)  # $0.10 an hour for 20 hours
    base = {"now_ms": ms(now), "days": days, "budget_nanos": 100 * USD}
    assert run(**base, budget_used_nanos=99_700_000_000).budget_exhausted_ms == ms(
        now + timedelta(hours=3)
    )
    assert run(**base, budget_used_nanos=99 * USD).budget_exhausted_ms is None  # 10 h: May
    f = run(**base, budget_used_nanos=0)
    month_so_far = 6 * 24 * USD // 10 + 2 * USD
    assert f.month_end_cost_nanos == month_so_far + 4 * USD // 10


def test_month_end_at_the_start_of_a_month_counts_only_the_new_month() -> None:
    now = datetime(2027, 1, 1, 6, 0, tzinfo=UTC)
    days = {f"2026-12-{d:02d}": (24 * USD // 10, 0) for d in range(26, 32)}
    days["2027-01-01"] = (6 * USD // 10, 0)
    f = run(now_ms=ms(now), days=days)
    assert f.cost_nanos_per_hour == USD // 10
    # January so far ($0.60) + the rest of January (31 days - 6 hours) at $0.10.
    assert f.month_end_cost_nanos == 6 * USD // 10 + (31 * 24 - 6) * USD // 10
    assert next_month_ms(ms(now)) == ms(datetime(2027, 2, 1, tzinfo=UTC))
    assert next_month_ms(ms(datetime(2026, 12, 31, 23, tzinfo=UTC))) == ms(now.replace(hour=0))


def test_no_budget_and_not_prepaid_give_null_times() -> None:
    f = run(days=steady_days(24 * USD // 10, 36 * USD // 10))
    assert f.known and f.month_end_cost_nanos is not None
    assert f.budget_exhausted_ms is None and f.wallet_empty_ms is None


def test_already_used_up_answers_now_and_a_wallet_lasting_years_is_null() -> None:
    now = NOW + timedelta(milliseconds=1234)
    days = steady_days(24 * USD // 10, 24 * USD // 10)
    f = run(
        now_ms=ms(now),
        days=days,
        budget_nanos=10 * USD,
        budget_used_nanos=11 * USD,
        wallet_available_nanos=-5,
    )
    assert f.budget_exhausted_ms == f.wallet_empty_ms == ms(NOW) + 1000  # to the second
    far = run(days=days, wallet_available_nanos=10_000 * USD)  # 100,000 hours
    assert far.wallet_empty_ms is None
    assert run(days=days, wallet_available_nanos=100 * USD).wallet_empty_ms == ms(
        NOW + timedelta(hours=1000)
    )


def test_times_round_up_to_the_second() -> None:
    days = steady_days(24 * USD // 10, 0)
    # $0.10 an hour = 27,777.7... nanos a second: 1 nano lasts 36 microseconds.
    f = run(days=days, budget_nanos=USD, budget_used_nanos=USD - 1)
    assert f.budget_exhausted_ms == NOW_MS + 1000


# ---------------------------------------------------------------------------- the app

PRICES = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 4000
"""
START = datetime(2031, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
async def app(gateway_factory: Any, clock: MutableClock) -> Any:
    clock.now = START
    gw = gateway_factory(PRICES)
    async with AsyncTestClient(app=create_app(gw)) as c:
        yield c


async def make_customer(c: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("external_id", unique_id("fc"))
    body.setdefault("name", "Forecast Co")
    r = await c.post("/v1/customers", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


async def chat(c: Any, customer_id: str, tokens: int = 1000) -> None:
    body = {
        "model": "fc:mock/mock-fast",
        "messages": [{"role": "user", "content": f"go [mock:tokens={tokens}]"}],
        "max_tokens": tokens,
    }
    r = await c.post("/v1/chat/completions", json=body, headers=admin({"FC-Customer": customer_id}))
    assert r.status_code == 200, r.text


async def retrieve(c: Any, ref: str) -> dict[str, Any]:
    r = await c.get(f"/v1/customers/{ref}", headers=admin())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def parse_time(text: str) -> datetime:
    assert RFC3339.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


NULL_FORECAST = {
    "budget_exhausted_at": None,
    "wallet_empty_at": None,
    "month_end_cost_usd": None,
    "month_end_price_usd": None,
}


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_customer_forecast_through_the_api(app: Any, clock: MutableClock) -> None:
    cus = await make_customer(app, monthly_budget_usd=0.05, prepaid=True)
    r = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.03}, headers=admin()
    )
    assert r.status_code == 200, r.text
    assert (await retrieve(app, cus["id"]))["forecast"] == NULL_FORECAST  # no traffic yet
    for _ in range(3):
        await chat(app, cus["id"])
    clock.advance(hours=23)
    assert (await retrieve(app, cus["id"]))["forecast"] == NULL_FORECAST  # under a day
    # Two more days at three calls a day, then read at noon of the third.
    for _ in range(2):
        clock.advance(hours=24)
        for _ in range(3):
            await chat(app, cus["id"])
    listed = await app.get("/v1/customers", headers=admin())
    assert all("forecast" not in row for row in listed.json()["data"])  # the retrieve only
    got = await retrieve(app, cus["external_id"])
    f = got["forecast"]
    assert set(f) == set(NULL_FORECAST)
    now = clock()
    budget_at = parse_time(f["budget_exhausted_at"])
    wallet_at = parse_time(f["wallet_empty_at"])
    assert now < wallet_at < budget_at < datetime(2031, 4, 1, tzinfo=UTC)
    # Exactly the forecaster over the numbers the rest of the API shows: the daily
    # rollups, the month's spent + held, the wallet's available balance.
    U = UsageDaily
    days = {
        day: (int(cost), int(price))
        for day, cost, price in U.select(U.day, U.cost_nanos, U.price_nanos)
        .where(U.customer_id == cus["id"])
        .tuples()
    }
    assert len(days) == 3
    budget, wallet = got["budget"], got["wallet"]
    expected = spend_forecast(
        now_ms=to_ms(now),
        first_call_ms=to_ms(START),
        days=days,
        budget_nanos=USD // 20,
        budget_used_nanos=usd_to_nanos(str(budget["spent_usd"]))
        + usd_to_nanos(str(budget["held_usd"])),
        wallet_available_nanos=usd_to_nanos(str(wallet["available_usd"])),
    )
    assert f == {
        "budget_exhausted_at": iso_ms(expected.budget_exhausted_ms),
        "wallet_empty_at": iso_ms(expected.wallet_empty_ms),
        "month_end_cost_usd": float(nanos_to_decimal(expected.month_end_cost_nanos or 0)),
        "month_end_price_usd": float(nanos_to_decimal(expected.month_end_price_nanos or 0)),
    }
    assert Decimal(str(f["month_end_cost_usd"])) > Decimal(str(budget["spent_usd"])) > 0


async def event_data(c: Any, type_: str) -> list[dict[str, Any]]:
    r = await c.get("/v1/events", params={"type": type_, "limit": 100}, headers=admin())
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json()["data"]]


def as_event(forecast: dict[str, Any]) -> dict[str, Any]:
    """The API's forecast as an event carries it (money as plain JSON floats)."""
    return {
        k: float(Decimal(str(v))) if k.endswith("_usd") and v is not None else v
        for k, v in forecast.items()
    }


async def cross(
    c: Any, clock: MutableClock, type_: str, **body: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer with two days of traffic, called until its `type_` event fires: (the
    event's data, the customer as GET answers it right after, at the same time)."""
    cus = await make_customer(c, **body)
    if body.get("prepaid"):
        r = await c.post(
            f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.05}, headers=admin()
        )
        assert r.status_code == 200, r.text
    for _ in range(4):
        await chat(c, cus["id"])
    clock.advance(days=2)
    for _ in range(20):
        await chat(c, cus["id"])
        fired = [d for d in await event_data(c, type_) if d["customer"]["id"] == cus["id"]]
        if fired:
            return fired[0], await retrieve(c, cus["id"])
    raise AssertionError(f"no {type_}")


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_wallet_low_carries_the_forecast_of_the_crossing_call(
    app: Any, clock: MutableClock
) -> None:
    # The first crossing comes within the first day: a forecast of nulls, never a guess.
    new = await make_customer(app, low_balance_threshold_usd=0.009)
    await app.post(
        f"/v1/customers/{new['id']}/wallet/topup", json={"amount_usd": 0.01}, headers=admin()
    )
    await chat(app, new["id"])
    [early] = await event_data(app, "wallet.low")
    assert early["forecast"] == NULL_FORECAST

    low, got = await cross(app, clock, "wallet.low", low_balance_threshold_usd=0.02, prepaid=True)
    f = low["forecast"]
    now = clock()
    assert now < parse_time(f["wallet_empty_at"]) < now + timedelta(days=31)
    assert f["budget_exhausted_at"] is None  # no budget
    # Exactly what the customer reads once the call is settled: the crossing call's own
    # cost and price are in it, though its rollup is written after the crossing.
    assert f == as_event(got["forecast"])
    assert all("forecast" not in d for d in await event_data(app, "wallet.topped_up"))


async def test_budget_warning_carries_the_forecast(app: Any, clock: MutableClock) -> None:
    warning, got = await cross(app, clock, "budget.warning", monthly_budget_usd=0.02)
    f = warning["forecast"]
    now = clock()
    assert now < parse_time(f["budget_exhausted_at"]) < datetime(2031, 4, 1, tzinfo=UTC)
    assert f["wallet_empty_at"] is None  # not prepaid
    assert f == as_event(got["forecast"])
