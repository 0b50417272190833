"""Webhooks and Stripe tabs: with the real services, with fakes, and without them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from gateway.db.models import WebhookDelivery, WebhookEndpoint
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.screens.stripe import NOT_AVAILABLE as STRIPE_NA
from ringside_tui.screens.webhooks import NOT_AVAILABLE as WEBHOOKS_NA
from ringside_tui.widgets.diff_table import DiffTable
from tests.tui.helpers import call, column, make_customer, screen_text, wait_until

SIZE = (120, 36)
AppFactory = Callable[..., RingsideApp]


def table(app: RingsideApp, table_id: str) -> DiffTable[Any]:
    return app.screen.query_one(f"#{table_id}", DiffTable)


@pytest.fixture
def without_extras(runtime: Runtime) -> Iterator[None]:
    assert runtime.gateway is not None
    extra = runtime.gateway.services.extra
    saved = dict(extra)
    extra.clear()
    yield
    extra.update(saved)


async def test_tabs_say_not_available_without_the_services(
    runtime: Runtime, make_app: AppFactory, without_extras: None
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_until(pilot, lambda: "not available" in screen_text(app), what="webhooks")
        assert WEBHOOKS_NA.split(",")[0] in screen_text(app)
        await pilot.press("r")  # no delivery: a warning, no crash
        await pilot.press("6")
        await wait_until(pilot, lambda: STRIPE_NA.split(",")[0] in screen_text(app), what="stripe")
        await pilot.press("y")  # the action reports the service is missing
        await pilot.pause(0.3)
        assert app.last_error is None
        assert app.is_running


# ---------------------------------------------------------------------------- webhooks


async def test_webhooks_tab_retry_and_disable(runtime: Runtime, make_app: AppFactory) -> None:
    assert runtime.gateway is not None
    hooks = runtime.gateway.services.webhooks
    if hooks is None:
        pytest.skip("the webhook service is not in this build")
    # Port 9 (discard) refuses connections: every attempt fails, the delivery stays pending.
    endpoint = await call(runtime, hooks.create_endpoint({"url": "http://127.0.0.1:9/hook"}))
    await make_customer(runtime, "acme", "Acme Corp")
    await call(
        runtime,
        runtime.gateway.services.wallets.topup("acme", {"amount_usd": Decimal(5)}),
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        endpoints = table(app, "endpoints-table")
        deliveries = table(app, "deliveries-table")
        await wait_until(pilot, lambda: endpoints.row_count == 1, what="endpoint row")
        await wait_until(pilot, lambda: deliveries.row_count >= 1, what="delivery row")
        assert "wallet.topped_up" in column(deliveries, 1)
        delivery_id = deliveries.selected_key
        assert delivery_id is not None

        def row() -> WebhookDelivery:
            return runtime.gateway.db.run_sync(WebhookDelivery.get_by_id, delivery_id)  # type: ignore[union-attr]

        # Push the next attempt far out, then retry from the dashboard: due again now.
        runtime.gateway.db.run_sync(
            lambda: (
                WebhookDelivery.update(next_attempt_ms=2**53, status="pending")
                .where(WebhookDelivery.id == delivery_id)
                .execute()
            )
        )
        await pilot.press("r")
        await wait_until(pilot, lambda: row().next_attempt_ms < 2**52, what="retry in the db")

        endpoints.focus()
        await pilot.press("e")
        await wait_until(
            pilot,
            lambda: (
                not runtime.gateway.db.run_sync(  # type: ignore[union-attr]
                    WebhookEndpoint.get_by_id, endpoint["id"]
                ).enabled
            ),
            what="endpoint disabled in the db",
        )
        await wait_until(
            pilot, lambda: column(endpoints, 1)[0].startswith("disabled"), what="health cell"
        )
        await pilot.press("e")
        await wait_until(
            pilot,
            lambda: (
                runtime.gateway.db.run_sync(  # type: ignore[union-attr]
                    WebhookEndpoint.get_by_id, endpoint["id"]
                ).enabled
            ),
            what="endpoint enabled again",
        )


# ---------------------------------------------------------------------------- stripe


class FakeStripe:
    """The stripe service's dashboard surface, recording calls."""

    configured = True

    def __init__(self) -> None:
        self.synced = 0
        self._runs: list[dict[str, Any]] = []

    async def sync_now(self, trigger: str = "manual") -> dict[str, Any]:
        self.synced += 1
        run = {
            "id": f"srun_{self.synced}",
            "trigger": trigger,
            "status": "succeeded",
            "started_at": "2026-04-01T02:00:00Z",
            "duration_ms": 12,
            "customers_pushed": 1,
            "events": 2,
            "total_value": 340,
            "unit": "price_cents",
            "failures": [],
        }
        self._runs.insert(0, run)
        return run

    async def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._runs[:limit]

    async def customer_states(self, limit: int | None = None) -> list[dict[str, Any]]:
        return [
            {
                "customer_id": "cus_x",
                "name": "Acme Corp",
                "stripe_customer_id": "cus_Stripe123",
                "status": "synced" if self.synced else "pending",
                "last_pushed_day": "2026-03-31" if self.synced else None,
                "pending_value": 0 if self.synced else 340,
                "unit": "price_cents",
                "last_error": None,
            }
        ]


async def test_stripe_sync_now_calls_the_service(runtime: Runtime, make_app: AppFactory) -> None:
    assert runtime.gateway is not None
    extra = runtime.gateway.services.extra
    saved = extra.get("stripe")
    fake = FakeStripe()
    extra["stripe"] = fake
    try:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("6")
            states = table(app, "states-table")
            await wait_until(pilot, lambda: states.row_count == 1, what="state row")
            assert column(states, 2) == ["pending"]
            await pilot.press("y")
            runs = table(app, "runs-table")
            await wait_until(pilot, lambda: runs.row_count == 1, what="run row")
            assert fake.synced == 1
            assert column(runs, 2) == ["succeeded"]
            await wait_until(pilot, lambda: column(states, 2) == ["synced"], what="state synced")
    finally:
        if saved is not None:
            extra["stripe"] = saved


async def test_stripe_not_configured_is_reported(runtime: Runtime, make_app: AppFactory) -> None:
    assert runtime.gateway is not None
    if runtime.gateway.services.stripe is None:
        pytest.skip("the stripe service is not in this build")
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("6")
        await wait_until(pilot, lambda: "not configured" in screen_text(app), what="banner")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: any("not configured" in str(n.message) for n in app._notifications),
            what="error toast",
        )
