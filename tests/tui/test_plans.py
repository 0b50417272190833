"""Plans and rate limits on the dashboard: the Plans tab and its dialogs, the plan picker
in the customer forms, 429s on the Overview, live rate-limit use on the customer detail,
and the customers snapshot's effective terms (a plan customer's budget is the plan's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from textual.widgets import Input, Select, Static

from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.dialogs import ConfirmScreen, FormScreen
from ringside_tui.screens.detail import CustomerDetailScreen
from ringside_tui.widgets.diff_table import DiffTable
from tests.conftest import ADMIN_KEY
from tests.tui.helpers import (
    call,
    make_customer,
    proxy_chat,
    raw,
    retrieve,
    screen_text,
    services,
    wait_until,
)

SIZE = (120, 36)
USD = 1_000_000_000
AppFactory = Callable[..., RingsideApp]


def table(app: RingsideApp, table_id: str) -> DiffTable[Any]:
    return app.screen.query_one(f"#{table_id}", DiffTable)


def static_text(app: RingsideApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def toasts(app: RingsideApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def make_plan(rt: Runtime, name: str, **body: Any) -> dict[str, Any]:
    return await call(rt, services(rt).plans.create({"name": name, **body}))


async def plans_tab(app: RingsideApp, pilot: Any) -> DiffTable[Any]:
    await pilot.press("7")
    t = table(app, "plans-table")
    await wait_until(pilot, lambda: app.focused is t, what="plans table focus")
    return t


async def open_form(app: RingsideApp, pilot: Any, *keys: str) -> FormScreen:
    await pilot.press(*keys)
    await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="form")
    assert isinstance(app.screen, FormScreen)
    return app.screen


# ---------------------------------------------------------------------------- plans tab


async def test_plans_tab_lists_plans_with_their_customer_counts(
    runtime: Runtime, make_app: AppFactory
) -> None:
    pro = await make_plan(
        runtime,
        "Pro",
        external_id="pro",
        monthly_budget_usd=Decimal(100),
        allowed_models=["mock/*", "openai/gpt-4o-mini"],
        limits={"requests_per_minute": 60, "max_concurrent": 4},
    )
    starter = await make_plan(runtime, "Starter", prepaid=True)
    await make_customer(runtime, "acme", "Acme Corp", plan="pro")
    await make_customer(runtime, "globex", "Globex", plan=pro["id"])
    await make_customer(runtime, "initech", "Initech")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await plans_tab(app, pilot)
        await wait_until(pilot, lambda: t.row_count == 2, what="2 plans")
        assert t.cell_text(pro["id"], "name") == "Pro"
        assert t.cell_text(pro["id"], "customers").strip() == "2"
        assert t.cell_text(starter["id"], "customers").strip() == "0"
        assert t.cell_text(pro["id"], "budget").strip() == "$100.00"
        assert t.cell_text(pro["id"], "rpm").strip() == "60"
        assert t.cell_text(pro["id"], "concurrent").strip() == "4"
        assert t.cell_text(pro["id"], "tpm").strip() == "—"
        assert t.cell_text(starter["id"], "prepaid") == "yes"
        assert t.cell_text(starter["id"], "models") == "all"
        # The selected plan in full below the table, models and all.
        t.move_cursor(row=t.get_row_index(pro["id"]))
        await wait_until(
            pilot,
            lambda: "mock/*, openai/gpt-4o-mini" in static_text(app, "#plan-detail"),
            what="plan detail",
        )
        assert "2 customer(s)" in static_text(app, "#plan-detail")
        # A customer moving onto the plan shows in its count.
        await call(runtime, services(runtime).customers.update("initech", {"plan": "pro"}))
        await wait_until(
            pilot, lambda: t.cell_text(pro["id"], "customers").strip() == "3", what="count 3"
        )


async def test_create_plan_through_the_dialog(runtime: Runtime, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await plans_tab(app, pilot)
        await open_form(app, pilot, "n")
        await pilot.press(*"Pro", "tab", *"pro", "tab", *"100", "tab", *"1.4", "tab", "tab")
        await pilot.press("tab", *"mock/*, openai/gpt-4o-mini", "tab", *"60", "tab")
        await pilot.press(*"100,000", "tab", *"4", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        plans = await call(runtime, services(runtime).plans.list_all())
        assert len(plans) == 1
        plan = plans[0]
        assert (plan["name"], plan["external_id"]) == ("Pro", "pro")
        assert raw(plan["monthly_budget_usd"]) == "100"
        assert raw(plan["markup"]) == "1.4"
        assert plan["prepaid"] is None  # unticked: left to the customer
        assert plan["allowed_models"] == ["mock/*", "openai/gpt-4o-mini"]
        assert plan["limits"] == {
            "requests_per_minute": 60,
            "tokens_per_minute": 100_000,
            "max_concurrent": 4,
        }
        await wait_until(pilot, lambda: plan["id"] in t.item_keys, what="row for the new plan")


async def test_plan_form_shows_local_and_service_errors(
    runtime: Runtime, make_app: AppFactory
) -> None:
    await make_plan(runtime, "Pro", external_id="pro")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await plans_tab(app, pilot)
        form = await open_form(app, pilot, "n")
        form.query_one("#field-name", Input).value = "Other"
        form.query_one("#field-limits-requests_per_minute", Input).value = "lots"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "must be a whole number" in screen_text(app), what="int")
        form.query_one("#field-limits-requests_per_minute", Input).value = ""
        form.query_one("#field-allowed_models", Input).value = "gpt 4"
        await pilot.press("ctrl+s")
        # The service names `allowed_models[0]`: the message lands under the field.
        await wait_until(pilot, lambda: "allowed_models[0]" in screen_text(app), what="pattern")
        form.query_one("#field-allowed_models", Input).value = ""
        form.query_one("#field-external_id", Input).value = "pro"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "already exists" in screen_text(app), what="409")
        assert isinstance(app.screen, FormScreen)
        assert len(await call(runtime, services(runtime).plans.list_all())) == 1


async def test_edit_plan_merges_limits(runtime: Runtime, make_app: AppFactory) -> None:
    plan = await make_plan(
        runtime,
        "Pro",
        monthly_budget_usd=Decimal(100),
        limits={"requests_per_minute": 60, "max_concurrent": 4},
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await plans_tab(app, pilot)
        await wait_until(pilot, lambda: t.row_count == 1, what="plan row")
        form = await open_form(app, pilot, "e")
        assert form.query_one("#field-monthly_budget_usd", Input).value == "100"
        assert form.query_one("#field-limits-max_concurrent", Input).value == "4"
        form.query_one("#field-monthly_budget_usd", Input).value = "250"
        form.query_one("#field-limits-max_concurrent", Input).value = ""  # removes it
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        after = await call(runtime, services(runtime).plans.retrieve(plan["id"]))
        assert raw(after["monthly_budget_usd"]) == "250"
        assert after["limits"] == {
            "requests_per_minute": 60,  # untouched: kept
            "tokens_per_minute": None,
            "max_concurrent": None,
        }
        await wait_until(
            pilot, lambda: t.cell_text(plan["id"], "budget").strip() == "$250.00", what="row"
        )


async def test_delete_plan_in_use_is_refused_with_a_notification(
    runtime: Runtime, make_app: AppFactory
) -> None:
    plan = await make_plan(runtime, "Pro", external_id="pro")
    await make_customer(runtime, "acme", "Acme Corp", plan="pro")
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        t = await plans_tab(app, pilot)
        await wait_until(pilot, lambda: t.row_count == 1, what="plan row")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        assert "1 customer(s) are on it" in screen_text(app)
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: any("is used by 1 customer" in m for m in toasts(app)),
            what="plan_in_use toast",
        )
        assert app.is_running and app.refresh_loop.last_error is None
        assert len(await call(runtime, services(runtime).plans.list_all())) == 1
        assert t.row_count == 1
        # Once its customer moves off it, the plan goes.
        await call(runtime, services(runtime).customers.update("acme", {"plan": None}))
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: t.row_count == 0, what="plan gone")
        assert await call(runtime, services(runtime).plans.list_all()) == []
        assert any(f"Deleted plan {plan['name']}" in m for m in toasts(app))


# ---------------------------------------------------------------------------- customers


async def test_new_customer_form_plan_picker_attaches_a_plan(
    runtime: Runtime, make_app: AppFactory
) -> None:
    await make_plan(runtime, "Basic")
    pro = await make_plan(runtime, "Pro", monthly_budget_usd=Decimal(100), prepaid=True)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        form = await open_form(app, pilot, "n")
        picker = form.query_one("#field-plan", Select)
        # The plans arrive after the form opened: none, Basic, Pro.
        await wait_until(
            pilot, lambda: len(picker._options) == 3, what="plans offered in the picker"
        )
        await pilot.press(*"Wayne", "tab", *"wayne", "tab", "tab", "tab", "tab", "tab", "tab")
        assert app.screen.focused is picker
        await pilot.press("enter")  # opens the list
        await wait_until(pilot, lambda: picker.expanded, what="list open")
        await pilot.press("down", "down", "enter")  # none -> Basic -> Pro
        await wait_until(pilot, lambda: picker.value == pro["id"], what="Pro picked")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        created = await retrieve(runtime, "wayne")
        assert created["plan"] == pro["id"]
        assert created["monthly_budget_usd"] is None  # its own: unset
        assert raw(created["effective"]["monthly_budget_usd"]) == "100"  # the plan's
        # The unticked "Prepaid wallet" box is not an override: the plan's prepaid applies.
        assert created["prepaid"] is None and created["effective"]["prepaid"] is True
        t = app.views.customers.table
        await wait_until(pilot, lambda: created["id"] in t.item_keys, what="row")
        await wait_until(pilot, lambda: t.cell_text(created["id"], "plan") == "Pro", what="plan")
        # The plan's budget is the customer's: the budget bar, not "no budget".
        assert t.cell_text(created["id"], "budget").strip() == "0%"


async def test_edit_form_moves_a_customer_between_plans_and_sets_own_limits(
    runtime: Runtime, make_app: AppFactory
) -> None:
    await make_plan(runtime, "Pro", external_id="pro", limits={"requests_per_minute": 60})
    basic = await make_plan(runtime, "Basic")
    c = await make_customer(runtime, "acme", "Acme Corp", plan="pro")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        t = app.views.customers.table
        await wait_until(pilot, lambda: c["id"] in t.item_keys, what="row")
        t.move_cursor(row=t.get_row_index(c["id"]))
        t.focus()
        form = await open_form(app, pilot, "e")
        picker = form.query_one("#field-plan", Select)
        await wait_until(pilot, lambda: len(picker._options) == 3, what="plans offered")
        rpm = form.query_one("#field-limits-requests_per_minute", Input)
        assert rpm.value == "" and "plan's 60" in rpm.placeholder
        picker.value = basic["id"]
        rpm.value = "5"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        after = await retrieve(runtime, "acme")
        assert after["plan"] == basic["id"]
        assert after["limits"]["requests_per_minute"] == 5
        await wait_until(pilot, lambda: t.cell_text(c["id"], "plan") == "Basic", what="Basic")
        # Back to no plan: "none" sends null.
        form = await open_form(app, pilot, "e")
        assert form.query_one("#field-limits-requests_per_minute", Input).value == "5"
        form.query_one("#field-plan", Select).value = ""
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        assert (await retrieve(runtime, "acme"))["plan"] is None
        await wait_until(pilot, lambda: t.cell_text(c["id"], "plan") == "", what="no plan")


async def test_a_plan_change_reaches_its_customers_rows(
    runtime: Runtime, make_app: AppFactory
) -> None:
    """A plan's new budget is every one of its customers' at once: the bus names the plan,
    not them, so the customers table re-reads them all (not at the next full read, up to
    ten seconds later)."""
    plan = await make_plan(runtime, "Pro", external_id="pro")
    c = await make_customer(runtime, "acme", "Acme Corp", plan="pro")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        t = app.views.customers.table
        await wait_until(pilot, lambda: c["id"] in t.item_keys, what="row")
        assert t.cell_text(c["id"], "budget") == "no budget"
        await call(runtime, services(runtime).plans.update(plan["id"], {"monthly_budget_usd": 100}))
        await wait_until(
            pilot,
            lambda: t.cell_text(c["id"], "budget").strip() == "0%",
            within=4,
            what="the plan's budget on its customer's row",
        )


async def test_snapshot_rows_carry_effective_terms(runtime: Runtime) -> None:
    """The customers table's rows take a plan's money terms where the customer sets none,
    as the gateway's own merge (`effective` in the API) does."""
    await make_plan(
        runtime,
        "Pro",
        external_id="pro",
        monthly_budget_usd=Decimal(100),
        markup=Decimal("1.5"),
        low_balance_threshold_usd=Decimal(5),
        prepaid=True,
    )
    await make_plan(runtime, "Bare", external_id="bare")
    specs: list[tuple[str, dict[str, Any]]] = [
        ("plain", {}),
        ("own", {"monthly_budget_usd": Decimal(7), "prepaid": True}),
        ("onpro", {"plan": "pro"}),
        (
            "mixed",
            {"plan": "pro", "monthly_budget_usd": Decimal(250), "markup": Decimal("1.2")},
        ),
        ("postpaid", {"plan": "pro", "prepaid": False}),
        ("bare", {"plan": "bare", "low_balance_threshold_usd": Decimal(3)}),
    ]
    for ext, body in specs:
        await make_customer(runtime, ext, ext.title(), **body)
    rows, _, _ = await call(runtime, services(runtime).snapshots.customers())
    by_ext = {r.external_id: r for r in rows}
    for ext, _ in specs:
        row = by_ext[ext]
        effective = (await retrieve(runtime, ext))["effective"]

        def nanos(value: Any) -> int | None:
            return None if value is None else int(Decimal(raw(value)) * USD)

        assert row.budget_nanos == nanos(effective["monthly_budget_usd"]), ext
        assert row.threshold_nanos == nanos(effective["low_balance_threshold_usd"]), ext
        assert row.prepaid is effective["prepaid"], ext
        got = None if row.markup is None else Decimal(row.markup)
        want = None if effective["markup"] is None else Decimal(raw(effective["markup"]))
        assert got == want, ext
    assert by_ext["onpro"].budget_nanos == 100 * USD and by_ext["onpro"].prepaid
    assert by_ext["onpro"].wallet_nanos == 0  # prepaid through its plan: a wallet, empty
    assert by_ext["onpro"].state() == "wallet empty"
    assert by_ext["mixed"].budget_nanos == 250 * USD
    assert by_ext["mixed"].own_budget_nanos == 250 * USD
    assert by_ext["onpro"].own_budget_nanos is None
    assert (by_ext["onpro"].plan_name, by_ext["plain"].plan_name) == ("Pro", None)


# ---------------------------------------------------------------------------- overview


async def test_overview_counts_429s_next_to_402s(runtime: Runtime, make_app: AppFactory) -> None:
    await make_customer(runtime, "limited", "Limited", limits={"requests_per_minute": 1})
    await make_customer(runtime, "broke", "Broke", monthly_budget_usd=Decimal("0.0001"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: "402 0 · 429 0" in static_text(app, "#refused-label"),
            what="no refusals yet",
        )
        assert (await proxy_chat(runtime, "limited")).status_code == 200
        for _ in range(2):
            r = await proxy_chat(runtime, "limited")
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "customer_rate_limited"
        assert (await proxy_chat(runtime, "broke")).status_code == 402
        await wait_until(
            pilot,
            lambda: "402 1 · 429 2" in static_text(app, "#refused-label"),
            what="refusals counted by status",
        )
        assert "402 1 · 429 2" in screen_text(app)


# ---------------------------------------------------------------------------- detail


async def test_detail_shows_plan_limits_and_live_use(
    runtime: Runtime, make_app: AppFactory
) -> None:
    plan = await make_plan(
        runtime, "Pro", external_id="pro", limits={"max_concurrent": 2, "tokens_per_minute": 9000}
    )
    c = await make_customer(
        runtime, "acme", "Acme Corp", plan="pro", limits={"requests_per_minute": 10}
    )
    assert (await proxy_chat(runtime, "acme", tokens=50)).status_code == 200

    async def slow_call() -> httpx.Response:
        async with httpx.AsyncClient(base_url=runtime.base_url, timeout=30) as client:
            return await client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {ADMIN_KEY}", "FC-Customer": "acme"},
                json={
                    "model": "fc:mock/mock-fast",
                    "messages": [{"role": "user", "content": "hi [mock:sleep_ms=2500]"}],
                    "max_tokens": 20,
                },
            )

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_customer(c["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen), what="detail")

        def header() -> str:
            return static_text(app, "#detail-header")

        await wait_until(pilot, lambda: "0 / 2 in flight" in header(), what="nothing in flight")
        text = header()
        assert f"Plan: Pro ({plan['id']})" in text
        assert "1 / 10 requests/min (own)" in text
        assert "0 / 2 in flight (plan)" in text
        assert " / 9,000 tokens/min (plan)" in text
        assert "models: all models" in text
        pending = asyncio.create_task(slow_call())
        await wait_until(pilot, lambda: "1 / 2 in flight" in header(), what="one call in flight")
        assert "2 / 10 requests/min (own)" in header()
        assert (await pending).status_code == 200
        await wait_until(pilot, lambda: "0 / 2 in flight" in header(), what="slot released")
