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
from gateway.terms import LIMIT_NAMES
from ringside_tui.backend import ApiDict, Backend, GatewayUnavailable
from ringside_tui.customer_cache import CustomerCache
from ringside_tui.dialogs import (
    Choices,
    ConfirmScreen,
    Field,
    FormScreen,
    KeyCreatedScreen,
    customer_fields,
    key_fields,
    limit_fields,
    plan_fields,
    topup_fields,
)
from ringside_tui.messages import CustomerChanged, CustomerSelected, KeysChanged, ViewInvalidated
from ringside_tui.widgets.cells import api_text, usd_text


def _plain_usd(nanos: int | None) -> str:
    """An amount as the forms take it back: '12.5', no $ and no thousands separators."""
    return "" if nanos is None else nanos_to_text(nanos)


def plan_choices(plans: list[ApiDict]) -> Choices:
    """The plan picker's options, by name (the id tells equal names apart)."""
    names = [str(p["name"]) for p in plans]
    return tuple(
        (
            f"{p['name']} ({p.get('external_id') or p['id']})"
            if names.count(p["name"]) > 1
            else str(p["name"]),
            str(p["id"]),
        )
        for p in plans
    )


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
        # The plans the pickers offer, as last read: a form opens at once with these
        # (keys typed next must reach it) and takes the fresh list when it arrives.
        self.plans: list[ApiDict] = []

    # ------------------------------------------------------------------ plans list
    def remember_plans(self, plans: list[ApiDict]) -> None:
        self.plans = list(plans)

    def _offer_plans(
        self, form: FormScreen, then: Callable[[FormScreen], None] | None = None
    ) -> None:
        """Read the plans and give the form's picker the current list (and `then` the
        form, for what else depends on the plans)."""

        async def load() -> None:
            try:
                self.remember_plans(await self._backend.plans())
            except (ApiError, GatewayUnavailable):
                return  # the picker keeps what it has; the service checks the choice
            if form.is_attached:
                form.set_choices("plan", plan_choices(self.plans))
                if then is not None:
                    then(form)

        self._app.run_worker(load(), group="plans", exit_on_error=False)

    def _plan_name(self, plan_id: str | None) -> str:
        found = next((p for p in self.plans if p.get("id") == plan_id), None)
        return str(found["name"]) if found else str(plan_id or "")

    # ------------------------------------------------------------------ customers
    def open_customer(self, customer_id: str) -> None:
        self._app.post_message(CustomerSelected(customer_id))

    def new_customer(self) -> None:
        async def create(body: ApiDict) -> ApiDict:
            if body.get("prepaid") is False:
                # Unticked is "not set": a customer on a prepaid plan takes its wallet.
                del body["prepaid"]
            return await self._backend.create_customer(body)

        def done(result: ApiDict | None) -> None:
            if result:
                on_plan = (
                    f" on plan {self._plan_name(result['plan'])}" if result.get("plan") else ""
                )
                self._app.notify(f"Created customer {result['name']} ({result['id']}){on_plan}.")
                self._app.post_message(CustomerChanged(result["id"], "created"))

        form = FormScreen(
            "New customer",
            customer_fields(plan_choices(self.plans)),
            create,
            submit_label="Create",
            form_id="new-customer",
            intro="A postpaid customer is capped by its monthly budget (cost); "
            "a prepaid one is debited at price from its wallet. "
            "On a plan, blank fields take the plan's values.",
        )
        self._app.push_screen(form, done)
        self._offer_plans(form)

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

        def placeholders(form: FormScreen) -> None:
            """The plans arrived: say what each blank field means on this plan."""
            for f in self._limit_fields(c):
                form.set_placeholder(f.name, f.placeholder)

        form = FormScreen(
            f"Limits of {c.name}",
            self._limit_fields(c),
            update,
            form_id="limits",
            only_changed=True,
            intro="The customer's own settings; blank means its plan's value, or none "
            "(no cap, the global markup, no alert, no rate limit).",
        )
        self._app.push_screen(form, done)
        self._offer_plans(form, placeholders if c.plan_id is not None else None)

    def _limit_fields(self, c: CustomerRow) -> list[Field]:
        """The edit form's fields: the customer's own values, and for a customer on a plan
        what a blank field means (the plan's value), from the plans last read."""
        plan = next((p for p in self.plans if p.get("id") == c.plan_id), None)
        fallback: dict[str, str] = {}
        choices = plan_choices(self.plans)
        if c.plan_id is not None and plan is None:  # not read yet: the list follows
            choices += ((c.plan_name or c.plan_id, c.plan_id),)
            fallback = dict.fromkeys(("budget", "markup", "threshold", *LIMIT_NAMES), "the plan's")
        if plan is not None:
            plan_limits = plan.get("limits") or {}
            for key, name in (
                ("budget", "monthly_budget_usd"),
                ("markup", "markup"),
                ("threshold", "low_balance_threshold_usd"),
            ):
                if plan.get(name) is not None:
                    value = api_text(plan[name])
                    fallback[key] = f"plan's {'$' if key != 'markup' else ''}{value}"
            for limit in LIMIT_NAMES:
                if plan_limits.get(limit) is not None:
                    fallback[limit] = f"plan's {plan_limits[limit]:,}"
        own = c.own_limits
        return limit_fields(
            _plain_usd(c.own_budget_nanos),
            c.own_markup or "",
            _plain_usd(c.own_threshold_nanos),
            plan=c.plan_id or "",
            plans=choices,
            limits={name: str(n) for name in LIMIT_NAMES if (n := own.get(name)) is not None},
            fallback=fallback,
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

    # ------------------------------------------------------------------ plans
    def new_plan(self) -> None:
        async def create(body: ApiDict) -> ApiDict:
            if body.get("prepaid") is False:
                del body["prepaid"]  # unticked is "not set": the customer's own decides
            return await self._backend.create_plan(body)

        def done(result: ApiDict | None) -> None:
            if result:
                self._app.notify(f"Created plan {result['name']} ({result['id']}).")
                self._app.post_message(ViewInvalidated())

        self._app.push_screen(
            FormScreen(
                "New plan",
                plan_fields(),
                create,
                submit_label="Create",
                form_id="plan",
                intro="Defaults for the customers on it; a customer's own value wins, "
                "field by field. Blank means the plan does not set it.",
            ),
            done,
        )

    def edit_plan(self, plan: ApiDict) -> None:
        plan_id = str(plan["id"])

        async def update(body: ApiDict) -> ApiDict:
            return await self._backend.update_plan(plan_id, body)

        def done(result: ApiDict | None) -> None:
            if result:
                self._app.notify(f"Updated plan {result['name']}.")
                self._app.post_message(ViewInvalidated())

        limits = plan.get("limits") or {}
        initial = {
            name: api_text(plan.get(name))
            for name in (
                "name",
                "external_id",
                "monthly_budget_usd",
                "markup",
                "low_balance_threshold_usd",
                "allowed_models",
            )
        }
        customers = int(plan.get("customers") or 0)
        self._app.push_screen(
            FormScreen(
                f"Plan {plan['name']}",
                plan_fields(
                    {**initial, "prepaid": bool(plan.get("prepaid"))},
                    {n: str(limits[n]) for n in LIMIT_NAMES if limits.get(n) is not None},
                ),
                update,
                form_id="plan",
                only_changed=True,
                intro=f"Applies to its {customers:,} customer(s) from their next call, "
                "where their own value does not override it. Blank means not set.",
            ),
            done,
        )

    def confirm_delete_plan(self, plan: ApiDict) -> None:
        plan_id, name = str(plan["id"]), str(plan["name"])
        customers = int(plan.get("customers") or 0)

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._run(lambda: self._backend.delete_plan(plan_id), f"Deleted plan {name}.", None)

        in_use = (
            f" {customers:,} customer(s) are on it: the gateway refuses until they move."
            if customers
            else ""
        )
        self._app.push_screen(
            ConfirmScreen(f"Delete plan {name}?{in_use}", confirm_label="Delete", danger=True),
            confirmed,
        )

    # ------------------------------------------------------------------ keys
    def create_key(self) -> None:
        async def create(body: ApiDict) -> ApiDict:
            return await self._backend.create_key(body)

        def done(result: ApiDict | None) -> None:
            if result:
                self._app.post_message(KeysChanged(result["id"]))
                self._app.push_screen(
                    KeyCreatedScreen(
                        result["name"],
                        result["key"],
                        str(result.get("kind") or "app"),
                        result.get("expires_at"),
                    )
                )

        self._app.push_screen(
            FormScreen(
                "New API key",
                key_fields(),
                create,
                submit_label="Create",
                form_id="key",
                intro="App keys call the proxy; read, billing and admin keys call the "
                "management API. Give each system the least it needs.",
            ),
            done,
        )

    def confirm_revoke(self, key_id: str, name: str, kind: str = "app") -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                self._run(
                    lambda: self._backend.revoke_key(key_id),
                    f"Revoked {kind} key '{name}'.",
                    None,
                )

        self._app.push_screen(
            ConfirmScreen(
                f"Revoke {kind} key '{name}'? Calls using it get 401 at once.",
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
