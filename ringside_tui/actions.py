"""`DashboardActions`: what an operator can do, for screens, the palette and key bindings.

Each action opens the dialog it needs (a form, a confirmation), calls one service through
the backend, says what happened (a toast), and posts the message that makes the views
refresh (`CustomerChanged`, `KeysChanged`, `ViewInvalidated`). Screens get this object
when they are built; they never reach for the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App

from gateway.errors import ApiError
from gateway.ledger import nanos_to_text
from gateway.services.snapshots import CustomerRow
from ringside_tui.backend import ApiDict, Backend, GatewayUnavailable
from ringside_tui.customer_cache import CustomerCache
from ringside_tui.dialogs import (
    ConfirmScreen,
    FormScreen,
    KeyCreatedScreen,
    customer_fields,
    key_fields,
    limit_fields,
    topup_fields,
)
from ringside_tui.messages import CustomerChanged, CustomerSelected, KeysChanged, ViewInvalidated
from ringside_tui.widgets.cells import usd_text


def _plain_usd(nanos: int | None) -> str:
    """An amount as the forms take it back: '12.5', no $ and no thousands separators."""
    return "" if nanos is None else nanos_to_text(nanos)


def stripe_sync_summary(result: ApiDict) -> str:
    return (
        f"Stripe sync {result.get('status', 'done')}: "
        f"{result.get('events', 0)} meter events for "
        f"{result.get('customers_pushed', 0)} customers."
    )


class DashboardActions:
    def __init__(self, app: App[Any], backend: Backend, customers: CustomerCache) -> None:
        self._app = app
        self._backend = backend
        self._customers = customers

    # ------------------------------------------------------------------ customers
    def open_customer(self, customer_id: str) -> None:
        self._app.post_message(CustomerSelected(customer_id))

    def new_customer(self) -> None:
        def done(result: ApiDict | None) -> None:
            if result:
                self._app.notify(f"Created customer {result['name']} ({result['id']}).")
                self._app.post_message(CustomerChanged(result["id"], "created"))

        self._app.push_screen(
            FormScreen(
                "New customer",
                customer_fields(),
                self._backend.create_customer,
                submit_label="Create",
                form_id="new-customer",
                intro="A postpaid customer is capped by its monthly budget (cost); "
                "a prepaid one is debited at price from its wallet.",
            ),
            done,
        )

    def open_topup(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._open_topup)

    def _open_topup(self, c: CustomerRow) -> None:
        customer_id = c.id

        async def topup(body: ApiDict) -> ApiDict:
            return await self._backend.topup(customer_id, body)

        def done(result: ApiDict | None) -> None:
            if result:
                balance = result.get("balance_usd")
                self._app.notify(f"Topped up {c.name}: wallet balance ${balance}.")
                self._app.post_message(CustomerChanged(customer_id, "topup"))

        balance = usd_text(c.wallet_nanos) if c.wallet_nanos is not None else "no wallet yet"
        self._app.push_screen(
            FormScreen(
                f"Top up {c.name}",
                topup_fields(),
                topup,
                submit_label="Top up",
                form_id="topup",
                intro=f"Wallet balance: {balance}. Calls are debited at price; "
                "a top-up makes a postpaid customer prepaid.",
            ),
            done,
        )

    def open_limits(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._open_limits)

    def _open_limits(self, c: CustomerRow) -> None:
        customer_id = c.id

        async def update(body: ApiDict) -> ApiDict:
            return await self._backend.update_customer(customer_id, body)

        def done(result: ApiDict | None) -> None:
            if result:
                self._app.notify(f"Updated the limits of {c.name}.")
                self._app.post_message(CustomerChanged(customer_id, "limits"))

        self._app.push_screen(
            FormScreen(
                f"Limits of {c.name}",
                limit_fields(
                    _plain_usd(c.budget_nanos),
                    c.markup or "",
                    _plain_usd(c.threshold_nanos),
                ),
                update,
                form_id="limits",
                only_changed=True,
                intro="Blank means none: no cap, the global markup, no low-balance alert.",
            ),
            done,
        )

    def toggle_suspend(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._toggle_suspend)

    def _toggle_suspend(self, c: CustomerRow) -> None:
        customer_id = c.id
        if c.status == "archived":
            self._app.notify(f"{c.name} is archived and cannot be resumed.", severity="warning")
            return
        resume = c.status == "suspended"
        question = (
            f"Resume {c.name}? Its calls are served again."
            if resume
            else f"Suspend {c.name}? Its calls get 403 customer_suspended until resumed."
        )

        def confirmed(ok: bool | None) -> None:
            if ok:
                status = "active" if resume else "suspended"
                self._run(
                    lambda: self._backend.update_customer(customer_id, {"status": status}),
                    f"{'Resumed' if resume else 'Suspended'} {c.name}.",
                    customer_id,
                )

        self._app.push_screen(
            ConfirmScreen(question, confirm_label="Resume" if resume else "Suspend"), confirmed
        )

    def confirm_archive(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._confirm_archive)

    def _confirm_archive(self, c: CustomerRow) -> None:
        customer_id = c.id
        if c.status == "archived":
            self._app.notify(f"{c.name} is already archived.")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._run(
                    lambda: self._backend.archive_customer(customer_id),
                    f"Archived {c.name}; its usage stays queryable.",
                    customer_id,
                )

        self._app.push_screen(
            ConfirmScreen(
                f"Archive {c.name}? This cannot be undone: its calls get 403 "
                "customer_archived; its ledger and usage stay.",
                confirm_label="Archive",
                danger=True,
            ),
            confirmed,
        )

    def _with_customer(self, customer_id: str, then: Callable[[CustomerRow], None]) -> None:
        """Open a dialog now from the live cache (so keys typed next reach it), or after
        one read when the customer is not cached yet (a palette jump)."""
        cached = self._customers.get(customer_id)
        if cached is not None:
            then(cached)
            return

        async def fetch() -> None:
            try:
                c = await self._customers.fetch(customer_id)
            except GatewayUnavailable as exc:
                self._app.notify(str(exc), severity="error")
                return
            if c is None:
                self._app.notify(f"No customer {customer_id}.", severity="error")
                return
            then(c)

        self._app.run_worker(fetch(), group="open-form")

    # ------------------------------------------------------------------ keys
    def create_key(self) -> None:
        async def create(body: ApiDict) -> ApiDict:
            return await self._backend.create_key(body["name"])

        def done(result: ApiDict | None) -> None:
            if result:
                self._app.post_message(KeysChanged(result["id"]))
                self._app.push_screen(KeyCreatedScreen(result["name"], result["key"]))

        self._app.push_screen(
            FormScreen("New app key", key_fields(), create, submit_label="Create", form_id="key"),
            done,
        )

    def confirm_revoke(self, key_id: str, name: str) -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                self._run(
                    lambda: self._backend.revoke_key(key_id), f"Revoked app key '{name}'.", None
                )

        self._app.push_screen(
            ConfirmScreen(
                f"Revoke app key '{name}'? Calls using it get 401 at once.",
                confirm_label="Revoke",
                danger=True,
            ),
            confirmed,
        )

    # ------------------------------------------------------------------ webhooks, stripe
    def retry_delivery(self, delivery_id: str) -> None:
        self._run(
            lambda: self._backend.retry_delivery(delivery_id),
            "Delivery queued for a new attempt.",
            None,
        )

    def set_endpoint_enabled(self, endpoint_id: str, enabled: bool) -> None:
        self._run(
            lambda: self._backend.set_endpoint_enabled(endpoint_id, enabled),
            f"Endpoint {'enabled' if enabled else 'disabled'}.",
            None,
        )

    def stripe_sync_now(self) -> None:
        self._run(self._backend.stripe_sync_now, stripe_sync_summary, None)

    # ------------------------------------------------------------------ running
    def _run(
        self,
        call: Callable[[], Awaitable[ApiDict]],
        success: str | Callable[[ApiDict], str],
        customer_id: str | None,
    ) -> None:
        """Run a service call off the UI thread; a toast says how it went."""

        async def run() -> None:
            try:
                result = await call()
            except ApiError as exc:
                self._app.notify(exc.message, title="Not done", severity="error", timeout=8)
                return
            except GatewayUnavailable as exc:
                self._app.notify(str(exc), title="Not done", severity="error")
                return
            self._app.notify(success if isinstance(success, str) else success(result))
            if customer_id is not None:
                self._app.post_message(CustomerChanged(customer_id))
            else:
                self._app.post_message(ViewInvalidated())

        self._app.run_worker(run(), group="action", exit_on_error=False)
