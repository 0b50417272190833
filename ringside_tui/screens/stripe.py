"""Stripe: sync runs, per-customer sync state, and "sync now".

Drawn from `gw.services.stripe`; without it the tab says Stripe sync is not
available. The per-customer state is a heavier query, so this tab reloads it every few
seconds rather than on every refresh tick.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from ringside_tui.screens.webhooks import Row, get, iso_to_ms
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.app import RingsideApp
    from ringside_tui.bridge import Activity, Backend

RUN_COLUMNS = [
    Column("time", "Started (UTC)", 17),
    Column("trigger", "Trigger", 9),
    Column("status", "Status", 11),
    Column("customers", "Customers", 10),
    Column("events", "Events", 7),
    Column("value", "Value", 14),
    Column("duration", "Took", 9),
    Column("error", "Error", 30),
]
STATE_COLUMNS = [
    Column("name", "Customer", 22),
    Column("stripe", "Stripe customer", 20),
    Column("status", "Sync state", 16),
    Column("last", "Last pushed day", 15),
    Column("pending", "Pending", 14),
    Column("error", "Last error", 30),
]
STATE_LIMIT = 200
STATE_EVERY_S = 3.0
NOT_AVAILABLE = (
    "Stripe sync is not available in this build (no stripe service registered), "
    "so there is nothing to show here."
)
STATUS_STYLES = {
    "succeeded": "green",
    "synced": "green",
    "partial": "#ff8700",
    "pending": "#ff8700",
    "running": "#ff8700",
    "failed": "red",
    "error": "red",
    "action_required": "bold red",
    "unmapped": "dim",
}


def run_cells(r: Any) -> list[Any]:
    status = str(get(r, "status", default=""))
    error = get(r, "error")
    if isinstance(error, dict):
        error = get(error, "message", "code")
    failures = get(r, "failures") or []
    if not error and failures:
        error = f"{len(failures)} failure(s): {get(failures[0], 'message', 'code', default='')}"
    unit = get(r, "unit", default="")
    return [
        cells.when(iso_to_ms(get(r, "started_at")), full=True),
        cells.plain(get(r, "trigger")),
        cells.cell(status, status, style=STATUS_STYLES.get(status, "")),
        cells.plain(get(r, "customers_pushed", default=0)),
        cells.plain(get(r, "events", default=0)),
        cells.cell(f"{get(r, 'total_value', default=0)} {unit}".strip(), get(r, "total_value")),
        cells.cell(f"{get(r, 'duration_ms', default=0)} ms", get(r, "duration_ms")),
        cells.cell(str(error or "—"), str(error or "")),
    ]


def state_cells(s: Any) -> list[Any]:
    status = str(get(s, "status", default=""))
    error = get(s, "last_error")
    if isinstance(error, dict):
        error = get(error, "message", "code")
    unit = get(s, "unit", default="")
    name = str(get(s, "name", "external_id", "customer_id", default=""))
    return [
        cells.cell(name, name.lower()),
        cells.plain(get(s, "stripe_customer_id")),
        cells.cell(status, status, style=STATUS_STYLES.get(status, "")),
        cells.plain(get(s, "last_pushed_day")),
        cells.cell(f"{get(s, 'pending_value', default=0)} {unit}".strip(), get(s, "pending_value")),
        cells.cell(str(error or "—"), str(error or "")),
    ]


class StripeView(Vertical):
    view_name = "stripe"

    BINDINGS = [Binding("y", "sync_now", "Sync now")]

    def __init__(self) -> None:
        super().__init__(id="stripe-view")
        self._states_at = 0.0
        self._states: list[Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="stripe-unavailable", classes="hint")
        yield Label("Sync runs", classes="box-title")
        yield DiffTable[Row](RUN_COLUMNS, id="runs-table", sort_column="time", sort_reverse=True)
        yield Label("Per-customer state", classes="box-title")
        yield DiffTable[Row](STATE_COLUMNS, id="states-table")
        yield Static("y sync now (pushes unsynced usage as Stripe meter events)", classes="hint")

    @property
    def rapp(self) -> RingsideApp:
        return self.app  # type: ignore[return-value]

    def interested(self, activity: Activity) -> bool:
        return any(k.startswith("stripe") for k in activity.kinds)

    def invalidate(self) -> None:
        self._states_at = 0.0

    async def load(self, backend: Backend) -> tuple[list[Any], list[Any]] | None:
        if backend.extra("stripe") is None:
            return None
        runs = list(await backend.extra_call("stripe", "runs", 20))
        if self._states is None or time.monotonic() - self._states_at >= STATE_EVERY_S:
            self._states = list(await backend.extra_call("stripe", "customer_states", STATE_LIMIT))
            self._states_at = time.monotonic()
        return runs, self._states

    def apply(self, data: tuple[list[Any], list[Any]] | None) -> int:
        note = self.query_one("#stripe-unavailable", Static)
        if data is None:
            note.update(NOT_AVAILABLE)
            return 0
        runs, states = data
        service = getattr(self.rapp.backend.extra("stripe"), "configured", True)
        note.update(
            "" if service else "Stripe is not configured (set STRIPE_API_KEY): runs will report it."
        )
        self.query_one("#runs-table", DiffTable).sync(
            {str(get(r, "id")): Row(r) for r in runs}, lambda r: run_cells(r.data)
        )
        self.query_one("#states-table", DiffTable).sync(
            {str(get(s, "customer_id")): Row(s) for s in states}, lambda r: state_cells(r.data)
        )
        return len(runs) + len(states)

    def action_sync_now(self) -> None:
        self.invalidate()
        self.rapp.stripe_sync_now()
