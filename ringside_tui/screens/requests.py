"""Requests: the live tail of the request log, filterable by customer and status, pausable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select

from gateway.services.snapshots import TAIL_LIMIT, RequestRow
from ringside_tui.messages import ViewInvalidated
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.backend import Backend
    from ringside_tui.bridge import Activity
    from ringside_tui.customer_cache import CustomerCache

REQUEST_COLUMNS = [
    Column("time", "UTC", 8),
    Column("customer", "Customer", 14),
    Column("model", "Model", 19),
    Column("tokens", "Tokens in/out", 13),
    Column("cost", "Cost", 9),
    Column("price", "Price", 9),
    Column("latency", "Latency", 8),
    Column("status", "Status", 20),
]
RequestStatus = Literal["ok", "error", "refused", "cut"]
STATUSES: tuple[RequestStatus, ...] = get_args(RequestStatus)
# The customer filter matches names typed in part; past this many matches it narrows no more.
MAX_FILTER_IDS = 500


def request_cells(r: RequestRow) -> list[Any]:
    who = (r.customer_name or cells.short_id(r.customer_id)) if r.customer_id else "(untagged)"
    return [
        cells.when(r.created_ms),
        cells.cell(who, who.lower()),
        cells.cell(f"{r.provider}/{r.model}", f"{r.provider}/{r.model}"),
        cells.tokens(r.input_tokens, r.output_tokens),
        cells.money(r.cost_nanos, places=6),
        cells.money(r.price_nanos, places=6),
        cells.latency(r.latency_ms),
        cells.status_cell(r.status, r.http_status, r.error_code),
    ]


class RequestsView(Vertical):
    view_name = "requests"

    BINDINGS = [
        Binding("p,space", "toggle_pause", "Pause/resume"),
        Binding("slash", "focus_filter", "Filter", priority=True),
        Binding("enter", "leave_filter", "To the table", show=False, priority=True),
        Binding("x", "cycle_status", "Status filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, backend: Backend, customers: CustomerCache) -> None:
        super().__init__(id="requests-view")
        self.backend = backend
        self.customers = customers
        self.paused = False
        self.unmatched = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="requests-filters"):
            yield Input(placeholder="/ customer: name, external id or cus_ id", id="request-filter")
            yield Select(
                [(s, s) for s in STATUSES],
                prompt="any status",
                id="status-filter",
                allow_blank=True,
            )
            yield Label("● live", id="tail-state", classes="live")
        yield DiffTable[RequestRow](
            REQUEST_COLUMNS, id="requests-table", sort_column="time", sort_reverse=True
        )

    @property
    def table(self) -> DiffTable[RequestRow]:
        return self.query_one("#requests-table", DiffTable)

    @property
    def status_filter(self) -> RequestStatus | None:
        value = self.query_one("#status-filter", Select).value
        return next((s for s in STATUSES if s == value), None)

    # ------------------------------------------------------------------ live view
    def interested(self, activity: Activity) -> bool:
        return not self.paused and bool(
            activity.kinds & {"request.metered", "request.refused", "customer.changed"}
        )

    async def load(self) -> list[RequestRow] | None:
        if self.paused:
            return None
        needle = self.query_one("#request-filter", Input).value.strip()
        ids = None
        if needle:
            await self.customers.ensure()
            ids = self.customers.resolve(needle)[:MAX_FILTER_IDS]
        return await self.backend.requests(TAIL_LIMIT, customer_ids=ids, status=self.status_filter)

    def apply(self, rows: list[RequestRow] | None) -> int:
        if rows is None:
            return self.table.row_count
        self.table.sync({r.id: r for r in rows}, request_cells)
        return len(rows)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        in_filter = self.screen.focused is self.query_one("#request-filter", Input)
        if action == "focus_filter":
            return not in_filter
        if action == "leave_filter":
            return in_filter
        return True

    def action_leave_filter(self) -> None:
        self.screen.set_focus(self.table)

    # ------------------------------------------------------------------ interaction
    def _update_state(self) -> None:
        label = self.query_one("#tail-state", Label)
        label.update("⏸ paused (p)" if self.paused else "● live")
        label.set_class(self.paused, "paused")
        label.set_class(not self.paused, "live")

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._update_state()
        if not self.paused:
            self.post_message(ViewInvalidated())

    def action_focus_filter(self) -> None:
        self.screen.set_focus(self.query_one("#request-filter", Input))

    def action_clear_filter(self) -> None:
        self.query_one("#request-filter", Input).value = ""
        self.query_one("#status-filter", Select).clear()
        self.table.focus()

    def action_cycle_status(self) -> None:
        select = self.query_one("#status-filter", Select)
        current = self.status_filter
        if current is None:
            select.value = STATUSES[0]
        elif current == STATUSES[-1]:
            select.clear()
        else:
            select.value = STATUSES[STATUSES.index(current) + 1]

    @on(Input.Changed, "#request-filter")
    @on(Select.Changed, "#status-filter")
    def _filters_changed(self) -> None:
        self.post_message(ViewInvalidated())
