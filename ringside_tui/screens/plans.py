"""Plans: named defaults for customers (budget, prepaid, markup, models, rate limits).

Drawn from the plan service's API-shaped dicts (`services.plans.list_all`, the same the
HTTP API answers with, with each plan's customer count), through the backend. Plans are
few: the whole list is read on each refresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from gateway.terms import LIMIT_NAMES, LimitName
from ringside_tui.widgets import cells
from ringside_tui.widgets.diff_table import Column, DiffTable

if TYPE_CHECKING:
    from ringside_tui.actions import DashboardActions
    from ringside_tui.backend import ApiDict, Backend
    from ringside_tui.bridge import Activity

PLAN_COLUMNS = [
    Column("name", "Name", 16),
    Column("external_id", "External id", 11),
    Column("customers", "Customers", 9),
    Column("budget", "Budget", 10),
    Column("prepaid", "Prepaid", 7),
    Column("markup", "Markup", 6),
    Column("rpm", "Req/min", 7),
    Column("tpm", "Tok/min", 8),
    Column("concurrent", "At once", 7),
    Column("models", "Models", 15),
]
# The refresh that follows these events is pulled forward (the idle refresh catches the
# rest): a plan changed, or a customer moved onto or off one.
PLAN_EVENTS = frozenset({"plan.changed", "customer.changed"})


@dataclass(frozen=True)
class PlanRow:
    """A plan as the table shows it, compared by value (the diff skips unchanged rows)."""

    id: str
    name: str
    external_id: str | None
    customers: int
    budget_nanos: int | None
    threshold_nanos: int | None
    prepaid: bool | None
    markup: str | None
    allowed_models: tuple[str, ...] | None
    limits: tuple[int | None, ...]
    data: ApiDict = field(compare=False, repr=False)

    @classmethod
    def from_api(cls, plan: ApiDict) -> PlanRow:
        limits = plan.get("limits") or {}
        models = plan.get("allowed_models")
        return cls(
            id=str(plan["id"]),
            name=str(plan["name"]),
            external_id=plan.get("external_id"),
            customers=int(plan.get("customers") or 0),
            budget_nanos=cells.api_nanos(plan.get("monthly_budget_usd")),
            threshold_nanos=cells.api_nanos(plan.get("low_balance_threshold_usd")),
            prepaid=plan.get("prepaid"),
            markup=cells.api_text(plan.get("markup")) or None,
            allowed_models=tuple(models) if models is not None else None,
            limits=tuple(limits.get(name) for name in LIMIT_NAMES),
            data=plan,
        )

    def limit(self, name: LimitName) -> int | None:
        return self.limits[LIMIT_NAMES.index(name)]


def _limit_cell(value: int | None, *, short: bool = False) -> cells.Cell:
    if value is None:
        return cells.cell("—", None, style="dim", justify="right")
    text = cells.tokens_text(value) if short else f"{value:,}"
    return cells.cell(text, value, justify="right")


def models_text(models: tuple[str, ...] | None) -> str:
    return "all" if models is None else ", ".join(models) or "none"


def plan_cells(p: PlanRow) -> list[Any]:
    prepaid = "—" if p.prepaid is None else "yes" if p.prepaid else "no"
    return [
        cells.cell(p.name, p.name.lower()),
        cells.cell(p.external_id or "—", (p.external_id or "").lower()),
        cells.count(p.customers),
        cells.money(p.budget_nanos) if p.budget_nanos is not None else cells.cell("no cap", None),
        cells.cell(prepaid, prepaid),
        cells.cell(p.markup or "—", p.markup, justify="right"),
        _limit_cell(p.limit("requests_per_minute")),
        _limit_cell(p.limit("tokens_per_minute"), short=True),
        _limit_cell(p.limit("max_concurrent")),
        cells.cell(
            models_text(p.allowed_models),
            models_text(p.allowed_models),
            style="dim" if p.allowed_models is None else "",
        ),
    ]


def describe(p: PlanRow | None) -> str:
    """The selected plan in full (the table truncates the model list)."""
    if p is None:
        return "No plan selected. Press [b]n[/b] to create one."
    limits = [
        f"{value:,} {unit}"
        for value, unit in zip(p.limits, ("requests/min", "tokens/min", "at once"), strict=True)
        if value is not None
    ]
    budget = f"{cells.usd_text(p.budget_nanos)} a month" if p.budget_nanos is not None else "no cap"
    threshold = cells.usd_text(p.threshold_nanos) if p.threshold_nanos is not None else "none"
    return (
        f"[b]{p.name}[/b]  {p.id}{' · external id ' + p.external_id if p.external_id else ''}"
        f" · {p.customers:,} customer(s)\n"
        f"Budget {budget} · markup {p.markup or 'global default'} · "
        f"low-balance alert {threshold} · "
        f"prepaid {'yes' if p.prepaid else 'no' if p.prepaid is False else 'not set'}\n"
        f"Models: {models_text(p.allowed_models)}\n"
        f"Rate limits: {', '.join(limits) if limits else 'none'}"
    )


class PlansView(Vertical):
    view_name = "plans"

    BINDINGS = [
        Binding("n", "create", "New plan"),
        Binding("e", "edit", "Edit"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def __init__(self, backend: Backend, actions: DashboardActions) -> None:
        super().__init__(id="plans-view")
        self.backend = backend
        self.actions = actions
        self.rows: dict[str, PlanRow] = {}

    def compose(self) -> ComposeResult:
        yield Static(
            "Plans set defaults for their customers; a customer's own value wins, field by "
            "field (and limit by limit). Changes apply from each customer's next call.",
            id="plans-intro",
            classes="hint",
        )
        yield DiffTable[PlanRow](PLAN_COLUMNS, id="plans-table", sort_column="name")
        yield Static("", id="plan-detail")
        yield Static(
            "n new plan · e / enter edit · d delete (only a plan no one is on)", classes="hint"
        )

    @property
    def table(self) -> DiffTable[PlanRow]:
        return self.query_one("#plans-table", DiffTable)

    # ------------------------------------------------------------------ live view
    def interested(self, activity: Activity) -> bool:
        return bool(activity.kinds & PLAN_EVENTS)

    async def load(self) -> list[ApiDict]:
        plans = await self.backend.plans()
        self.actions.remember_plans(plans)
        return plans

    def apply(self, plans: list[ApiDict]) -> int:
        self.rows = {str(p["id"]): PlanRow.from_api(p) for p in plans}
        self.table.sync(self.rows, plan_cells)
        self._show_selected()
        return len(self.rows)

    def _show_selected(self) -> None:
        self.query_one("#plan-detail", Static).update(describe(self.table.selected_item()))

    @on(DataTable.RowHighlighted, "#plans-table")
    def _highlighted(self) -> None:
        self._show_selected()

    @on(DataTable.RowSelected, "#plans-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit()

    # ------------------------------------------------------------------ actions
    def _selected_plan(self) -> PlanRow | None:
        plan = self.table.selected_item()
        if plan is None:
            self.notify("Select a plan first.", severity="warning")
        return plan

    def action_create(self) -> None:
        self.actions.new_plan()

    def action_edit(self) -> None:
        if (plan := self._selected_plan()) is not None:
            self.actions.edit_plan(plan.data)

    def action_delete(self) -> None:
        if (plan := self._selected_plan()) is not None:
            self.actions.confirm_delete_plan(plan.data)
