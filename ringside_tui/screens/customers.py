"""Customers: the live table of every customer's month-to-date money, sortable and filterable."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from gateway.services.snapshots import CustomerRow
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.bridge import Activity
    from ringside_tui.customer_cache import CustomerCache

CUSTOMER_COLUMNS = [
    Column("name", "Name", 15),
    Column("external_id", "External id", 11),
    Column("plan", "Plan", 9),
    Column("cost", "MTD cost", 10),
    Column("price", "MTD price", 10),
    Column("margin", "Margin", 10),
    Column("budget", "Budget use", 11),
    Column("wallet", "Wallet", 10),
    Column("status", "Status", 12),
]


def customer_cells(c: CustomerRow, warning_share: Decimal = Decimal("0.8")) -> list[Any]:
    return [
        cells.cell(c.name, c.name.lower(), style="dim" if c.status == "archived" else ""),
        cells.cell(c.external_id, c.external_id.lower()),
        cells.cell(c.plan_name or "", (c.plan_name or "").lower()),
        cells.money(c.mtd_cost_nanos),
        cells.money(c.mtd_price_nanos),
        cells.margin(c.margin_nanos),
        cells.budget_bar(c.budget_share, width=6),
        cells.money(c.wallet_nanos),
        cells.badge(c.state(warning_share)),
    ]


def matches(c: CustomerRow, needle: str, warning_share: Decimal) -> bool:
    if not needle:
        return True
    hay = (
        f"{c.name}\n{c.external_id}\n{c.email or ''}\n{c.id}\n{c.state(warning_share)}"
        f"\n{c.plan_name or ''}"
    )
    return needle in hay.lower()


class CustomersView(Vertical):
    view_name = "customers"

    # `/` and the filter's enter move the focus as the key arrives (priority), so the
    # keys typed next go where the operator meant; both are off when they would steal
    # a key from the table or the filter box.
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", priority=True),
        Binding("enter", "leave_filter", "To the table", show=False, priority=True),
        Binding("t", "topup", "Top up"),
        Binding("e", "edit", "Limits"),
        Binding("s", "suspend", "Suspend/resume"),
        Binding("a", "archive", "Archive"),
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(
        self, customers: CustomerCache, actions: DashboardActions, warning_share: Decimal
    ) -> None:
        super().__init__(id="customers-view")
        self.customers = customers
        self.actions = actions
        self.warning_share = warning_share
        self.rows: list[CustomerRow] = []
        self._needle = ""

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="/ filter: name, external id, email, plan or status (escape clears)",
            id="customer-filter",
        )
        yield DiffTable[CustomerRow](
            CUSTOMER_COLUMNS,
            id="customers-table",
            sort_column="cost",
            sort_reverse=True,
        )
        yield Static("", id="customers-summary", classes="hint")

    @property
    def table(self) -> DiffTable[CustomerRow]:
        return self.query_one("#customers-table", DiffTable)

    # ------------------------------------------------------------------ live view
    def interested(self, activity: Activity) -> bool:
        return True

    async def load(self) -> list[CustomerRow]:
        return await self.customers.load()

    def apply(self, rows: list[CustomerRow]) -> int:
        self.rows = rows
        return self._show()

    def _show(self) -> int:
        needle = self.query_one("#customer-filter", Input).value.strip().lower()
        self._needle = needle
        share = self.warning_share
        shown = {c.id: c for c in self.rows if matches(c, needle, share)}
        self.table.sync(shown, lambda c: customer_cells(c, share))
        direction = "↓" if self.table.sort_reverse else "↑"
        col = next((c.label for c in CUSTOMER_COLUMNS if c.key == self.table.sort_column), "")
        filtered = f" · {len(shown):,} match '{needle}'" if needle else ""
        self.query_one("#customers-summary", Static).update(
            f"{len(self.rows):,} customers{filtered} · sorted by {col} {direction} · "
            "enter details · n new · t top up · e limits & plan · s suspend · a archive"
        )
        return len(shown)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        in_filter = self.screen.focused is self.query_one("#customer-filter", Input)
        if action == "focus_filter":
            return not in_filter  # in the box, `/` is text
        if action == "leave_filter":
            return in_filter  # on the table, enter opens the customer
        return True

    # ------------------------------------------------------------------ interaction
    @on(Input.Changed, "#customer-filter")
    def _filter_changed(self) -> None:
        self._show()

    def action_leave_filter(self) -> None:
        self.screen.set_focus(self.table)

    @on(DataTable.RowSelected, "#customers-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.actions.open_customer(event.row_key.value)

    def action_focus_filter(self) -> None:
        self.screen.set_focus(self.query_one("#customer-filter", Input))

    def action_clear_filter(self) -> None:
        box = self.query_one("#customer-filter", Input)
        box.value = ""
        self.table.focus()

    def action_cycle_sort(self) -> None:
        self.table.cycle_sort()
        self._show()

    def selected(self) -> str | None:
        # The filter box may hold text whose Changed message is still queued: apply it
        # first, so the action hits the row the operator sees.
        if self.query_one("#customer-filter", Input).value.strip().lower() != self._needle:
            self._show()
        key = self.table.selected_key
        if key is None:
            self.notify("Select a customer first.", severity="warning")
        return key

    def action_topup(self) -> None:
        if (cid := self.selected()) is not None:
            self.actions.open_topup(cid)

    def action_edit(self) -> None:
        if (cid := self.selected()) is not None:
            self.actions.open_limits(cid)

    def action_suspend(self) -> None:
        if (cid := self.selected()) is not None:
            self.actions.toggle_suspend(cid)

    def action_archive(self) -> None:
        if (cid := self.selected()) is not None:
            self.actions.confirm_archive(cid)
