"""Pilot tests: every screen and every action, asserting on widgets and on the database."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from textual.widgets import Input, Sparkline, TabbedContent

from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.dialogs import ConfirmScreen, FormScreen, KeyCreatedScreen
from ringside_tui.messages import TAB_LABELS
from ringside_tui.screens.detail import CustomerDetailScreen
from ringside_tui.screens.help import HelpScreen
from ringside_tui.widgets.diff_table import DiffTable
from tests.tui.helpers import (
    call,
    column,
    make_customer,
    proxy_chat,
    raw,
    retrieve,
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


async def select_customer(app: RingsideApp, pilot: Any, customer_id: str) -> None:
    t = app.views.customers.table
    await wait_until(pilot, lambda: customer_id in t.item_keys, what="customer row")
    t.move_cursor(row=t.get_row_index(customer_id))
    t.focus()
    await pilot.pause()


async def customers_tab(app: RingsideApp, pilot: Any) -> DiffTable[Any]:
    await pilot.press("2")
    t = app.views.customers.table
    await wait_until(pilot, lambda: app.focused is t, what="customers table focus")
    return t


# ---------------------------------------------------------------------------- overview


async def test_overview_shows_live_totals_top_customers_and_risk(
    runtime: Runtime, make_app: AppFactory
) -> None:
    acme = await make_customer(runtime, "acme", "Acme Corp", monthly_budget_usd=Decimal(100))
    await make_customer(runtime, "tiny", "Tiny Budget", monthly_budget_usd=Decimal("0.01"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        totals = table(app, "totals-table")
        await wait_until(pilot, lambda: totals.row_count == 2, what="totals rows")
        assert column(totals, 1) == ["0", "0"]
        for _ in range(3):
            assert (await proxy_chat(runtime, "acme", tokens=200)).status_code == 200
        # The bus pulls the next refresh forward: the totals move without a keypress.
        await wait_until(pilot, lambda: column(totals, 1) == ["3", "3"], what="3 requests")
        top = table(app, "top-table")
        await wait_until(pilot, lambda: acme["id"] in top.item_keys, what="top customer")
        assert top.cell_text(acme["id"], "name") == "Acme Corp"
        # Spend a tiny budget until the ledger refuses: the customer is at risk.
        for _ in range(10):
            r = await proxy_chat(runtime, "tiny", model="fc:mock/mock-smart", tokens=300)
            if r.status_code == 402:
                break
        assert r.status_code == 402
        risk = table(app, "risk-table")
        await wait_until(
            pilot,
            lambda: [r[:2] for r in rows(risk)] == [["Tiny Budget", "over budget"]],
            what="at-risk row",
        )
        spark = app.screen.query_one("#rps-spark", Sparkline)
        assert sum(spark.data or []) >= 3
        assert "Requests/s" in screen_text(app)


async def test_overview_top_customers_reorder_when_spend_changes(
    runtime: Runtime, make_app: AppFactory
) -> None:
    # The table is diffed in place by row key: the order must still follow the spend.
    first = await make_customer(runtime, "first", "First Spender")
    second = await make_customer(runtime, "second", "Second Spender")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        top = table(app, "top-table")

        def cost(c: dict[str, Any]) -> int:
            row = top.item(c["id"])
            return row.mtd_cost_nanos if row is not None else 0

        assert (await proxy_chat(runtime, "first", tokens=200)).status_code == 200
        assert (await proxy_chat(runtime, "second", tokens=20)).status_code == 200
        await wait_until(pilot, lambda: cost(second) > 0, what="both customers shown")
        assert column(top, 0) == ["First Spender", "Second Spender"]
        for _ in range(3):
            assert (await proxy_chat(runtime, "second", tokens=200)).status_code == 200
        await wait_until(pilot, lambda: cost(second) > cost(first), what="second overtakes")
        assert column(top, 0) == ["Second Spender", "First Spender"]


# ---------------------------------------------------------------------------- customers


async def test_customers_table_sorts_and_filters_by_typing(
    runtime: Runtime, make_app: AppFactory
) -> None:
    for ext, name in (("acme", "Acme Corp"), ("globex", "Globex"), ("initech", "Initech")):
        await make_customer(runtime, ext, name)
    await proxy_chat(runtime, "globex", model="fc:mock/mock-smart", tokens=500)
    await proxy_chat(runtime, "acme", tokens=20)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        await wait_until(pilot, lambda: t.row_count == 3, what="3 customers")
        # Default: MTD cost, highest first.
        await wait_until(pilot, lambda: column(t, 0)[0] == "Globex", what="sorted by cost")
        assert column(t, 0) == ["Globex", "Acme Corp", "Initech"]
        await pilot.press("o")  # the next column (MTD price), ascending
        assert t.sort_column == "price" and not t.sort_reverse
        assert column(t, 0) == ["Initech", "Acme Corp", "Globex"]
        t.set_sort("external_id")  # what a header click does
        assert column(t, 1) == ["acme", "globex", "initech"]
        t.set_sort("external_id")  # the same header again: reversed
        assert column(t, 1) == ["initech", "globex", "acme"]
        await pilot.press("slash", *"glo")
        await wait_until(pilot, lambda: t.row_count == 1, what="filtered to one row")
        assert column(t, 0) == ["Globex"]
        await pilot.press("escape")
        await wait_until(pilot, lambda: t.row_count == 3, what="filter cleared")


async def test_create_customer_with_keystrokes(runtime: Runtime, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="form")
        await pilot.press(*"Globex", "tab", *"globex", "tab", *"ap@globex.test", "tab")
        await pilot.press(*"250", "tab", *"1.4", "tab", *"20", "tab", "space", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        created = await retrieve(runtime, "globex")
        assert created["name"] == "Globex"
        assert created["email"] == "ap@globex.test"
        assert raw(created["monthly_budget_usd"]) == "250"
        assert raw(created["markup"]) == "1.4"
        assert created["prepaid"] is True
        assert created["low_balance_threshold_usd"] is not None
        await wait_until(pilot, lambda: created["id"] in t.item_keys, what="row for new customer")
        assert t.cell_text(created["id"], "status") == "wallet empty"  # prepaid, no top-up yet


async def test_create_customer_shows_validation_and_service_errors(
    runtime: Runtime, make_app: AppFactory
) -> None:
    await make_customer(runtime, "acme", "Acme Corp")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="form")
        form = app.screen
        await pilot.press("enter")  # nothing typed
        text = screen_text(app)
        assert "Name is required." in text
        assert "External id is required." in text
        await pilot.press(*"Other", "tab", *"acme", "tab", "tab", *"lots", "enter")
        await pilot.pause()
        assert "must be a number" in screen_text(app)
        form.query_one("#field-monthly_budget_usd", Input).value = "10"
        await pilot.press("enter")
        # The service refuses the duplicate external id; the form shows it under the field.
        await wait_until(pilot, lambda: "already" in screen_text(app), what="409 from the service")
        assert isinstance(app.screen, FormScreen)
        page = await call(runtime, services(runtime).customers.list({}))
        assert [c["name"] for c in page.data] == ["Acme Corp"]
        await pilot.press("escape")
        assert not isinstance(app.screen, FormScreen)


async def test_top_up_from_the_table(runtime: Runtime, make_app: AppFactory) -> None:
    c = await make_customer(runtime, "umbrella", "Umbrella Labs", prepaid=True)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        await select_customer(app, pilot, c["id"])
        assert t.cell_text(c["id"], "wallet").strip() == "$0.00"
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="top-up form")
        await pilot.press(*"0", "enter")
        await wait_until(
            pilot,
            lambda: "amount_usd must be greater than 0" in screen_text(app),
            what="invalid_amount",
        )
        app.screen.query_one("#field-amount_usd", Input).value = ""
        await pilot.press(*"25.50", "tab", *"first credit", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        wallet = await call(runtime, services(runtime).wallets.retrieve("umbrella"))
        assert raw(wallet["balance_usd"]) == "25.5"
        assert wallet["transactions"][0]["description"] == "first credit"
        await wait_until(
            pilot, lambda: t.cell_text(c["id"], "wallet").strip() == "$25.50", what="wallet cell"
        )


async def test_change_limits(runtime: Runtime, make_app: AppFactory) -> None:
    c = await make_customer(
        runtime,
        "acme",
        "Acme Corp",
        monthly_budget_usd=Decimal(100),
        low_balance_threshold_usd=Decimal(5),
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        await select_customer(app, pilot, c["id"])
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="limits form")
        form = app.screen
        budget = form.query_one("#field-monthly_budget_usd", Input)
        assert budget.value == "100"
        budget.value = ""
        await pilot.press(*"250", "tab", *"1.5", "tab")
        form.query_one("#field-low_balance_threshold_usd", Input).value = ""
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen), what="dismiss")
        after = await retrieve(runtime, "acme")
        assert raw(after["monthly_budget_usd"]) == "250"
        assert raw(after["markup"]) == "1.5"
        assert after["low_balance_threshold_usd"] is None
        assert t.cell_text(c["id"], "name") == "Acme Corp"


async def test_suspend_and_resume(runtime: Runtime, make_app: AppFactory) -> None:
    c = await make_customer(runtime, "acme", "Acme Corp")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        await select_customer(app, pilot, c["id"])
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: t.cell_text(c["id"], "status") == "suspended", what="badge")
        assert (await retrieve(runtime, "acme"))["status"] == "suspended"
        refused = await proxy_chat(runtime, "acme")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "customer_suspended"
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("n")  # declined: nothing changes
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="closed")
        # The dialog's answer is handled as it closes: no service call was started.
        assert not [w for w in app.workers if w.group == "action" and not w.is_finished]
        assert (await retrieve(runtime, "acme"))["status"] == "suspended"
        await pilot.press("s", "y")
        await wait_until(pilot, lambda: t.cell_text(c["id"], "status") == "active", what="resumed")
        assert (await retrieve(runtime, "acme"))["status"] == "active"


async def test_archive(runtime: Runtime, make_app: AppFactory) -> None:
    c = await make_customer(runtime, "acme", "Acme Corp")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        await select_customer(app, pilot, c["id"])
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: t.cell_text(c["id"], "status") == "archived", what="badge")
        after = await retrieve(runtime, "acme")
        assert after["status"] == "archived"
        assert after["archived_at"] is not None


# ---------------------------------------------------------------------------- detail


async def test_customer_detail(runtime: Runtime, make_app: AppFactory) -> None:
    c = await make_customer(runtime, "umbrella", "Umbrella Labs", monthly_budget_usd=Decimal(10))
    await call(
        runtime,
        services(runtime).wallets.topup("umbrella", {"amount_usd": Decimal(20)}),
    )
    await proxy_chat(runtime, "umbrella", model="fc:mock/mock-smart", tokens=300)
    await proxy_chat(runtime, "umbrella", tokens=100)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await customers_tab(app, pilot)
        await select_customer(app, pilot, c["id"])
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, CustomerDetailScreen), what="detail screen"
        )
        by_model = table(app, "by-model-table")
        await wait_until(pilot, lambda: by_model.row_count == 2, what="usage by model")
        assert column(by_model, 0) == ["mock/mock-smart", "mock/mock-fast"]
        assert table(app, "by-day-table").row_count == 1
        assert table(app, "detail-requests-table").row_count == 2
        txns = table(app, "txn-table")
        assert column(txns, 1).count("usage") == 2 and "topup" in column(txns, 1)
        header = screen_text(app)
        assert "Umbrella Labs" in header and "Budget this month" in header
        # Actions work from the detail screen too, and it updates in place.
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="top-up form")
        await pilot.press(*"5", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen), what="back")
        await wait_until(pilot, lambda: column(txns, 1).count("topup") == 2, what="new txn")
        await pilot.press("escape")
        assert not isinstance(app.screen, CustomerDetailScreen)


# ---------------------------------------------------------------------------- requests


async def test_requests_tail_filters_and_pauses(runtime: Runtime, make_app: AppFactory) -> None:
    await make_customer(runtime, "acme", "Acme Corp")
    await make_customer(runtime, "globex", "Globex", monthly_budget_usd=Decimal("0.0001"))
    await proxy_chat(runtime, "acme")
    await proxy_chat(runtime, "acme")
    assert (await proxy_chat(runtime, "globex")).status_code == 402
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        t = table(app, "requests-table")
        await wait_until(pilot, lambda: t.row_count == 3, what="3 requests")
        statuses = column(t, 7)
        assert statuses.count("ok") == 2
        assert any(s.startswith("refused 402 over budget") for s in statuses)
        await pilot.press("slash", *"glob")
        await wait_until(pilot, lambda: t.row_count == 1, what="filtered by customer")
        assert column(t, 1) == ["Globex"]
        await pilot.press("escape")
        await wait_until(pilot, lambda: t.row_count == 3, what="filter cleared")
        await pilot.press("x")  # status filter: ok
        await wait_until(pilot, lambda: t.row_count == 2, what="status=ok")
        await pilot.press("x")  # error
        await wait_until(pilot, lambda: t.row_count == 0, what="status=error")
        await pilot.press("escape")
        await wait_until(pilot, lambda: t.row_count == 3, what="all statuses")
        await pilot.press("p")
        assert "paused" in screen_text(app)
        await proxy_chat(runtime, "acme")
        # Paused: the tail holds still. The signal that it had its chance to change: the
        # request is in the log, then the view refreshed twice more.
        gw = runtime.gateway
        assert gw is not None
        assert len(await call(runtime, gw.services.snapshots.requests(10))) == 4
        await wait_refreshes(app, pilot, "requests", 2)
        assert t.row_count == 3
        await pilot.press("p")
        await wait_until(pilot, lambda: t.row_count == 4, what="resumed tail")


# ---------------------------------------------------------------------------- keys


async def test_create_and_revoke_app_key(runtime: Runtime, make_app: AppFactory) -> None:
    await make_customer(runtime, "acme", "Acme Corp")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        t = table(app, "keys-table")
        await wait_until(pilot, lambda: app.focused is t, what="keys focus")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="key form")
        await pilot.press(*"backend", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="shown")
        shown = app.screen
        assert isinstance(shown, KeyCreatedScreen)
        key = shown.key
        assert key.startswith("rs_") and key in screen_text(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: t.row_count == 1, what="key row")
        # The key works on the proxy, and only there.
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            ok = await client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}", "FC-Customer": "acme"},
                json={"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "x"}]},
            )
            assert ok.status_code == 200
        listed = await call(runtime, services(runtime).keys.list())
        assert [k["name"] for k in listed] == ["backend"]
        assert key not in screen_text(app)  # shown once, never in the table
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: t.row_count == 0, what="revoked")
        assert await call(runtime, services(runtime).keys.list()) == []
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            gone = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert gone.status_code == 401


# ---------------------------------------------------------------------------- palette, help


async def test_command_palette_jumps_to_customer_and_runs_actions(
    runtime: Runtime, make_app: AppFactory
) -> None:
    await make_customer(runtime, "acme", "Acme Corp")
    globex = await make_customer(runtime, "globex", "Globex")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(app.customers.rows) == 2, what="customers known")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"open globex")
        await wait_until(pilot, lambda: "Open Globex" in screen_text(app), what="palette hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen), what="jumped")
        assert isinstance(app.screen, CustomerDetailScreen)
        assert app.screen.customer_id == globex["id"]
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"create customer")
        await wait_until(
            pilot, lambda: "Open the new-customer form" in screen_text(app), what="palette hit"
        )
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen), what="create form")


async def test_help_screen_and_footer(runtime: Runtime, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "New customer" in text and "Help" in text and "Quit" in text  # footer
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await wait_until(pilot, lambda: "top up the wallet" in screen_text(app), what="text")
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_quit_key_exits(runtime: Runtime, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_every_tab_renders_without_errors(runtime: Runtime, make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for key, tab in enumerate(TAB_LABELS, start=1):
            await pilot.press(str(key))
            await wait_refreshes(app, pilot, tab, 2)
            assert app.refresh_loop.last_error is None, app.refresh_loop.last_error


async def test_tab_keys_land_on_the_tab_pressed(runtime: Runtime, make_app: AppFactory) -> None:
    """Leaving a tab whose table had the focus (Customers, Requests: a filter box beside
    the table) used to bounce back to it: Textual refocused the box in the hidden pane."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for tab in ("customers", "overview", "requests", "overview"):
            await pilot.press(str(list(TAB_LABELS).index(tab) + 1))
            await wait_refreshes(app, pilot, tab, 2)
            assert app.query_one("#tabs", TabbedContent).active == tab, app.focused


async def test_dashboard_reports_gateway_errors_without_crashing(
    runtime: Runtime, make_app: AppFactory
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.refresh_loop.count > 0, what="first refresh")
        runtime.stop(timeout=10)  # the gateway goes away under the dashboard
        await wait_until(pilot, lambda: app.refresh_loop.last_error is not None, what="error shown")
        assert "gateway" in screen_text(app)


# ---------------------------------------------------------------------------- type-ahead


def burst(app: RingsideApp, *keys: str) -> None:
    """Keys as a script or a fast typist sends them: all queued before any is handled."""
    from textual import events

    named = {"tab": "\t", "enter": "\r", "slash": "/", "space": " "}
    for key in keys:
        for k in [key] if key in named else list(key):
            app.post_message(events.Key(k, named.get(k, k)))


async def test_keys_typed_in_one_burst_land_where_meant(
    runtime: Runtime, make_app: AppFactory
) -> None:
    await make_customer(runtime, "acme", "Acme Corp")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        t = await customers_tab(app, pilot)
        burst(app, "n", "Wayne", "tab", "wayne", "tab", "tab", "40", "enter")
        await wait_until(pilot, lambda: t.row_count == 2, what="created")
        created = await retrieve(runtime, "wayne")
        assert (created["name"], raw(created["monthly_budget_usd"])) == ("Wayne", "40")
        burst(app, "slash", "wayne", "enter", "t", "25", "enter")
        await wait_until(
            pilot, lambda: t.cell_text(created["id"], "wallet").strip() == "$25.00", what="topup"
        )
        burst(app, "s", "y")
        await wait_until(
            pilot, lambda: t.cell_text(created["id"], "status") == "suspended", what="suspended"
        )
        assert (await retrieve(runtime, "acme"))["status"] == "active"  # not the wrong row
        assert (await retrieve(runtime, "wayne"))["status"] == "suspended"
