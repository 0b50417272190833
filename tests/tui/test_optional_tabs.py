"""Webhooks and Stripe tabs: the real services (Stripe unconfigured), and a stand-in Stripe
service given to the dashboard through its typed seam (`Backend(stripe=...)`)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gateway.audit import DASHBOARD, SYSTEM, Actor
from gateway.db.models import WebhookDelivery, WebhookEndpoint
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.backend import ApiDict, Backend, StripeSync
from ringside_tui.screens.stripe import NOT_CONFIGURED
from ringside_tui.widgets.diff_table import DiffTable
from tests.tui.helpers import call, column, make_customer, screen_text, wait_until

SIZE = (120, 36)
AppFactory = Callable[..., RingsideApp]


def table(app: RingsideApp, table_id: str) -> DiffTable[Any]:
    return app.screen.query_one(f"#{table_id}", DiffTable)


def toasts(app: RingsideApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


# ---------------------------------------------------------------------------- webhooks


async def test_webhooks_tab_without_endpoints(runtime: Runtime, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("5")
        done = app.refresh_loop.count
        await wait_until(
            pilot,
            lambda: any(t.view == "webhooks" for t in list(app.refresh_loop.timings)[done:]),
            what="a webhooks refresh",
        )
        assert table(app, "endpoints-table").row_count == 0
        assert table(app, "deliveries-table").row_count == 0
        await pilot.press("r")  # nothing selected: a warning, no crash
        await wait_until(
            pilot, lambda: "Select a delivery first." in toasts(app), what="warning toast"
        )
        assert app.refresh_loop.last_error is None
        assert app.is_running


async def test_webhooks_tab_retry_and_disable(runtime: Runtime, make_app: AppFactory) -> None:
    gw = runtime.gateway
    assert gw is not None
    hooks = gw.services.webhooks
    # Port 9 (discard) refuses connections: every attempt fails, the delivery stays pending.
    endpoint = await call(runtime, hooks.create_endpoint({"url": "http://127.0.0.1:9/hook"}))
    await make_customer(runtime, "acme", "Acme Corp")
    await call(runtime, gw.services.wallets.topup("acme", {"amount_usd": Decimal(5)}))
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
            return gw.db.run_sync(WebhookDelivery.get_by_id, delivery_id)

        def enabled() -> bool:
            return bool(gw.db.run_sync(WebhookEndpoint.get_by_id, endpoint["id"]).enabled)

        # Push the next attempt far out, then retry from the dashboard: due again now.
        gw.db.run_sync(
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
        await wait_until(pilot, lambda: not enabled(), what="endpoint disabled in the db")
        await wait_until(
            pilot, lambda: column(endpoints, 1)[0].startswith("disabled"), what="health cell"
        )
        await pilot.press("e")
        await wait_until(pilot, enabled, what="endpoint enabled again")


# ---------------------------------------------------------------------------- stripe


class FakeStripe:
    """A stand-in for the Stripe sync service (the `StripeSync` protocol), recording calls."""

    configured = True

    def __init__(self) -> None:
        self.synced = 0
        self.actors: list[Actor] = []
        self._runs: list[ApiDict] = []

    async def sync_now(self, trigger: str = "manual", actor: Actor = SYSTEM) -> ApiDict:
        self.synced += 1
        self.actors.append(actor)
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

    async def runs(self, limit: int = 20, starting_after: str | None = None) -> list[ApiDict]:
        return self._runs[:limit]

    async def customer_states(
        self, limit: int | None = None, starting_after: str | None = None
    ) -> list[ApiDict]:
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
    fake = FakeStripe()
    stripe: StripeSync = fake  # the seam is typed: the stand-in satisfies the protocol
    app = make_app(backend=Backend.for_gateway(runtime.gateway, stripe=stripe))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        states = table(app, "states-table")
        await wait_until(pilot, lambda: states.row_count == 1, what="state row")
        assert column(states, 2) == ["pending"]
        assert NOT_CONFIGURED not in screen_text(app)
        await pilot.press("y")
        runs = table(app, "runs-table")
        await wait_until(pilot, lambda: runs.row_count == 1, what="run row")
        assert fake.synced == 1
        assert fake.actors == [DASHBOARD]  # audited as the operator at the dashboard
        assert column(runs, 2) == ["succeeded"]
        await wait_until(pilot, lambda: column(states, 2) == ["synced"], what="state synced")


async def test_stripe_not_configured_is_reported(runtime: Runtime, make_app: AppFactory) -> None:
    assert runtime.gateway is not None
    assert not runtime.gateway.services.stripe.configured  # no STRIPE_API_KEY in the tests
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("6")
        await wait_until(pilot, lambda: NOT_CONFIGURED in screen_text(app), what="banner")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: any("not configured" in t for t in toasts(app)),
            what="error toast",
        )
        assert app.refresh_loop.last_error is None  # the action failed, the tab did not
        assert app.is_running
