"""Keys: the API keys and their kinds (app keys for the proxy; read, billing and admin
keys for the management API) and expiry; create (shown once), revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.backend import ApiDict, Backend
    from ringside_tui.bridge import Activity

KEY_COLUMNS = [
    Column("name", "Name", 22),
    Column("kind", "Kind", 7),
    Column("id", "Id", 12),
    Column("prefix", "Key starts", 10),
    Column("created", "Created (UTC)", 16),
    Column("used", "Last used (UTC)", 16),
    Column("expires", "Expires (UTC)", 18),
]
KIND_STYLES = {"admin": "bold #ff8700", "billing": "yellow", "read": "cyan"}
KIND_ORDER = {"app": 0, "read": 1, "billing": 2, "admin": 3}


def _ms(iso: str | None) -> int | None:
    """An RFC 3339 time from the key service, in epoch milliseconds."""
    if not iso:
        return None
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass(frozen=True)
class KeyItem:
    """One row of the keys table, from the key service's API-shaped dict."""

    id: str
    name: str
    kind: str
    prefix: str
    created_ms: int
    last_used_ms: int | None
    expires_ms: int | None
    expired: bool = False  # on the key service's clock, when it was read

    @classmethod
    def from_api(cls, key: ApiDict, now_ms: int) -> KeyItem:
        expires_ms = _ms(key.get("expires_at"))
        return cls(
            id=str(key["id"]),
            name=str(key["name"]),
            kind=str(key.get("kind") or "app"),
            prefix=str(key["prefix"]),
            created_ms=_ms(key.get("created_at")) or int(key["created"]) * 1000,
            last_used_ms=_ms(key.get("last_used_at")),
            expires_ms=expires_ms,
            expired=expires_ms is not None and expires_ms <= now_ms,
        )


def expiry_cell(expires_ms: int | None, expired: bool) -> cells.Cell:
    """'never', the time, or 'expired <day>' (red: calls with it get 401 api_key_expired)."""
    if expires_ms is None:
        return cells.cell("never", None, style="dim")
    text = cells.datetime_text(expires_ms)
    if expired:
        return cells.cell(f"expired {text[:10]}", expires_ms, style="red")
    return cells.cell(text, expires_ms)


def key_cells(k: KeyItem) -> list[Any]:
    return [
        cells.cell(k.name, k.name.lower()),
        cells.cell(k.kind, KIND_ORDER.get(k.kind, 9), style=KIND_STYLES.get(k.kind, "")),
        cells.cell(cells.short_id(k.id), k.id),
        cells.cell(f"{k.prefix}…", k.prefix),
        # Ties on the creation time (keys made in one millisecond) go by id: creation order.
        cells.cell(cells.datetime_text(k.created_ms), (k.created_ms, k.id)),
        cells.when(k.last_used_ms, full=True),
        expiry_cell(k.expires_ms, k.expired),
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
            "Keys ([b]rs_…[/b]) by kind: [b]app[/b] calls the proxy routes only; "
            "[b]read[/b] reads the management API; [b]billing[/b] also writes customers, "
            "top-ups and plans; [b]admin[/b] does everything. The bootstrap admin key "
            f"always works. {self.admin_note}",
            id="keys-intro",
            classes="hint",
        )
        yield DiffTable[KeyItem](
            KEY_COLUMNS, id="keys-table", sort_column="created", sort_reverse=True
        )
        yield Static("n new key (kind, optional expiry; shown once) · d revoke", classes="hint")

    @property
    def table(self) -> DiffTable[KeyItem]:
        return self.query_one("#keys-table", DiffTable)

    def interested(self, activity: Activity) -> bool:
        return "key.changed" in activity.kinds

    async def load(self) -> list[KeyItem]:
        keys, now_ms = await self.backend.keys()
        return [KeyItem.from_api(k, now_ms) for k in keys]

    def apply(self, rows: list[KeyItem]) -> int:
        self.table.sync({k.id: k for k in rows}, key_cells)
        return len(rows)

    def action_create(self) -> None:
        self.actions.create_key()

    def action_revoke(self) -> None:
        key = self.table.selected_item()
        if key is None:
            self.notify("Select a key first.", severity="warning")
            return
        self.actions.confirm_revoke(key.id, key.name, key.kind)
