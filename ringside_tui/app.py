"""The Ringside dashboard: tabs over live views, operator actions, one refresh loop.

Refresh loop (dolphie's pattern): a timer starts one refresh of the visible view; the
view's `load` awaits a snapshot from the gateway (queries run on the gateway's database
readers, never on this thread), `apply` diffs it into the widgets, and only then is the
next timer armed, so refreshes never overlap. Gateway activity (the bus, through the
bridge) pulls the next refresh forward, at most every `busy_s`; without activity the
view still refreshes every `idle_s`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from gateway.errors import ApiError
from gateway.ledger.amounts import nanos_to_text
from gateway.services.snapshots import CustomerRow
from ringside_tui.bridge import Activity, Backend, GatewayBridge, GatewayUnavailable
from ringside_tui.commands import RingsideCommands
from ringside_tui.messages import CustomerChanged, GatewayActivity, KeysChanged, RefreshFinished
from ringside_tui.screens.base import LiveView
from ringside_tui.screens.customers import CustomersView
from ringside_tui.screens.detail import CustomerDetailScreen
from ringside_tui.screens.forms import (
    ConfirmScreen,
    FormScreen,
    KeyCreatedScreen,
    customer_fields,
    key_fields,
    limit_fields,
    topup_fields,
)
from ringside_tui.screens.help import HelpScreen
from ringside_tui.screens.keys import KeysView
from ringside_tui.screens.overview import OverviewView
from ringside_tui.screens.requests import RequestsView
from ringside_tui.screens.stripe import StripeView
from ringside_tui.screens.webhooks import WebhooksView
from ringside_tui.widgets.cells import usd_text
from ringside_tui.widgets.diff_table import DiffTable

if TYPE_CHECKING:
    from gateway.wiring import Gateway
    from gateway.clock import Clock


FULL_REFRESH_S = 10.0  # a full customers read at most this often
PARTIAL_REFRESH_MAX = 500  # more changed customers than this: a full read is cheaper


@dataclass(frozen=True)
class RefreshTiming:
    view: str
    query_s: float
    apply_s: float
    rows: int


def _plain_usd(nanos: int | None) -> str:
    """An amount as the forms take it back: '12.5', no $ and no thousands separators."""
    return "" if nanos is None else nanos_to_text(nanos)


class RingsideApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Ringside"
    COMMANDS = App.COMMANDS | {RingsideCommands}
    TAB_LABELS: ClassVar[dict[str, str]] = {
        "overview": "Overview",
        "customers": "Customers",
        "requests": "Requests",
        "keys": "Keys",
        "webhooks": "Webhooks",
        "stripe": "Stripe",
    }
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
        clock: Clock | None = None,
        idle_s: float = 1.0,
        busy_s: float = 0.5,
    ) -> None:
        super().__init__()
        self.gw = gw
        self.backend = Backend(gw, clock)
        self.bridge = GatewayBridge(gw.bus, self)
        self.base_url = base_url
        self.demo = demo
        self.admin_note = admin_note
        self.idle_s = idle_s
        self.busy_s = busy_s
        self.customers: dict[str, CustomerRow] = {}
        self._customers_at = 0.0
        self._customers_stale = True
        self._changed_ids: set[str] = set()
        self.timings: deque[RefreshTiming] = deque(maxlen=500)
        self.refresh_count = 0
        self.last_error: str | None = None
        self._timer: Timer | None = None
        self._next_at = 0.0
        self._refreshing = False
        self._dirty = False
        self._urgent = False
        self._last_end = 0.0
        self.views: dict[str, Any] = {}

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        self.views = {
            "overview": OverviewView(),
            "customers": CustomersView(),
            "requests": RequestsView(),
            "keys": KeysView(self.admin_note),
            "webhooks": WebhooksView(),
            "stripe": StripeView(),
        }
        yield Static(self._status_text(), id="status-line")
        with TabbedContent(initial="overview", id="tabs"):
            for i, (tab, label) in enumerate(self.TAB_LABELS.items(), start=1):
                with TabPane(f"{i} {label}", id=tab):
                    yield self.views[tab]
        yield Footer()

    def _status_text(self) -> str:
        mode = "demo · mock traffic" if self.demo else "gateway"
        state = f"[red]● {self.last_error}[/red]" if self.last_error else "[green]● live[/green]"
        return (
            f"[b]Ringside[/b]  {mode} on [b]{self.base_url}[/b]  {state}"
            "   [dim]ctrl+p commands · ? help · q quit[/dim]"
        )

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
        self._arm(0)
        self._focus_view("overview")

    def on_unmount(self) -> None:
        self.bridge.stop()

    # ------------------------------------------------------------------ refresh loop
    def refresh_target(self) -> LiveView | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ModalScreen):
                continue  # a form over a view: keep that view live underneath
            if isinstance(screen, CustomerDetailScreen):
                return screen  # type: ignore[return-value]
            break
        try:
            active = self.query_one("#tabs", TabbedContent).active
        except Exception:
            return None
        return self.views.get(active)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        # A zero-delay Textual timer divides by its interval when it runs late.
        delay = max(delay, 0.01)
        self._next_at = time.monotonic() + delay
        self._timer = self.set_timer(delay, self._start_refresh, name="refresh")

    def request_refresh(self, *, urgent: bool = False) -> None:
        """Ask for fresh data: now when urgent (an action, a tab switch), else soon."""
        self._dirty = True
        if urgent:
            self._urgent = True
        if self._refreshing:
            return  # the running refresh re-arms when it ends
        now = time.monotonic()
        at = now if urgent else max(now, self._last_end + self.busy_s)
        if at < self._next_at:
            self._arm(at - now)

    def _start_refresh(self) -> None:
        self._timer = None
        if self._refreshing:
            return
        target = self.refresh_target()
        if target is None:
            self._arm(self.idle_s)
            return
        self._refreshing = True
        self._dirty = False
        self._urgent = False
        self.run_worker(self._refresh(target), group="refresh", exit_on_error=False)

    async def _refresh(self, target: LiveView) -> None:
        started = time.perf_counter()
        errors: list[str] = []
        query_s = apply_s = 0.0
        rows = 0
        try:
            data = await target.load(self.backend)
            query_s = time.perf_counter() - started
            if self._still_showing(target):
                t1 = time.perf_counter()
                rows = target.apply(data)
                apply_s = time.perf_counter() - t1
            error = None
        except GatewayUnavailable as exc:
            error = f"gateway unavailable: {exc}"
        except ApiError as exc:
            error = exc.message
        except Exception as exc:  # keep the dashboard alive and say what broke
            error = f"refresh failed: {type(exc).__name__}: {exc}"
        finally:
            self._refreshing = False
            self._last_end = time.monotonic()
            if self._urgent:
                self._arm(0)
            else:
                self._arm(self.busy_s if self._dirty else self.idle_s)
        if error is not None:
            errors.append(error)
        if error != self.last_error:
            self.last_error = error
            self.query_one("#status-line", Static).update(self._status_text())
        self.refresh_count += 1
        self.timings.append(RefreshTiming(target.view_name, query_s, apply_s, rows))
        self.post_message(RefreshFinished(target.view_name, query_s, apply_s, rows, errors))

    def _still_showing(self, target: LiveView) -> bool:
        return target is self.refresh_target() or isinstance(target, CustomerDetailScreen)

    @on(GatewayActivity)
    def _gateway_activity(self) -> None:
        activity: Activity = self.bridge.drain()
        if not activity:
            return
        if "key.changed" in activity.kinds:
            self.post_message(KeysChanged())
        self._changed_ids |= activity.customer_ids
        target = self.refresh_target()
        if target is not None and target.interested(activity):
            self.request_refresh()

    @on(CustomerChanged)
    @on(KeysChanged)
    def _changed(self) -> None:
        self.request_refresh(urgent=True)

    # ------------------------------------------------------------------ tabs and focus
    def action_show_tab(self, tab: str) -> None:
        while isinstance(self.screen, CustomerDetailScreen):
            self.pop_screen()
        self.query_one("#tabs", TabbedContent).active = tab
        self.request_refresh(urgent=True)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        self._focus_view(tab)
        self.request_refresh(urgent=True)

    def _focus_view(self, tab: str) -> None:
        """Keyboard-first: the view's main table takes focus once its tab shows.

        Focusing a widget in a hidden pane makes TabbedContent switch to that pane, so a
        late focus for a tab the operator already left must not happen.
        """
        view = self.views.get(tab)
        if view is None:
            return

        def focus() -> None:
            if self.query_one("#tabs", TabbedContent).active != tab:
                return
            tables = view.query(DiffTable)
            if tables:
                tables.first().focus()

        self.call_after_refresh(focus)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # ------------------------------------------------------------------ customers
    def remember_customers(self, rows: list[CustomerRow]) -> None:
        self.customers = {c.id: c for c in rows}
        self._customers_at = time.monotonic()
        self._customers_stale = False

    async def load_customers(self) -> dict[str, CustomerRow]:
        """Every customer's row, kept current cheaply.

        A full read (10,000 customers: one grouped query, ~50 ms) at most every
        FULL_REFRESH_S; in between, only the customers the event bus named since the last
        read are re-read and merged. Other instances sharing the database are caught by
        the full read.
        """
        changed, self._changed_ids = self._changed_ids, set()
        full = (
            self._customers_stale
            or time.monotonic() - self._customers_at >= FULL_REFRESH_S
            or len(changed) > PARTIAL_REFRESH_MAX
            # Some publishers name customers by external id: only a full read finds them.
            or any(not cid.startswith("cus_") for cid in changed)
        )
        reader, now = self.backend.reader, self.backend.now()
        try:
            if full:
                rows, _, _ = await self.backend.read(reader.customers, now)
                self.remember_customers(rows)
            elif changed:
                rows, _, _ = await self.backend.read(reader.customers, now, list(changed))
                merged = dict(self.customers)
                merged.update((c.id, c) for c in rows)
                self.customers = merged
        except BaseException:
            self._changed_ids |= changed
            raise
        return self.customers

    async def ensure_customers(self, max_age_s: float = 5.0) -> None:
        """The name cache behind the palette and the requests filter, reloaded when old."""
        fresh = time.monotonic() - self._customers_at < max_age_s
        if fresh and not self._customers_stale and not self._changed_ids:
            return
        await self.load_customers()

    def find_customers(self, query: str, limit: int = 12) -> list[CustomerRow]:
        words = [w for w in query.lower().split() if len(w) >= 2]
        if not words:
            return []
        out = []
        for c in self.customers.values():
            hay = f"{c.name} {c.external_id} {c.id}".lower()
            if any(w in hay for w in words):
                out.append(c)
                if len(out) >= limit:
                    break
        return out

    def resolve_customers(self, needle: str) -> list[str]:
        n = needle.lower()
        return [
            c.id
            for c in self.customers.values()
            if n in c.name.lower() or n in c.external_id.lower() or n == c.id.lower()
        ]

    def selected_customer_id(self) -> str | None:
        if isinstance(self.screen, CustomerDetailScreen):
            return self.screen.customer_id
        view = self.views.get("customers")
        if view is None or self.query_one("#tabs", TabbedContent).active != "customers":
            return None
        return view.table.selected_key  # type: ignore[no-any-return]

    async def _customer(self, customer_id: str) -> CustomerRow | None:
        """Fresh from the database: forms start from current values, not a stale row."""
        try:
            rows, _, _ = await self.backend.read(
                self.backend.reader.customers, self.backend.now(), [customer_id]
            )
        except GatewayUnavailable as exc:
            self.notify(str(exc), severity="error")
            return None
        if not rows:
            self.notify(f"No customer {customer_id}.", severity="error")
            return None
        self.customers[customer_id] = rows[0]
        return rows[0]

    def open_customer(self, customer_id: str) -> None:
        screen = self.screen
        if isinstance(screen, CustomerDetailScreen):
            if screen.customer_id == customer_id:
                return
            self.switch_screen(CustomerDetailScreen(customer_id))
            return
        self.push_screen(CustomerDetailScreen(customer_id))

    def action_new_customer(self) -> None:
        async def create(body: dict[str, Any]) -> dict[str, Any]:
            return await self.backend.create_customer(body)

        def done(result: dict[str, Any] | None) -> None:
            if result:
                self.notify(f"Created customer {result['name']} ({result['id']}).")
                self.post_message(CustomerChanged(result["id"], "created"))

        self.push_screen(
            FormScreen(
                "New customer",
                customer_fields(),
                create,
                submit_label="Create",
                form_id="new-customer",
                intro="A postpaid customer is capped by its monthly budget (cost); "
                "a prepaid one is debited at price from its wallet.",
            ),
            done,
        )

    def _with_customer(self, customer_id: str, then: Callable[[CustomerRow], None]) -> None:
        """Open a dialog now from the live cache (so keys typed next reach it), or after
        one read when the customer is not cached yet (a palette jump)."""
        cached = self.customers.get(customer_id)
        if cached is not None:
            then(cached)
            return

        async def fetch() -> None:
            c = await self._customer(customer_id)
            if c is not None:
                then(c)

        self.run_worker(fetch(), group="open-form")

    def open_topup(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._open_topup)

    def _open_topup(self, c: CustomerRow) -> None:
        customer_id = c.id

        async def topup(body: dict[str, Any]) -> dict[str, Any]:
            return await self.backend.topup(customer_id, body)

        def done(result: dict[str, Any] | None) -> None:
            if result:
                balance = result.get("balance_usd")
                self.notify(f"Topped up {c.name}: wallet balance ${balance}.")
                self.post_message(CustomerChanged(customer_id, "topup"))

        balance = usd_text(c.wallet_nanos) if c.wallet_nanos is not None else "no wallet yet"
        self.push_screen(
            FormScreen(
                f"Top up {c.name}",
                topup_fields(),
                topup,
                submit_label="Top up",
                form_id="topup",
                intro=f"Wallet balance: {balance}. Calls are debited at price; "
                "a top-up makes a postpaid customer prepaid.",
            ),
            done,
        )

    def open_limits(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._open_limits)

    def _open_limits(self, c: CustomerRow) -> None:
        customer_id = c.id

        async def update(body: dict[str, Any]) -> dict[str, Any]:
            return await self.backend.update_customer(customer_id, body)

        def done(result: dict[str, Any] | None) -> None:
            if result:
                self.notify(f"Updated the limits of {c.name}.")
                self.post_message(CustomerChanged(customer_id, "limits"))

        self.push_screen(
            FormScreen(
                f"Limits of {c.name}",
                limit_fields(
                    _plain_usd(c.budget_nanos),
                    c.markup or "",
                    _plain_usd(c.threshold_nanos),
                ),
                update,
                form_id="limits",
                only_changed=True,
                intro="Blank means none: no cap, the global markup, no low-balance alert.",
            ),
            done,
        )

    def toggle_suspend(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._toggle_suspend)

    def _toggle_suspend(self, c: CustomerRow) -> None:
        customer_id = c.id
        if c.status == "archived":
            self.notify(f"{c.name} is archived and cannot be resumed.", severity="warning")
            return
        resume = c.status == "suspended"
        question = (
            f"Resume {c.name}? Its calls are served again."
            if resume
            else f"Suspend {c.name}? Its calls get 403 customer_suspended until resumed."
        )

        def confirmed(ok: bool | None) -> None:
            if ok:
                status = "active" if resume else "suspended"
                self._act(
                    lambda: self.backend.update_customer(customer_id, {"status": status}),
                    f"{'Resumed' if resume else 'Suspended'} {c.name}.",
                    customer_id,
                )

        self.push_screen(
            ConfirmScreen(question, confirm_label="Resume" if resume else "Suspend"), confirmed
        )

    def confirm_archive(self, customer_id: str) -> None:
        self._with_customer(customer_id, self._confirm_archive)

    def _confirm_archive(self, c: CustomerRow) -> None:
        customer_id = c.id
        if c.status == "archived":
            self.notify(f"{c.name} is already archived.")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._act(
                    lambda: self.backend.archive_customer(customer_id),
                    f"Archived {c.name}; its usage stays queryable.",
                    customer_id,
                )

        self.push_screen(
            ConfirmScreen(
                f"Archive {c.name}? This cannot be undone: its calls get 403 "
                "customer_archived; its ledger and usage stay.",
                confirm_label="Archive",
                danger=True,
            ),
            confirmed,
        )

    # ------------------------------------------------------------------ keys
    def open_create_key(self) -> None:
        async def create(body: dict[str, Any]) -> dict[str, Any]:
            return await self.backend.create_key(body["name"])

        def done(result: dict[str, Any] | None) -> None:
            if result:
                self.post_message(KeysChanged(result["id"]))
                self.push_screen(KeyCreatedScreen(result["name"], result["key"]))

        self.push_screen(
            FormScreen("New app key", key_fields(), create, submit_label="Create", form_id="key"),
            done,
        )

    def confirm_revoke(self, key_id: str, name: str) -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                self._act(
                    lambda: self.backend.revoke_key(key_id),
                    f"Revoked app key '{name}'.",
                    None,
                )

        self.push_screen(
            ConfirmScreen(
                f"Revoke app key '{name}'? Calls using it get 401 at once.",
                confirm_label="Revoke",
                danger=True,
            ),
            confirmed,
        )

    # ------------------------------------------------------------------ webhooks, stripe
    def retry_delivery(self, delivery_id: str) -> None:
        self._act(
            lambda: self.backend.extra_call("webhooks", "retry_delivery", delivery_id),
            "Delivery queued for a new attempt.",
            None,
        )

    def set_endpoint_enabled(self, endpoint_id: str, enabled: bool) -> None:
        self._act(
            lambda: self.backend.extra_call(
                "webhooks", "set_endpoint_enabled", endpoint_id, enabled
            ),
            f"Endpoint {'enabled' if enabled else 'disabled'}.",
            None,
        )

    def stripe_sync_now(self) -> None:
        def summary(result: Any) -> str:
            if isinstance(result, dict):
                return (
                    f"Stripe sync {result.get('status', 'done')}: "
                    f"{result.get('events', 0)} meter events for "
                    f"{result.get('customers_pushed', 0)} customers."
                )
            return "Stripe sync finished."

        self._act(lambda: self.backend.extra_call("stripe", "sync_now"), summary, None)

    # ------------------------------------------------------------------ running actions
    def _act(
        self,
        call: Callable[[], Awaitable[Any]],
        success: str | Callable[[Any], str],
        customer_id: str | None,
    ) -> None:
        async def run() -> None:
            try:
                result = await call()
            except ApiError as exc:
                self.notify(exc.message, title="Not done", severity="error", timeout=8)
                return
            except GatewayUnavailable as exc:
                self.notify(str(exc), title="Not done", severity="error")
                return
            message = success(result) if callable(success) else success
            self.notify(message)
            if customer_id is not None:
                self.post_message(CustomerChanged(customer_id))
            else:
                self.request_refresh(urgent=True)

        self.run_worker(run(), group="action", exit_on_error=False)
