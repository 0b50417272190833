"""Webhooks: endpoints with their health, recent deliveries, retry, enable/disable.

Drawn from the webhook service's API-shaped dicts (`services.webhooks`, the same the
HTTP API answers with), through the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from ringside_tui.widgets import cells
from ringside_tui.widgets.cells import Cell
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.backend import ApiDict, Backend, WebhooksSnapshot
    from ringside_tui.bridge import Activity

ENDPOINT_COLUMNS = [
    Column("url", "Endpoint URL", 40),
    Column("health", "Health", 28),
    Column("last_ok", "Last success (UTC)", 17),
    Column("pending", "Pending", 8),
    Column("events", "Events", 20),
]
DELIVERY_COLUMNS = [
    Column("time", "Created (UTC)", 17),
    Column("event", "Event", 18),
    Column("endpoint", "Endpoint", 30),
    Column("status", "Status", 10),
    Column("attempts", "Tries", 6),
    Column("last", "Last result", 28),
]
DELIVERY_STYLES = {"delivered": "green", "failed": "red", "pending": "#ff8700"}


def iso_to_ms(value: str | None) -> int | None:
    """An API timestamp ('2026-04-01T02:00:00Z') as epoch milliseconds."""
    if value is None:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


@dataclass(frozen=True)
class Row:
    """An API dict compared by value, so the diff only re-renders rows that changed."""

    data: ApiDict = field(compare=False)
    signature: str = field(init=False)

    def __post_init__(self) -> None:
        signature = repr(sorted((str(k), repr(v)) for k, v in self.data.items()))
        object.__setattr__(self, "signature", signature)


def endpoint_health(ep: ApiDict) -> tuple[str, str]:
    """(label, style) from an endpoint dict."""
    if not ep.get("enabled"):
        reason = ep.get("disabled_reason") or ""
        return (f"disabled{': ' + reason if reason else ''}", "red")
    failing = iso_to_ms(ep.get("failing_since_at"))
    if failing is not None:
        return (f"failing since {cells.short_datetime_text(failing)}", "#ff8700")
    if ep.get("last_success_at") is not None:
        return ("healthy", "green")
    return ("no deliveries yet", "dim")


def endpoint_cells(ep: ApiDict) -> list[Cell]:
    label, style = endpoint_health(ep)
    events = ep.get("events")
    return [
        cells.cell(str(ep.get("url") or "")),
        cells.cell(label, label, style=style),
        cells.when(iso_to_ms(ep.get("last_success_at")), full=True),
        cells.plain(ep.get("pending_deliveries")),
        cells.cell("all" if not events else ", ".join(events)),
    ]


def delivery_cells(d: ApiDict) -> list[Cell]:
    status = str(d.get("status") or "")
    code = d.get("last_status_code")
    error = d.get("last_error")
    last = f"HTTP {code}" if code else ""
    if error:
        last = f"{last} {error}".strip()
    return [
        cells.when(iso_to_ms(d.get("created_at")), full=True),
        cells.plain(d.get("event_type") or d.get("event_id")),
        cells.plain(d.get("endpoint_url") or d.get("endpoint_id")),
        cells.cell(status, status, style=DELIVERY_STYLES.get(status, "")),
        cells.plain(d.get("attempt_count") or 0),
        cells.cell(last or "—", last),
    ]


class WebhooksView(Vertical):
    view_name = "webhooks"

    BINDINGS = [
        Binding("r", "retry", "Retry delivery"),
        Binding("e", "toggle_endpoint", "Enable/disable"),
    ]

    def __init__(self, backend: Backend, actions: DashboardActions) -> None:
        super().__init__(id="webhooks-view")
        self.backend = backend
        self.actions = actions
        self.endpoints: dict[str, ApiDict] = {}
        self.deliveries: dict[str, ApiDict] = {}

    def compose(self) -> ComposeResult:
        yield Label("Endpoints", classes="box-title")
        yield DiffTable[Row](ENDPOINT_COLUMNS, id="endpoints-table")
        yield Label("Recent deliveries", classes="box-title")
        yield DiffTable[Row](
            DELIVERY_COLUMNS, id="deliveries-table", sort_column="time", sort_reverse=True
        )
        yield Static(
            "r retry the selected delivery · e enable/disable the selected endpoint",
            classes="hint",
        )

    def interested(self, activity: Activity) -> bool:
        return any(k.startswith("webhook") or k == "event.recorded" for k in activity.kinds)

    async def load(self) -> WebhooksSnapshot:
        return await self.backend.webhooks(100)

    def apply(self, data: WebhooksSnapshot) -> int:
        self.endpoints = {str(e["id"]): e for e in data.endpoints}
        self.deliveries = {str(d["id"]): d for d in data.deliveries}
        self.query_one("#endpoints-table", DiffTable).sync(
            {k: Row(v) for k, v in self.endpoints.items()}, lambda r: endpoint_cells(r.data)
        )
        self.query_one("#deliveries-table", DiffTable).sync(
            {k: Row(v) for k, v in self.deliveries.items()}, lambda r: delivery_cells(r.data)
        )
        return len(data.endpoints) + len(data.deliveries)

    def action_retry(self) -> None:
        key = self.query_one("#deliveries-table", DiffTable).selected_key
        if key is None:
            self.notify("Select a delivery first.", severity="warning")
            return
        self.actions.retry_delivery(key)

    def action_toggle_endpoint(self) -> None:
        key = self.query_one("#endpoints-table", DiffTable).selected_key
        if key is None:
            self.notify("Select an endpoint first.", severity="warning")
            return
        enabled = bool(self.endpoints.get(key, {}).get("enabled", True))
        self.actions.set_endpoint_enabled(key, not enabled)
