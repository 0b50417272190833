"""Keys: the app keys the SaaS backend uses on the proxy routes; create (shown once), revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from gateway.services.snapshots import KeyRow
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.backend import Backend
    from ringside_tui.bridge import Activity

KEY_COLUMNS = [
    Column("name", "Name", 28),
    Column("id", "Id", 16),
    Column("prefix", "Key starts", 11),
    Column("created", "Created (UTC)", 17),
    Column("used", "Last used (UTC)", 17),
]


def key_cells(k: KeyRow) -> list[Any]:
    return [
        cells.cell(k.name, k.name.lower()),
        cells.cell(cells.short_id(k.id), k.id),
        cells.cell(f"{k.prefix}…", k.prefix),
        cells.when(k.created_ms, full=True),
        cells.when(k.last_used_ms, full=True),
    ]


class KeysView(Vertical):
    view_name = "keys"

    BINDINGS = [
        Binding("n", "create", "New key"),
        Binding("d,delete", "revoke", "Revoke"),
    ]

    def __init__(self, backend: Backend, actions: DashboardActions, admin_note: str = "") -> None:
        super().__init__(id="keys-view")
        self.backend = backend
        self.actions = actions
        self.admin_note = admin_note

    def compose(self) -> ComposeResult:
        yield Static(
            "App keys ([b]rs_…[/b]) call the proxy routes only. The admin key manages "
            f"everything. {self.admin_note}",
            id="keys-intro",
            classes="hint",
        )
        yield DiffTable[KeyRow](
            KEY_COLUMNS, id="keys-table", sort_column="created", sort_reverse=True
        )
        yield Static("n new key (shown once) · d revoke", classes="hint")

    @property
    def table(self) -> DiffTable[KeyRow]:
        return self.query_one("#keys-table", DiffTable)

    def interested(self, activity: Activity) -> bool:
        return "key.changed" in activity.kinds

    async def load(self) -> list[KeyRow]:
        return await self.backend.keys()

    def apply(self, rows: list[KeyRow]) -> int:
        self.table.sync({k.id: k for k in rows}, key_cells)
        return len(rows)

    def action_create(self) -> None:
        self.actions.create_key()

    def action_revoke(self) -> None:
        key = self.table.selected_item()
        if key is None:
            self.notify("Select a key first.", severity="warning")
            return
        self.actions.confirm_revoke(key.id, key.name)
