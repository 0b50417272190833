"""The spend forecast on the customer detail: the line's wording, then the real dashboard on
a gateway whose business clock moves (nothing until a day of traffic, then the forecast)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from gateway.clock import to_ms
from gateway.ledger import NANOS_PER_USD, Forecast
from gateway.runtime import Runtime
from gateway.services.snapshots import CustomerDetail, CustomerRow
from ringside_tui.app import RingsideApp
from ringside_tui.screens.detail import CustomerDetailScreen, describe_forecast, in_about
from tests.conftest import MutableClock
from tests.tui.conftest import start_runtime
from tests.tui.helpers import call, make_customer, proxy_chat, services, wait_until

USD = NANOS_PER_USD
NOW = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
HOUR = 3_600_000
DAY = 24 * HOUR


def detail(
    forecast: Forecast | None, *, budget: int | None = None, wallet: int | None = None
) -> CustomerDetail:
    row = CustomerRow(
        id="cus_x",
        external_id="x",
        name="X",
        email=None,
        status="active",
        prepaid=wallet is not None,
        budget_nanos=budget,
        markup=None,
        threshold_nanos=None,
        spent_nanos=0,
        held_nanos=0,
        budget_exceeded=False,
        wallet_nanos=wallet,
        wallet_held_nanos=0,
        wallet_empty_flag=False,
        mtd_requests=0,
        mtd_cost_nanos=0,
        mtd_price_nanos=0,
    )
    return CustomerDetail(row, 0, None, [], [], [], [], forecast=forecast)


def plain(markup: str | None) -> str:
    assert markup is not None
    return str(Static(markup).render())


def known(**kw: Any) -> Forecast:
    kw.setdefault("month_end_cost_nanos", 12_400_000_000)
    kw.setdefault("month_end_price_nanos", 18_600_000_000)
    kw.setdefault("price_nanos_per_hour", 1000)
    return Forecast(to_ms(NOW), **kw)


def test_in_about_rounds_to_a_readable_unit() -> None:
    assert in_about(0) == "now"
    assert in_about(20_000) == "in ~1 min"
    assert in_about(40 * 60_000) == "in ~40 min"
    assert in_about(HOUR) == "in ~1 hour"
    assert in_about(5 * HOUR + 20 * 60_000) == "in ~5 hours"
    assert in_about(3 * DAY - 3 * HOUR) == "in ~3 days"


def test_the_forecast_line() -> None:
    now = to_ms(NOW)
    f = known(wallet_empty_ms=now + 3 * DAY, budget_exhausted_ms=now + 9 * DAY)
    assert plain(describe_forecast(detail(f, budget=50 * USD, wallet=5 * USD))) == (
        "Forecast: wallet empty in ~3 days · budget exhausted ~Dec 19 · "
        "month end ≈ $12.40 cost / $18.60 price"
    )
    # No budget, no wallet: only the month end.
    assert plain(describe_forecast(detail(f))) == (
        "Forecast: month end ≈ $12.40 cost / $18.60 price"
    )
    # Null times read as what they mean.
    lasting = known(price_nanos_per_hour=0)
    assert plain(describe_forecast(detail(lasting, budget=USD, wallet=USD))).startswith(
        "Forecast: wallet not draining · budget lasts the month · "
    )
    assert "wallet lasts over a year" in plain(describe_forecast(detail(known(), wallet=USD)))
    spent = known(budget_exhausted_ms=now, wallet_empty_ms=now)
    assert plain(describe_forecast(detail(spent, budget=USD, wallet=0))).startswith(
        "Forecast: wallet empty now · budget exhausted now · "
    )


def test_no_forecast_before_a_day_of_traffic() -> None:
    line = plain(describe_forecast(detail(Forecast(to_ms(NOW)), budget=USD, wallet=USD)))
    assert line == "Forecast: not enough history yet (less than a day of traffic)"
    assert describe_forecast(detail(None)) is None


# ---------------------------------------------------------------------------- live


@pytest.fixture
def moving(tmp_path: Path) -> Iterator[tuple[Runtime, MutableClock]]:
    clock = MutableClock(NOW)
    rt = start_runtime(tmp_path / "data", clock=clock)
    yield rt, clock
    rt.stop(timeout=10)


async def test_detail_shows_the_forecast_once_there_is_a_day_of_traffic(
    moving: tuple[Runtime, MutableClock],
) -> None:
    rt, clock = moving
    c = await make_customer(
        rt, "acme", "Acme Corp", monthly_budget_usd=Decimal("0.01"), prepaid=True
    )
    await call(rt, services(rt).wallets.topup("acme", {"amount_usd": Decimal("0.03")}))
    for _ in range(3):
        assert (await proxy_chat(rt, "acme", tokens=400)).status_code == 200
    assert rt.gateway is not None
    app = RingsideApp(rt.gateway, base_url=rt.base_url, idle_s=0.2, busy_s=0.1)
    async with app.run_test(size=(120, 36)) as pilot:
        app.open_customer(c["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen))

        def header() -> str:
            return str(app.screen.query_one("#detail-header", Static).render())

        await wait_until(pilot, lambda: "not enough history yet" in header(), what="no history")
        clock.advance(days=2)
        for _ in range(3):
            assert (await proxy_chat(rt, "acme", tokens=400)).status_code == 200
        got = await call(rt, services(rt).customers.retrieve("acme"))
        f = got["forecast"]
        wallet_at = datetime.fromisoformat(f["wallet_empty_at"].replace("Z", "+00:00"))
        budget_at = datetime.fromisoformat(f["budget_exhausted_at"].replace("Z", "+00:00"))
        assert clock() < budget_at < wallet_at < clock() + timedelta(days=31)
        # The line the API's numbers make, once the detail has caught up with the calls.
        expected = (
            f"Forecast: wallet empty {in_about(to_ms(wallet_at) - to_ms(clock()))} · "
            f"budget exhausted ~Dec {budget_at.day} · month end ≈ $"
        )
        await wait_until(pilot, lambda: expected in header(), what=expected)
