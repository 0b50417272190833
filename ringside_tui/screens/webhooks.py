"""Webhooks: endpoints with their health, recent deliveries, retry, enable/disable.

Drawn from the webhook service's API-shaped dicts (`gw.services.webhooks`);
when that module is not in the build the tab says so instead of failing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.app import RingsideApp
    from ringside_tui.bridge import Activity, Backend

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
NOT_AVAILABLE = (
    "Webhooks are not available in this build (no webhook service registered), "
    "so there is nothing to show here."
)


def get(d: Any, *names: str, default: Any = None) -> Any:
    """A field of an API dict (or an object), trying names in order."""
    for name in names:
        value = d.get(name) if isinstance(d, dict) else getattr(d, name, None)
        if value is not None:
            return value
    return default


def iso_to_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value * 1000) if value < 10**11 else int(value)
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def endpoint_health(ep: Any) -> tuple[str, str]:
    """(label, style) from an endpoint dict."""
    enabled = get(ep, "enabled", default=get(ep, "status") == "enabled")
    if not enabled:
        reason = get(ep, "disabled_reason", default="")
        return (f"disabled{': ' + reason if reason else ''}", "red")
    failing = iso_to_ms(get(ep, "failing_since_at", "failing_since_ms"))
    if failing is not None:
        return (f"failing since {cells.short_datetime_text(failing)}", "#ff8700")
    if get(ep, "last_success_at", "last_success_ms") is not None:
        return ("healthy", "green")
    return ("no deliveries yet", "dim")


class Row:
    """An API dict compared by value, so the diff only re-renders rows that changed."""

    __slots__ = ("data", "signature")

    def __init__(self, data: Any) -> None:
        self.data = data
        items = data.items() if isinstance(data, dict) else vars(data).items()
        self.signature = repr(sorted((str(k), repr(v)) for k, v in items))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and other.signature == self.signature

    __hash__ = None  # type: ignore[assignment]


def endpoint_cells(ep: Any) -> list[Any]:
    label, style = endpoint_health(ep)
    events = get(ep, "events")
    return [
        cells.cell(str(get(ep, "url", default=""))),
        cells.cell(label, label, style=style),
        cells.when(iso_to_ms(get(ep, "last_success_at", "last_success_ms")), full=True),
        cells.plain(get(ep, "pending_deliveries")),
        cells.cell("all" if not events else ", ".join(events)),
    ]


def delivery_cells(d: Any) -> list[Any]:
    status = str(get(d, "status", default=""))
    style = {"delivered": "green", "failed": "red", "pending": "#ff8700"}.get(status, "")
    code = get(d, "last_status_code")
    error = get(d, "last_error")
    last = f"HTTP {code}" if code else ""
    if error:
        last = f"{last} {error}".strip()
    return [
        cells.when(iso_to_ms(get(d, "created_at", "created")), full=True),
        cells.plain(get(d, "event_type", "event_id")),
        cells.plain(get(d, "endpoint_url", "endpoint_id")),
        cells.cell(status, status, style=style),
        cells.plain(get(d, "attempt_count", "attempts", default=0)),
        cells.cell(last or "—", last),
    ]


class WebhooksView(Vertical):
    view_name = "webhooks"

    BINDINGS = [
        Binding("r", "retry", "Retry delivery"),
        Binding("e", "toggle_endpoint", "Enable/disable"),
    ]

    def __init__(self) -> None:
        super().__init__(id="webhooks-view")
        self.endpoints: dict[str, Any] = {}
        self.deliveries: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="webhooks-unavailable", classes="hint")
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

    @property
    def rapp(self) -> RingsideApp:
        return self.app  # type: ignore[return-value]

    def interested(self, activity: Activity) -> bool:
        return any(k.startswith("webhook") or k == "event.recorded" for k in activity.kinds)

    async def load(self, backend: Backend) -> tuple[list[Any], list[Any]] | None:
        if backend.extra("webhooks") is None:
            return None
        endpoints = await backend.extra_call("webhooks", "list_endpoints")
        deliveries = await backend.extra_call("webhooks", "recent_deliveries", 100)
        return list(endpoints), list(deliveries)

    def apply(self, data: tuple[list[Any], list[Any]] | None) -> int:
        note = self.query_one("#webhooks-unavailable", Static)
        if data is None:
            note.update(NOT_AVAILABLE)
            return 0
        note.update("")
        endpoints, deliveries = data
        self.endpoints = {str(get(e, "id")): e for e in endpoints}
        self.deliveries = {str(get(d, "id")): d for d in deliveries}
        self.query_one("#endpoints-table", DiffTable).sync(
            {k: Row(v) for k, v in self.endpoints.items()}, lambda r: endpoint_cells(r.data)
        )
        self.query_one("#deliveries-table", DiffTable).sync(
            {k: Row(v) for k, v in self.deliveries.items()}, lambda r: delivery_cells(r.data)
        )
        return len(endpoints) + len(deliveries)

    def action_retry(self) -> None:
        key = self.query_one("#deliveries-table", DiffTable).selected_key
        if key is None:
            self.notify("Select a delivery first.", severity="warning")
            return
        self.rapp.retry_delivery(key)

    def action_toggle_endpoint(self) -> None:
        key = self.query_one("#endpoints-table", DiffTable).selected_key
        if key is None:
            self.notify("Select an endpoint first.", severity="warning")
            return
        enabled = bool(get(self.endpoints.get(key, {}), "enabled", default=True))
        self.rapp.set_endpoint_enabled(key, not enabled)
