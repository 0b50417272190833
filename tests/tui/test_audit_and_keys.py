"""Scoped keys and the audit log on the dashboard: every dashboard write is audited as
`dashboard`, the customer detail shows the customer's latest audit entries (one query a
refresh), and the Keys screen shows and creates keys of every kind, with an expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from textual.widgets import Select, Static

from gateway.audit import DASHBOARD, Actor
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.backend import Backend
from ringside_tui.dialogs import ConfirmScreen, FormScreen, KeyCreatedScreen, parse_expiry
from ringside_tui.screens.detail import (
    AUDIT_LIMIT,
    CustomerDetailScreen,
    audit_changes,
    audit_who,
)
from ringside_tui.widgets.diff_table import DiffTable
from tests.tui.helpers import (
    call,
    column,
    make_customer,
    raw,
    rows,
    screen_text,
    services,
    wait_refreshes,
    wait_until,
)

SIZE = (120, 36)
AppFactory = Callable[..., RingsideApp]


def table(app: RingsideApp, table_id: str) -> DiffTable[Any]:
    return app.screen.query_one(f"#{table_id}", DiffTable)


async def audit_entries(rt: Runtime, **params: str) -> list[dict[str, Any]]:
    page = await call(rt, services(rt).audit.list({"limit": "100", **params}))
    return list(page.data)


# ---------------------------------------------------------------------------- who wrote


async def test_every_dashboard_write_is_audited_as_dashboard(runtime: Runtime) -> None:
    """Each write the Backend makes reaches the audit log as key kind `dashboard`."""
    assert runtime.gateway is not None
    hooks = services(runtime).webhooks
    endpoint = await call(runtime, hooks.create_endpoint({"url": "http://127.0.0.1:9/hook"}))
    before = {e["id"] for e in await audit_entries(runtime)}
    backend = Backend.for_gateway(runtime.gateway)

    customer = await backend.create_customer({"name": "Acme Corp", "external_id": "acme"})
    await backend.update_customer(customer["id"], {"markup": Decimal("1.5")})
    await backend.topup(customer["id"], {"amount_usd": Decimal(5)})
    await backend.update_customer(customer["id"], {"status": "suspended"})
    await backend.archive_customer(customer["id"])
    plan = await backend.create_plan({"name": "Pro"})
    await backend.update_plan(plan["id"], {"markup": Decimal("1.2")})
    await backend.delete_plan(plan["id"])
    key = await backend.create_key({"name": "backend", "kind": "read"})
    await backend.revoke_key(key["id"])
    await backend.set_endpoint_enabled(endpoint["id"], False)

    made = [e for e in await audit_entries(runtime) if e["id"] not in before]
    assert sorted(e["action"] for e in made) == sorted(
        [
            "customer.created",
            "customer.updated",
            "wallet.topup",
            "customer.suspended",
            "customer.archived",
            "plan.created",
            "plan.updated",
            "plan.deleted",
            "key.created",
            "key.revoked",
            "webhook_endpoint.updated",
        ]
    )
    assert {(e["key_kind"], e["key_id"]) for e in made} == {("dashboard", None)}
    topup = next(e for e in made if e["action"] == "wallet.topup")
    assert topup["customer_id"] == customer["id"]


async def test_a_top_up_typed_in_the_dashboard_is_audited_as_dashboard(
    runtime: Runtime, make_app: AppFactory
) -> None:
    c = await make_customer(runtime, "umbrella", "Umbrella Labs", prepaid=True)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.actions.open_topup(c["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="top-up form")
        await pilot.press(*"12.5", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="saved")
    entries = await audit_entries(runtime, customer_id="umbrella", action="wallet.topup")
    assert len(entries) == 1
    (entry,) = entries
    assert entry["key_kind"] == "dashboard" and entry["key_id"] is None
    assert {k: [raw(v) for v in pair] for k, pair in entry["changes"].items()} == {
        "balance_usd": ["0", "12.5"]
    }


# ---------------------------------------------------------------------------- detail


def test_audit_who_and_changes_read_compactly() -> None:
    assert audit_who({"key_kind": "dashboard", "key_id": None}) == "dashboard"
    assert audit_who({"key_kind": "admin", "key_id": None}) == "bootstrap admin"
    assert audit_who({"key_kind": "system", "key_id": None}) == "system"
    assert (
        audit_who({"key_kind": "billing", "key_id": "key_0abcdefghij12345678"})
        == "billing key_12345678"
    )
    assert (
        audit_changes(
            {
                "action": "customer.updated",
                "changes": {
                    "monthly_budget_usd": [Decimal(5), Decimal("7.25")],
                    "markup": [None, "1.3"],
                    "prepaid": [False, True],
                    "limits": [None, {"requests_per_minute": 60}],
                    "allowed_models": [["mock/*"], []],
                },
            }
        )
        == "monthly_budget_usd 5 → 7.25 · markup — → 1.3 · prepaid no → yes · "
        "limits — → {requests_per_minute: 60} · allowed_models mock/* → []"
    )
    created = {"action": "customer.created", "changes": {"name": [None, "Acme"]}}
    assert audit_changes(created) == "name Acme"
    assert audit_changes({"action": "customer.archived", "changes": None}) == ""


async def test_detail_shows_the_latest_audit_entries_and_follows_changes(
    runtime: Runtime, make_app: AppFactory
) -> None:
    c = await make_customer(runtime, "umbrella", "Umbrella Labs", prepaid=True)
    billing = await call(
        runtime, services(runtime).keys.create({"name": "billing", "kind": "billing"})
    )
    by_billing = Actor("billing", key_id=billing["id"])
    wallets, customers = services(runtime).wallets, services(runtime).customers
    for amount in (10, 5, 5):
        await call(
            runtime, wallets.topup("umbrella", {"amount_usd": Decimal(amount)}, actor=by_billing)
        )
    await call(runtime, customers.update("umbrella", {"markup": Decimal("1.3")}, Actor("admin")))
    await call(runtime, customers.update("umbrella", {"monthly_budget_usd": Decimal(5)}, DASHBOARD))
    await call(
        runtime,
        customers.update("umbrella", {"monthly_budget_usd": Decimal("7.25")}, Actor("admin")),
    )
    # Another customer's entries stay out of this one's detail.
    await make_customer(runtime, "globex", "Globex")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # Count the audit reads: one per refresh of the detail.
        reads = 0
        read_audit = app.backend.audit

        async def counted(customer_id: str, limit: int) -> list[dict[str, Any]]:
            nonlocal reads
            reads += 1
            assert limit == AUDIT_LIMIT
            return await read_audit(customer_id, limit)

        app.backend.audit = counted  # type: ignore[method-assign]
        app.open_customer(c["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen), what="detail")
        await wait_until(
            pilot,
            lambda: table(app, "audit-table").row_count == AUDIT_LIMIT,
            what="audit rows",
        )
        audit = table(app, "audit-table")
        # Seven entries: the newest six, newest first; the creation is left out.
        assert column(audit, 1) == [
            "customer.updated",
            "customer.updated",
            "customer.updated",
            "wallet.topup",
            "wallet.topup",
            "wallet.topup",
        ]
        short = f"billing key_{billing['id'][-8:]}"
        assert column(audit, 2) == ["bootstrap admin", "dashboard", "bootstrap admin"] + [short] * 3
        assert column(audit, 3)[:3] == [
            "monthly_budget_usd 5 → 7.25",
            "monthly_budget_usd — → 5",
            "markup — → 1.3",
        ]
        assert column(audit, 3)[3:] == [
            "balance_usd 15 → 20",
            "balance_usd 10 → 15",
            "balance_usd 0 → 10",
        ]
        assert all(len(when) == len("04-15 12:30:05") for when in column(audit, 0))
        # An action typed in the detail lands in the box, as the dashboard's.
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="top-up form")
        await pilot.press(*"2.5", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen), what="back")
        await wait_until(
            pilot,
            lambda: rows(audit)[0][1:] == ["wallet.topup", "dashboard", "balance_usd 20 → 22.5"],
            what="the dashboard's top-up, first",
        )
        assert audit.row_count == AUDIT_LIMIT
        await wait_refreshes(app, pilot, "detail", 2)
        done = app.refresh_loop.count_by_view["detail"]
        # Every applied refresh read once; a refresh still loading may have read too.
        assert reads in (done, done + 1)


# ---------------------------------------------------------------------------- keys


def test_parse_expiry_takes_durations_dates_and_times() -> None:
    now = datetime(2026, 4, 15, 12, 30, tzinfo=UTC)
    assert parse_expiry("90d", now) == "2026-07-14T12:30:00Z"
    assert parse_expiry("12h", now) == "2026-04-16T00:30:00Z"
    assert parse_expiry("2w", now) == "2026-04-29T12:30:00Z"
    assert parse_expiry("2027-01-01") == "2027-01-01T00:00:00Z"
    assert parse_expiry("2027-01-01 09:15") == "2027-01-01T09:15:00Z"
    assert parse_expiry("2027-01-01T09:15:00+02:00") == "2027-01-01T07:15:00Z"
    assert parse_expiry("2027-01-01T09:15:00Z") == "2027-01-01T09:15:00Z"
    assert parse_expiry("soon") is None
    assert parse_expiry("90 years") is None
    assert parse_expiry("99999999w", now) is None  # past year 9999
    assert parse_expiry("10000-01-01") is None


async def test_keys_screen_shows_kind_and_expiry(runtime: Runtime, make_app: AppFactory) -> None:
    keys = services(runtime).keys
    await call(runtime, keys.create({"name": "backend"}))
    await call(
        runtime,
        keys.create({"name": "BI export", "kind": "read", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    soon = datetime.fromtimestamp(time.time() + 1.5, UTC).isoformat().replace("+00:00", "Z")
    await call(runtime, keys.create({"name": "ops", "kind": "admin", "expires_at": soon}))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        t = table(app, "keys-table")
        await wait_until(pilot, lambda: t.row_count == 3, what="key rows")
        by_name = {r[0]: r for r in rows(t)}
        assert by_name["backend"][1:2] == ["app"] and by_name["backend"][6] == "never"
        assert by_name["BI export"][1] == "read"
        assert by_name["BI export"][6] == "2099-01-01 00:00"
        assert by_name["ops"][1] == "admin"
        # The admin key's expiry passes: the row says so (on the key service's clock).
        await wait_until(
            pilot,
            lambda: {r[0]: r[6] for r in rows(t)}["ops"].startswith("expired "),
            what="expired shown",
        )
        intro = str(app.screen.query_one("#keys-intro", Static).render())
        assert "billing" in intro and "read" in intro


async def test_create_a_billing_key_with_an_expiry(runtime: Runtime, make_app: AppFactory) -> None:
    await make_customer(runtime, "acme", "Acme Corp")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        t = table(app, "keys-table")
        await wait_until(pilot, lambda: app.focused is t, what="keys focus")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="key form")
        form = app.screen
        assert isinstance(form, FormScreen)
        picker = form.query_one("#field-kind", Select)
        assert picker.value == "app"  # the default, and no "none" to pick
        assert [value for _, value in picker._options] == ["app", "read", "billing", "admin"]
        await pilot.press(*"billing backend", "tab")
        assert form.focused is picker
        await pilot.press("enter")  # opens the list
        await wait_until(pilot, lambda: picker.expanded, what="list open")
        await pilot.press("down", "down", "enter")  # app -> read -> billing
        await wait_until(pilot, lambda: picker.value == "billing", what="billing picked")
        # A local error first, then the service's (the past), under the field.
        await pilot.press("tab", *"soon", "enter")
        error = form.query_one("#error-expires_at", Static)
        await wait_until(pilot, lambda: "must be a date" in str(error.render()), what="local")
        expires = form.query_one("#field-expires_at")
        expires.value = "2020-01-01"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "in the past" in str(error.render()), what="service error")
        expires.value = "90d"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="shown")
        shown = app.screen
        assert isinstance(shown, KeyCreatedScreen)
        key = shown.key
        assert "Billing key 'billing backend' created" in screen_text(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: t.row_count == 1, what="key row")
        assert rows(t)[0][1] == "billing"
        assert rows(t)[0][6][:4].isdigit()  # a date, not "never"

        (listed,) = await call(runtime, services(runtime).keys.list())
        assert listed["kind"] == "billing"
        expires_at = datetime.fromisoformat(listed["expires_at"].replace("Z", "+00:00"))
        assert 89 < (expires_at - datetime.now(UTC)).total_seconds() / 86400 < 91
        (created,) = await audit_entries(runtime, action="key.created")
        assert created["key_kind"] == "dashboard"
        # A billing key manages customers, and never calls the proxy.
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            auth = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/v1/customers", headers=auth)).status_code == 200
            proxy = await client.post(
                "/v1/chat/completions",
                headers={**auth, "FC-Customer": "acme"},
                json={"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "x"}]},
            )
            assert proxy.status_code == 403

        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        assert "Revoke billing key 'billing backend'?" in screen_text(app)
        await pilot.press("y")
        await wait_until(pilot, lambda: t.row_count == 0, what="revoked")
    async with httpx.AsyncClient(base_url=runtime.base_url) as client:
        gone = await client.get("/v1/customers", headers={"Authorization": f"Bearer {key}"})
        assert gone.status_code == 401
    revoked = await audit_entries(runtime, action="key.revoked")
    assert [e["key_kind"] for e in revoked] == ["dashboard"]
