"""Customer detail: terms and plan, the spend forecast, live rate-limit use, usage by model
and by day, wallet history, the latest audit entries (who changed what), recent requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from gateway.services.snapshots import CustomerDetail, RequestRow, TransactionRow, UsageLine
from gateway.terms import LimitName, Terms
from ringside_tui.messages import ViewInvalidated
from ringside_tui.screens.requests import request_cells
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.backend import ApiDict, Backend
    from ringside_tui.bridge import Activity

USAGE_COLUMNS = [
    Column("key", "Model", 22),
    Column("requests", "Requests", 9),
    Column("tokens", "Tokens in / out", 15),
    Column("cost", "Cost", 11),
    Column("price", "Price", 11),
    Column("margin", "Margin", 11),
]
DAY_COLUMNS = [
    Column("key", "Day", 10),
    Column("requests", "Requests", 8),
    Column("cost", "Cost", 10),
    Column("price", "Price", 10),
]
TXN_COLUMNS = [
    Column("time", "When (UTC)", 11),
    Column("type", "Type", 7),
    Column("amount", "Amount", 10),
    Column("balance", "Balance", 10),
]
AUDIT_LIMIT = 6  # entries shown; read with the rest of the detail, one query a refresh
AUDIT_COLUMNS = [
    Column("time", "When (UTC)", 14),
    Column("action", "Action", 18),
    Column("who", "By", 20),
    Column("changes", "Changes", 56),
]
SMALL_REQUEST_COLUMNS = [
    Column("time", "UTC", 8),
    Column("model", "Model", 19),
    Column("tokens", "Tokens in/out", 13),
    Column("cost", "Cost", 9),
    Column("price", "Price", 9),
    Column("latency", "Latency", 8),
    Column("status", "Status", 20),
]


def usage_cells(u: UsageLine) -> list[Any]:
    return [
        cells.cell(u.key, u.key),
        cells.count(u.requests),
        cells.tokens(u.input_tokens, u.output_tokens),
        cells.money(u.cost_nanos),
        cells.money(u.price_nanos),
        cells.margin(u.margin_nanos),
    ]


def day_cells(u: UsageLine) -> list[Any]:
    return [
        cells.cell(u.key, u.key),
        cells.count(u.requests),
        cells.money(u.cost_nanos),
        cells.money(u.price_nanos),
    ]


def txn_cells(t: TransactionRow) -> list[Any]:
    return [
        cells.cell(cells.short_datetime_text(t.created_ms), t.created_ms),
        cells.cell(t.type, t.type, style="green" if t.type == "topup" else ""),
        cells.money(t.amount_nanos),
        cells.money(t.balance_after_nanos),
    ]


ACTION_STYLES = {
    "customer.created": "green",
    "wallet.topup": "green",
    "customer.suspended": "yellow",
    "customer.archived": "red",
}


def audit_who(entry: ApiDict) -> str:
    """Who made the change: 'dashboard', 'billing key_1a2b3c4d', 'bootstrap admin'."""
    kind = str(entry.get("key_kind") or "")
    key_id = entry.get("key_id")
    if key_id:
        return f"{kind} {cells.short_id(str(key_id))}"
    return "bootstrap admin" if kind == "admin" else kind


def _value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    return cells.api_text(value)


def audit_changes(entry: ApiDict) -> str:
    """The changes compactly: 'balance_usd 10 → 12.5 · markup — → 1.3'; a creation lists
    the values it set ('name Acme · external_id acme')."""
    changes = entry.get("changes") or {}
    created = str(entry.get("action") or "").endswith(".created")
    parts = []
    for field, pair in changes.items():
        before, after = [*pair, None, None][:2]
        if created:
            parts.append(f"{field} {_value_text(after)}")
        else:
            parts.append(f"{field} {_value_text(before)} → {_value_text(after)}")
    return " · ".join(parts)


def audit_time_text(entry: ApiDict) -> str:
    """'04-15 12:30:05' (UTC), from the entry's RFC 3339 `created_at`."""
    text = str(entry.get("created_at") or "")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = datetime.fromtimestamp(int(entry.get("created") or 0), UTC)
    return when.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def audit_cells(entry: ApiDict) -> list[Any]:
    action = str(entry.get("action") or "")
    return [
        cells.cell(audit_time_text(entry), entry.get("created_at")),
        cells.cell(action, action, style=ACTION_STYLES.get(action, "")),
        cells.cell(audit_who(entry)),
        cells.cell(_clip(audit_changes(entry), AUDIT_COLUMNS[-1].width or 56)),
    ]


@dataclass(frozen=True)
class DetailData:
    """One refresh of the detail screen: the snapshot, this minute's rate-limit use
    (`services.customers.rate_usage`) and the latest audit entries (`services.audit`)."""

    detail: CustomerDetail
    rate: ApiDict
    audit: list[ApiDict]


SOURCE_TAGS = {"customer": "own", "plan": "plan"}


def _source(terms: Terms | None, name: str) -> str:
    """' [dim](plan)[/dim]' for a value the plan sets, '(own)' for the customer's own."""
    tag = SOURCE_TAGS.get(terms.sources.get(name, "default")) if terms is not None else None
    return f" [dim]({tag})[/dim]" if tag else ""


def _against(used: int, terms: Terms | None, limit: LimitName, unit: str) -> str:
    """'3 / 60 requests (plan)', or '3 requests (no limit)'."""
    cap = terms.limits.get(limit) if terms is not None else None
    if cap is None:
        return f"{used:,} {unit} [dim](no limit)[/dim]"
    style = "bold red" if used >= cap else "bold #ff8700" if used * 5 >= cap * 4 else "bold"
    return f"[{style}]{used:,}[/] / {cap:,} {unit}{_source(terms, f'limits.{limit}')}"


def describe_terms(d: CustomerDetail, rate: ApiDict | None) -> str:
    """The plan, the model allow-list and the rate limits, each with where it comes from,
    and this minute's use against the limits."""
    t = d.terms
    plan = f"[b]{t.plan_name}[/b] ({t.plan_id})" if t is not None and t.plan_name else "none"
    models = t.allowed_models if t is not None else None
    allowed = "all models" if models is None else ", ".join(models) or "no models"
    lines = [f"Plan: {plan} · models: {allowed}{_source(t, 'allowed_models')}"]
    if rate is not None:
        lines.append(
            "Now: "
            + " · ".join(
                (
                    _against(int(rate.get("in_flight") or 0), t, "max_concurrent", "in flight"),
                    _against(
                        int(rate.get("requests_this_minute") or 0),
                        t,
                        "requests_per_minute",
                        "requests/min",
                    ),
                    _against(
                        int(rate.get("tokens_this_minute") or 0),
                        t,
                        "tokens_per_minute",
                        "tokens/min",
                    ),
                )
            )
        )
    return "\n".join(lines)


MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def in_about(delta_ms: int) -> str:
    """'now', 'in ~40 min', 'in ~5 hours', 'in ~3 days' (rounded to the nearest unit)."""
    if delta_ms <= 0:
        return "now"
    if delta_ms < HOUR_MS:
        return f"in ~{max(1, (delta_ms + MINUTE_MS // 2) // MINUTE_MS)} min"
    if delta_ms < 2 * DAY_MS:
        hours = (delta_ms + HOUR_MS // 2) // HOUR_MS
        return f"in ~{hours} hour{'' if hours == 1 else 's'}"
    return f"in ~{(delta_ms + DAY_MS // 2) // DAY_MS} days"


def describe_forecast(d: CustomerDetail) -> str | None:
    """'Forecast: wallet empty in ~3 days · budget exhausted ~Apr 19 · month end ≈ $12.40
    cost / $18.60 price', or why there is none yet."""
    f = d.forecast
    if f is None:
        return None
    if not f.known:
        return "Forecast: [dim]not enough history yet (less than a day of traffic)[/dim]"
    c = d.customer
    parts = []
    if c.wallet_nanos is not None and c.prepaid:
        if f.wallet_empty_ms is not None:
            when = in_about(f.wallet_empty_ms - f.now_ms)
            style = "bold red" if f.wallet_empty_ms - f.now_ms < DAY_MS else "bold"
            parts.append(f"wallet empty [{style}]{when}[/]")
        elif f.price_nanos_per_hour:
            parts.append("wallet lasts over a year")
        else:
            parts.append("wallet not draining")
    if c.budget_nanos is not None:
        if f.budget_exhausted_ms is None:
            parts.append("budget lasts the month")
        elif f.budget_exhausted_ms <= f.now_ms:
            parts.append("budget exhausted [bold red]now[/]")
        else:
            day = datetime.fromtimestamp(f.budget_exhausted_ms / 1000, UTC)
            parts.append(f"budget exhausted [bold]~{day:%b} {day.day}[/]")
    parts.append(
        f"month end ≈ {cells.usd_text(f.month_end_cost_nanos)} cost / "
        f"{cells.usd_text(f.month_end_price_nanos)} price"
    )
    return "Forecast: " + " · ".join(parts)


def describe(d: CustomerDetail, warning_share: Decimal, rate: ApiDict | None = None) -> str:
    c = d.customer
    t = d.terms
    state = c.state(warning_share)
    style = cells.BADGE_STYLES.get(state, "")
    budget = (
        f"{cells.usd_text(c.spent_nanos)} of {cells.usd_text(c.budget_nanos)} "
        f"({(c.budget_share or 0) * 100:.1f}%) · held {cells.usd_text(c.held_nanos)}"
        f"{_source(t, 'monthly_budget_usd')}"
        if c.budget_nanos is not None
        else "no monthly cap"
    )
    wallet = (
        f"{cells.usd_text(c.wallet_nanos)} (held {cells.usd_text(c.wallet_held_nanos)})"
        if c.wallet_nanos is not None
        else "postpaid (no wallet)"
    )
    threshold = cells.usd_text(c.threshold_nanos) if c.threshold_nanos is not None else "none"
    return (
        f"[b]{c.name}[/b]  [{style}]{state}[/]\n"
        f"id {c.id} · external id {c.external_id} · {c.email or 'no email'}\n"
        f"Budget this month: {budget}\n"
        f"Wallet: {wallet} · low-balance threshold {threshold}"
        f"{_source(t, 'low_balance_threshold_usd')} · "
        f"markup {c.markup or 'global default'}{_source(t, 'markup')}\n"
        f"Month to date: {c.mtd_requests:,} requests · cost {cells.usd_text(c.mtd_cost_nanos)} · "
        f"price {cells.usd_text(c.mtd_price_nanos)} · margin {cells.usd_text(c.margin_nanos)}"
        + (f" · Stripe {d.stripe_customer_id}" if d.stripe_customer_id else "")
        + "\n"
        + (f"{forecast}\n" if (forecast := describe_forecast(d)) is not None else "")
        + describe_terms(d, rate)
    )


class CustomerDetailScreen(Screen[None]):
    view_name = "detail"

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("t", "topup", "Top up"),
        Binding("e", "edit", "Limits"),
        Binding("s", "suspend", "Suspend/resume"),
        Binding("a", "archive", "Archive"),
    ]

    def __init__(self, customer_id: str, backend: Backend, actions: DashboardActions) -> None:
        super().__init__(id="detail-screen")
        self.customer_id = customer_id
        self.backend = backend
        self.actions = actions
        self.detail: CustomerDetail | None = None
        self.rate: ApiDict | None = None
        self.audit: list[ApiDict] = []
        self.warning_share: Decimal = backend.warning_share

    def compose(self) -> ComposeResult:
        yield Static("Loading…", id="detail-header")
        yield Label("Usage by model · month to date", classes="box-title")
        yield DiffTable[UsageLine](
            USAGE_COLUMNS, id="by-model-table", sort_column="cost", sort_reverse=True
        )
        with Horizontal(id="detail-middle"):
            with Vertical(classes="list-box"):
                yield Label("Usage by day · last 30 days", classes="box-title")
                yield DiffTable[UsageLine](
                    DAY_COLUMNS, id="by-day-table", sort_column="key", sort_reverse=True
                )
            with Vertical(classes="list-box"):
                yield Label("Wallet transactions", classes="box-title")
                yield DiffTable[TransactionRow](
                    TXN_COLUMNS, id="txn-table", sort_column="time", sort_reverse=True
                )
        yield Label("Changes · audit log, newest first", classes="box-title")
        # Newest first as the service answers (no sort column: entries of one second
        # keep their order).
        yield DiffTable[dict[str, Any]](AUDIT_COLUMNS, id="audit-table")
        yield Label("Recent requests", classes="box-title")
        yield DiffTable[RequestRow](
            SMALL_REQUEST_COLUMNS,
            id="detail-requests-table",
            sort_column="time",
            sort_reverse=True,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#by-model-table"))
        self.post_message(ViewInvalidated())

    # ------------------------------------------------------------------ live view
    def interested(self, activity: Activity) -> bool:
        return self.customer_id in activity.customer_ids

    async def load(self) -> DetailData:
        detail, rate, audit = await asyncio.gather(
            self.backend.customer_detail(self.customer_id),
            self.backend.rate_usage(self.customer_id),
            self.backend.audit(self.customer_id, AUDIT_LIMIT),
        )
        return DetailData(detail, rate, audit)

    def apply(self, data: DetailData) -> int:
        d = self.detail = data.detail
        self.rate = data.rate
        self.query_one("#detail-header", Static).update(describe(d, self.warning_share, data.rate))
        self.query_one("#by-model-table", DiffTable).sync(
            {u.key: u for u in d.by_model}, usage_cells
        )
        self.query_one("#by-day-table", DiffTable).sync({u.key: u for u in d.by_day}, day_cells)
        self.query_one("#detail-requests-table", DiffTable).sync(
            {r.id: r for r in d.requests},
            lambda r: [c for i, c in enumerate(request_cells(r)) if i != 1],  # no customer
        )
        self.query_one("#txn-table", DiffTable).sync({t.id: t for t in d.transactions}, txn_cells)
        self.audit = data.audit
        self.query_one("#audit-table", DiffTable).sync(
            {str(e["id"]): e for e in data.audit}, audit_cells
        )
        return len(d.requests) + len(d.transactions) + len(data.audit)

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_topup(self) -> None:
        self.actions.open_topup(self.customer_id)

    def action_edit(self) -> None:
        self.actions.open_limits(self.customer_id)

    def action_suspend(self) -> None:
        self.actions.toggle_suspend(self.customer_id)

    def action_archive(self) -> None:
        self.actions.confirm_archive(self.customer_id)
