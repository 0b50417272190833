"""The Ringside dashboard: tabs over live views, wired once to the gateway's services.

The app builds its parts and hands each one what it needs:

- `Backend` (backend.py): service calls and snapshot reads on the gateway's loop;
- `GatewayBridge` (bridge.py): the event bus, as coalescing `GatewayActivity` messages;
- `CustomerCache` (customer_cache.py): every customer's row, kept current cheaply;
- `DashboardActions` (actions.py): what an operator can do; views get it when built;
- `RefreshLoop` (refresh.py): one refresh of the visible view at a time.

What is left here is layout, tabs, focus and navigation, and the handlers for the
messages views post (messages.py): screens never call into the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from ringside_tui.actions import DashboardActions
from ringside_tui.backend import Backend
from ringside_tui.bridge import GatewayBridge
from ringside_tui.commands import RingsideCommands
from ringside_tui.customer_cache import CustomerCache
from ringside_tui.dialogs import FormScreen
from ringside_tui.messages import (
    TAB_LABELS,
    CustomerChanged,
    CustomerSelected,
    GatewayActivity,
    KeysChanged,
    TabName,
    TabSelected,
    ViewInvalidated,
)
from ringside_tui.refresh import AnyView, RefreshLoop
from ringside_tui.screens.customers import CustomersView
from ringside_tui.screens.detail import CustomerDetailScreen
from ringside_tui.screens.help import HelpScreen
from ringside_tui.screens.keys import KeysView
from ringside_tui.screens.overview import OverviewView
from ringside_tui.screens.plans import PlansView
from ringside_tui.screens.requests import RequestsView
from ringside_tui.screens.stripe import StripeView
from ringside_tui.screens.webhooks import WebhooksView
from ringside_tui.widgets.diff_table import DiffTable

if TYPE_CHECKING:
    from gateway.wiring import Gateway

TabView = (
    OverviewView | CustomersView | RequestsView | KeysView | WebhooksView | StripeView | PlansView
)


def as_tab(value: str | None) -> TabName | None:
    return next((tab for tab in TAB_LABELS if tab == value), None)


@dataclass(frozen=True)
class Views:
    """One live view per tab."""

    overview: OverviewView
    customers: CustomersView
    requests: RequestsView
    keys: KeysView
    webhooks: WebhooksView
    stripe: StripeView
    plans: PlansView

    def by_tab(self) -> dict[TabName, TabView]:
        return {
            "overview": self.overview,
            "customers": self.customers,
            "requests": self.requests,
            "keys": self.keys,
            "webhooks": self.webhooks,
            "stripe": self.stripe,
            "plans": self.plans,
        }


class RingsideApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Ringside"
    COMMANDS = App.COMMANDS | {RingsideCommands}
    # Not priority bindings: keys are handled in the order they were typed, so `down down
    # t` tops up the row the cursor reached. Keys typed before a dialog finished opening
    # reach it through on_key below.
    BINDINGS = [
        *[
            Binding(str(i), f"show_tab('{tab}')", label, show=False)
            for i, (tab, label) in enumerate(TAB_LABELS.items(), start=1)
        ],
        Binding("n", "new_customer", "New customer"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        gw: Gateway,
        *,
        base_url: str = "",
        demo: bool = False,
        admin_note: str = "",
        idle_s: float = 1.0,
        busy_s: float = 0.5,
        backend: Backend | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url
        self.demo = demo
        backend = backend if backend is not None else Backend.for_gateway(gw)
        customers = CustomerCache(backend)
        actions = DashboardActions(self, backend, customers)
        self.backend = backend
        self.bridge = GatewayBridge(gw.services.bus, self)
        self.refresh_loop = RefreshLoop(
            self, self.refresh_target, idle_s=idle_s, busy_s=busy_s, on_error=self._show_error
        )
        self._customers = customers
        self._actions = actions
        self.views = Views(
            overview=OverviewView(backend, customers),
            customers=CustomersView(customers, actions, backend.warning_share),
            requests=RequestsView(backend, customers),
            keys=KeysView(backend, actions, admin_note),
            webhooks=WebhooksView(backend, actions),
            stripe=StripeView(backend, actions),
            plans=PlansView(backend, actions),
        )

    @property
    def actions(self) -> DashboardActions:
        return self._actions

    @property
    def customers(self) -> CustomerCache:
        return self._customers

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(self._status_text(), id="status-line")
        with TabbedContent(initial="overview", id="tabs"):
            for i, (tab, view) in enumerate(self.views.by_tab().items(), start=1):
                with TabPane(f"{i} {TAB_LABELS[tab]}", id=tab):
                    yield view
        yield Footer()

    def _status_text(self) -> str:
        mode = "demo · mock traffic" if self.demo else "gateway"
        error = self.refresh_loop.last_error
        state = f"[red]● {error}[/red]" if error else "[green]● live[/green]"
        return (
            f"[b]Ringside[/b]  {mode} on [b]{self.base_url}[/b]  {state}"
            "   [dim]ctrl+p commands · ? help · q quit[/dim]"
        )

    def _show_error(self, error: str | None) -> None:
        self.query_one("#status-line", Static).update(self._status_text())

    def on_key(self, event: events.Key) -> None:
        """Type-ahead: text typed right after `t` or `n` was already on its way to the
        table when the dialog opened; it bubbles up here and goes into the dialog."""
        screen = self.screen
        if (
            isinstance(screen, FormScreen)
            and event.is_printable
            and event.character is not None
            and (screen.focused is None or isinstance(screen.focused, Input))
        ):
            screen.type_ahead(event.character)
            event.stop()

    def on_mount(self) -> None:
        self.bridge.start()
        self.refresh_loop.start()
        self._focus_view("overview")

    def on_unmount(self) -> None:
        self.bridge.stop()

    # ------------------------------------------------------------------ what is on screen
    def _base_screen(self) -> Screen[Any] | None:
        """The screen under any dialogs (forms, the palette): a view stays live under them.
        None before the first screen is up and after the last one is gone."""
        base: Screen[Any] | None = None
        for screen in self.screen_stack:
            if base is None or not isinstance(screen, ModalScreen):
                base = screen
        return base

    def _active_tab(self) -> TabName | None:
        try:
            return as_tab(self.query_one("#tabs", TabbedContent).active)
        except Exception:
            return None  # not composed yet, or shutting down

    def refresh_target(self) -> AnyView | None:
        """The view the refresh loop keeps live: the detail screen, or the visible tab."""
        screen = self._base_screen()
        if isinstance(screen, CustomerDetailScreen):
            return screen
        tab = self._active_tab()
        return None if tab is None else self.views.by_tab()[tab]

    def selected_customer_id(self) -> str | None:
        screen = self._base_screen()
        if isinstance(screen, CustomerDetailScreen):
            return screen.customer_id
        if self._active_tab() != "customers":
            return None
        return self.views.customers.table.selected_key

    # ------------------------------------------------------------------ messages
    @on(GatewayActivity)
    def _gateway_activity(self) -> None:
        activity = self.bridge.drain()
        if not activity:
            return
        if "key.changed" in activity.kinds:
            self.post_message(KeysChanged())
        if "plan.changed" in activity.kinds:
            self._customers.note_all_changed()  # its customers' effective terms moved
        self._customers.note_changed(activity.customer_ids)
        target = self.refresh_target()
        if target is not None and target.interested(activity):
            self.refresh_loop.request()

    @on(CustomerChanged)
    @on(KeysChanged)
    @on(ViewInvalidated)
    def _changed(self) -> None:
        self.refresh_loop.request(urgent=True)

    @on(CustomerSelected)
    def _customer_selected(self, message: CustomerSelected) -> None:
        self.open_customer(message.customer_id)

    @on(TabSelected)
    def _tab_selected(self, message: TabSelected) -> None:
        self.action_show_tab(message.tab)

    # ------------------------------------------------------------------ navigation
    def open_customer(self, customer_id: str) -> None:
        screen = self.screen
        if isinstance(screen, CustomerDetailScreen) and screen.customer_id == customer_id:
            return
        detail = CustomerDetailScreen(customer_id, self.backend, self._actions)
        if isinstance(screen, CustomerDetailScreen):
            self.switch_screen(detail)
        else:
            self.push_screen(detail)

    def action_show_tab(self, tab: str) -> None:
        name = as_tab(tab)
        if name is None:
            return
        while isinstance(self.screen, CustomerDetailScreen):
            self.pop_screen()
        self._move_focus_to(name)
        self.query_one("#tabs", TabbedContent).active = name
        self.refresh_loop.request(urgent=True)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = as_tab(event.pane.id)
        if tab is not None:
            self._focus_view(tab)
        self.refresh_loop.request(urgent=True)

    def _move_focus_to(self, tab: TabName) -> None:
        """Move the focus into the tab about to show, before the old one hides.

        A focused widget whose pane hides blurs itself, and Textual then focuses one of
        its siblings, still in that hidden pane; TabbedContent follows the focus and shows
        the old tab again (`1` pressed on Customers came back to Customers). So the focus
        leaves first: to the new view's main table, or nowhere if it has none to focus.
        """
        view = self.views.by_tab()[tab]
        tables = view.query(DiffTable)
        table = tables.first() if tables else None
        view.screen.set_focus(table if table is not None and table.focusable else None)

    def _focus_view(self, tab: TabName) -> None:
        """Keyboard-first: the view's main table takes focus once its tab shows.

        Focusing a widget in a hidden pane makes TabbedContent switch to that pane, so a
        late focus for a tab the operator already left must not happen.
        """
        view = self.views.by_tab()[tab]

        def focus() -> None:
            if self._active_tab() != tab:
                return
            tables = view.query(DiffTable)
            if tables:
                tables.first().focus()

        self.call_after_refresh(focus)

    def action_new_customer(self) -> None:
        self._actions.new_customer()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
