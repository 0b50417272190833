"""Stripe: sync runs, per-customer sync state, and "sync now".

Drawn from `services.stripe` through the backend. Without an API key the service is
still there, unconfigured: the tab says so above the tables, and "sync now" answers with
the service's `stripe_not_configured` error. The per-customer state is a heavier query,
so this tab reloads it every few seconds rather than on every refresh tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from ringside_tui.screens.webhooks import Row, iso_to_ms
from ringside_tui.widgets import cells
from ringside_tui.widgets.cells import Cell
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.backend import ApiDict, Backend
    from ringside_tui.bridge import Activity

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
NOT_CONFIGURED = "Stripe is not configured (set STRIPE_API_KEY): runs will report it."
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


def _error_text(error: Any) -> Any:
    """An error field: a {code, message} object or already text."""
    if isinstance(error, dict):
        return error.get("message") or error.get("code")
    return error


def run_cells(r: ApiDict) -> list[Cell]:
    status = str(r.get("status") or "")
    error = _error_text(r.get("error"))
    failures = r.get("failures") or []
    if not error and failures:
        first = failures[0]
        error = f"{len(failures)} failure(s): {first.get('message') or first.get('code') or ''}"
    unit = r.get("unit") or ""
    total = r.get("total_value")
    duration = r.get("duration_ms")
    return [
        cells.when(iso_to_ms(r.get("started_at")), full=True),
        cells.plain(r.get("trigger")),
        cells.cell(status, status, style=STATUS_STYLES.get(status, "")),
        cells.plain(r.get("customers_pushed") or 0),
        cells.plain(r.get("events") or 0),
        cells.cell(f"{total or 0} {unit}".strip(), total),
        cells.cell(f"{duration or 0} ms", duration),
        cells.cell(str(error or "—"), str(error or "")),
    ]


def state_cells(s: ApiDict) -> list[Cell]:
    status = str(s.get("status") or "")
    error = _error_text(s.get("last_error"))
    unit = s.get("unit") or ""
    name = str(s.get("name") or s.get("external_id") or s.get("customer_id") or "")
    pending = s.get("pending_value")
    return [
        cells.cell(name, name.lower()),
        cells.plain(s.get("stripe_customer_id")),
        cells.cell(status, status, style=STATUS_STYLES.get(status, "")),
        cells.plain(s.get("last_pushed_day")),
        cells.cell(f"{pending or 0} {unit}".strip(), pending),
        cells.cell(str(error or "—"), str(error or "")),
    ]


@dataclass(frozen=True)
class StripeData:
    configured: bool
    runs: list[ApiDict]
    states: list[ApiDict]


class StripeView(Vertical):
    view_name = "stripe"

    BINDINGS = [Binding("y", "sync_now", "Sync now")]

    def __init__(self, backend: Backend, actions: DashboardActions) -> None:
        super().__init__(id="stripe-view")
        self.backend = backend
        self.actions = actions
        self._states_at = 0.0
        self._states: list[ApiDict] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="stripe-unconfigured", classes="hint")
        yield Label("Sync runs", classes="box-title")
        yield DiffTable[Row](RUN_COLUMNS, id="runs-table", sort_column="time", sort_reverse=True)
        yield Label("Per-customer state", classes="box-title")
        yield DiffTable[Row](STATE_COLUMNS, id="states-table")
        yield Static("y sync now (pushes unsynced usage as Stripe meter events)", classes="hint")

    def interested(self, activity: Activity) -> bool:
        return any(k.startswith("stripe") for k in activity.kinds)

    def invalidate(self) -> None:
        self._states_at = 0.0

    async def load(self) -> StripeData:
        runs = await self.backend.stripe_runs(20)
        if self._states is None or time.monotonic() - self._states_at >= STATE_EVERY_S:
            self._states = await self.backend.stripe_states(STATE_LIMIT)
            self._states_at = time.monotonic()
        return StripeData(self.backend.stripe_configured, runs, self._states)

    def apply(self, data: StripeData) -> int:
        self.query_one("#stripe-unconfigured", Static).update(
            "" if data.configured else NOT_CONFIGURED
        )
        self.query_one("#runs-table", DiffTable).sync(
            {str(r["id"]): Row(r) for r in data.runs}, lambda r: run_cells(r.data)
        )
        self.query_one("#states-table", DiffTable).sync(
            {str(s["customer_id"]): Row(s) for s in data.states}, lambda r: state_cells(r.data)
        )
        return len(data.runs) + len(data.states)

    def action_sync_now(self) -> None:
        self.invalidate()
        self.actions.stripe_sync_now()
