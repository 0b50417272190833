"""Overview: today's and month-to-date totals, live sparklines, top spenders, customers at risk."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from gateway.services.snapshots import CustomerRow, Overview, Series, Totals
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.backend import Backend
    from ringside_tui.bridge import Activity
    from ringside_tui.customer_cache import CustomerCache

TOTAL_COLUMNS = [
    Column("period", "", 14),
    Column("requests", "Requests", 10),
    Column("cost", "Cost", 13),
    Column("price", "Revenue", 13),
    Column("margin", "Margin", 13),
    Column("pct", "Margin %", 9),
    Column("tokens", "Tokens in / out", 18),
]
TOP_COLUMNS = [
    Column("name", "Customer", 18),
    Column("cost", "MTD cost", 10),
    Column("price", "MTD price", 10),
    Column("margin", "Margin", 10),
]
RISK_COLUMNS = [
    Column("name", "Customer", 18),
    Column("why", "Why", 22),
    Column("budget", "Budget use", 13),
]


def _totals_cells(label: str, t: Totals) -> list[Any]:
    return [
        cells.cell(label, label, style="bold"),
        cells.count(t.requests),
        cells.money(t.cost_nanos),
        cells.money(t.price_nanos),
        cells.margin(t.margin_nanos),
        cells.cell(cells.percent_text(t.margin_pct), t.margin_pct, justify="right"),
        cells.tokens(t.input_tokens, t.output_tokens),
    ]


def refused_text(s: Series) -> str:
    """Last minute's refusals by status: 402 (money) and 429 (rate limits), and 403 (models,
    suspended customers) when there were any."""
    parts = [f"402 [b]{s.refused_with(402)}[/b]", f"429 [b]{s.refused_with(429)}[/b]"]
    if forbidden := s.refused_with(403):
        parts.append(f"403 [b]{forbidden}[/b]")
    return "refused [dim](last min)[/dim]: " + " · ".join(parts)


class OverviewView(Vertical):
    view_name = "overview"

    def __init__(self, backend: Backend, customers: CustomerCache) -> None:
        super().__init__(id="overview-view")
        self.backend = backend
        self.customers = customers
        self.warning_share: Decimal = backend.warning_share
        self.data: Overview | None = None

    def compose(self) -> ComposeResult:
        totals = DiffTable[tuple[str, Totals]](TOTAL_COLUMNS, id="totals-table")
        totals.show_cursor = False  # two fixed rows: nothing to select
        totals.can_focus = False
        yield totals
        with Horizontal(id="sparks"):
            with Vertical(classes="spark-box"):
                yield Label("Requests/s · 60 s", id="rps-label", classes="spark-title")
                yield Sparkline([], id="rps-spark")
                yield Static("", id="refused-label", classes="spark-note")
            with Vertical(classes="spark-box"):
                yield Label("Spend/min · 30 min", id="spend-label", classes="spark-title")
                yield Sparkline([], id="spend-spark")
        with Horizontal(id="lists"):
            with Vertical(classes="list-box"):
                yield Label("Top customers by cost · month to date", classes="box-title")
                yield DiffTable[CustomerRow](TOP_COLUMNS, id="top-table")
            with Vertical(classes="list-box"):
                yield Label("At risk · ≥ 80% of budget, wallet low or empty", classes="box-title")
                yield DiffTable[tuple[CustomerRow, str]](RISK_COLUMNS, id="risk-table")
        yield Static("", id="overview-empty", classes="hint")

    # ------------------------------------------------------------------ live view
    def interested(self, activity: Activity) -> bool:
        return True

    async def load(self) -> Overview:
        return await self.backend.overview_for(await self.customers.load())

    def apply(self, data: Overview) -> int:
        self.data = data
        self.query_one("#totals-table", DiffTable).sync(
            {
                "today": ("Today", data.today),
                "month": (f"Month {data.period}", data.month),
            },
            lambda item: _totals_cells(*item),
        )
        s = data.series
        self.query_one("#rps-spark", Sparkline).data = [float(x) for x in s.requests_per_s]
        self.query_one("#spend-spark", Sparkline).data = [float(x) for x in s.spend_per_min_nanos]
        per_s = sum(s.requests_per_s[-10:]) / 10
        self.query_one("#rps-label", Label).update(
            f"Requests/s [dim](60 s)[/dim] [b]{per_s:.1f}[/b] · {s.last_minute_requests}/min · "
            f"[red]{s.last_minute_errors} err[/red] · "
            f"[#ff8700]{s.last_minute_refused} refused[/]"
        )
        self.query_one("#refused-label", Static).update(refused_text(s))
        self.query_one("#spend-label", Label).update(
            f"Spend/min [dim](30 min)[/dim] [b]{cells.usd_text(s.spend_per_min_nanos[-1])}[/b] · "
            f"{cells.usd_text(sum(s.spend_per_min_nanos))} total"
        )
        top = {c.id: c for c in data.top_by_cost(8)}
        self.query_one("#top-table", DiffTable).sync(
            top,
            lambda c: [
                cells.cell(c.name, c.name.lower()),
                cells.money(c.mtd_cost_nanos),
                cells.money(c.mtd_price_nanos),
                cells.margin(c.margin_nanos),
            ],
        )
        risky = {c.id: (c, why) for c, why in data.at_risk(self.warning_share)}
        self.query_one("#risk-table", DiffTable).sync(
            risky,
            lambda cw: [
                cells.cell(cw[0].name, cw[0].name.lower()),
                cells.cell(
                    cw[1],
                    cw[1],
                    style="red" if cw[1] in ("over budget", "wallet empty") else "#ff8700",
                ),
                cells.budget_bar(cw[0].budget_share),
            ],
        )
        hint = ""
        if not data.customers:
            hint = "No customers yet: press [b]n[/b] to create one, or run [b]ringside demo[/b]."
        self.query_one("#overview-empty", Static).update(hint)
        return len(data.customers)
