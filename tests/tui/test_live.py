"""Live plumbing: the bus bridge coalesces, tables diff in place, the demo drives traffic."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.message import Message

from gateway.events import EventBus
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.bridge import GatewayBridge
from ringside_tui.demo import DemoCustomer, DemoTraffic
from ringside_tui.messages import GatewayActivity
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable
from tests.tui.helpers import column, make_customer, proxy_chat, wait_until

SIZE = (120, 36)


class RecordingApp:
    def __init__(self) -> None:
        self.posted: list[Message] = []

    def post_message(self, message: Message) -> bool:
        self.posted.append(message)
        return True


def test_bridge_hands_off_one_message_per_burst() -> None:
    bus = EventBus()
    app = RecordingApp()
    bridge = GatewayBridge(bus, app)
    bridge.start()

    def publish() -> None:
        for i in range(500):
            bus.publish("request.metered", request={"id": f"req_{i}", "customer_id": "cus_a"})

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(app.posted) == 1 and isinstance(app.posted[0], GatewayActivity)
    activity = bridge.drain()
    assert activity.metered == 2000
    assert activity.customer_ids == {"cus_a"}
    bus.publish("customer.changed", customer_id="cus_b")
    assert len(app.posted) == 2  # drained: the next event posts again
    bridge.stop()
    bus.publish("customer.changed", customer_id="cus_c")
    assert len(app.posted) == 2


def test_activity_messages_coalesce() -> None:
    assert GatewayActivity().can_replace(GatewayActivity())


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield DiffTable[tuple[str, int]](
            [Column("name", "Name", 10), Column("n", "N", 6)],
            id="t",
            sort_column="n",
            sort_reverse=True,
        )


def render(item: tuple[str, int]) -> list[Any]:
    return [cells.cell(item[0]), cells.count(item[1])]


async def test_diff_table_updates_in_place() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one("#t", DiffTable)
        stats = t.sync({"a": ("a", 1), "b": ("b", 2), "c": ("c", 3)}, render)
        assert (stats.added, stats.updated, stats.removed) == (3, 0, 0)
        assert column(t, 0) == ["c", "b", "a"]
        t.move_cursor(row=t.get_row_index("a"))
        rendered: list[str] = []

        def spy(item: tuple[str, int]) -> list[Any]:
            rendered.append(item[0])
            return render(item)

        stats = t.sync({"a": ("a", 9), "b": ("b", 2), "c": ("c", 3)}, spy)
        assert (stats.added, stats.updated, stats.removed) == (0, 1, 0)
        assert rendered == ["a"]  # unchanged rows are not even rendered
        assert column(t, 0) == ["a", "c", "b"]  # re-sorted on the sort column
        assert t.selected_key == "a"  # the cursor follows its row
        stats = t.sync({"a": ("a", 9), "c": ("c", 3), "d": ("d", 0)}, render)
        assert (stats.added, stats.removed) == (1, 1)
        assert column(t, 0) == ["a", "c", "d"]
        await pilot.pause()


async def test_diff_table_bulk_paths_keep_order_and_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one("#t", DiffTable)
        t.sync({str(i): (str(i), i) for i in range(1000)}, render)  # bulk add
        assert t.row_count == 1000 and column(t, 1)[:3] == ["999", "998", "997"]
        t.move_cursor(row=t.get_row_index("500"))
        stats = t.sync({str(i): (str(i), i) for i in range(0, 1000, 2)}, render)  # bulk remove
        assert stats.removed == 500 and t.row_count == 500
        assert column(t, 1)[:3] == ["998", "996", "994"]
        assert t.selected_key == "500"
        assert [t.get_row_index(str(i)) for i in (998, 0)] == [0, 499]
        stats = t.sync({str(i): (str(i), i) for i in range(1000)}, render)  # and back
        assert stats.added == 500 and column(t, 1) == [str(i) for i in range(999, -1, -1)]
        await pilot.pause()


class RankedApp(App[None]):
    def compose(self) -> ComposeResult:
        yield DiffTable[tuple[str, int]]([Column("name", "Name", 10), Column("n", "N", 6)], id="t")


async def test_diff_table_without_sort_column_follows_the_items_order() -> None:
    app = RankedApp()
    async with app.run_test(size=(40, 12)) as pilot:
        t = app.query_one("#t", DiffTable)
        t.sync({"a": ("a", 3), "b": ("b", 2), "c": ("c", 1)}, render)
        assert column(t, 0) == ["a", "b", "c"]
        t.move_cursor(row=t.get_row_index("a"))
        # The caller re-ranked: rows updated in place move to their new places.
        stats = t.sync({"c": ("c", 9), "a": ("a", 3), "b": ("b", 2)}, render)
        assert stats.resorted and column(t, 0) == ["c", "a", "b"]
        assert t.item_keys == ["c", "a", "b"]
        assert t.selected_key == "a"  # the cursor follows its row
        stats = t.sync({"d": ("d", 5), "a": ("a", 3)}, render)  # new and gone rows
        assert column(t, 0) == ["d", "a"]
        stats = t.sync({"d": ("d", 5), "a": ("a", 3)}, render)
        assert not stats.resorted
        await pilot.pause()


# ---------------------------------------------------------------------------- demo


async def test_demo_drives_traffic_and_the_table_follows_the_bus(
    runtime: Runtime, make_app: Callable[..., RingsideApp]
) -> None:
    assert runtime.gateway is not None
    demo_customers = (
        DemoCustomer("acme", "Acme Corp", "a@acme.test", 3),
        DemoCustomer("globex", "Globex", "ap@globex.test", 1),
    )
    traffic = DemoTraffic(
        runtime.gateway,
        runtime.base_url,
        rate=20,
        seed=7,
        customers=demo_customers,
        latency=False,
    )
    traffic.start()
    try:
        assert await asyncio.to_thread(traffic.ready.wait, 30), traffic.stats
        probe = await make_customer(runtime, "probe", "Probe Inc")
        # No idle refresh within the test: only gateway activity (the bus, through the
        # bridge) refreshes the table, so what changes on screen came that way.
        app = make_app(idle_s=600.0, busy_s=0.5)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            t = app.views.customers.table
            await wait_until(pilot, lambda: traffic.stats.ok >= 10, what="10 demo calls")
            assert not traffic.stats.errors
            await wait_until(pilot, lambda: "Acme Corp" in column(t, 0), what="demo customer")
            await wait_until(
                pilot, lambda: t.cell_text(acme_id(app), "cost") != "$0.00", what="acme's cost"
            )
            await wait_until(pilot, lambda: probe["id"] in t.item_keys, what="probe row")
            before = t.cell_text(probe["id"], "cost")
            ok = await proxy_chat(runtime, "probe", model="fc:mock/mock-smart")
            assert ok.status_code == 200
            await wait_until(
                pilot, lambda: t.cell_text(probe["id"], "cost") != before, what="probe's cost"
            )
    finally:
        traffic.stop()
    assert traffic.stats.sent > 0


def acme_id(app: RingsideApp) -> str:
    return next(c.id for c in app.customers.rows.values() if c.external_id == "acme")
