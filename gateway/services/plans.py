"""Plans: named defaults for customers (budget, prepaid, threshold, markup, allowed models,
rate limits). A customer's own value wins field by field (see `gateway.terms`).

A change to a plan applies to every customer on it at the next call: the ledger reads
the plan with the customer in each reservation. Every change records `plan.changed` in
its own transaction, for the webhook endpoints.
"""

from __future__ import annotations

import builtins
from typing import Any, Literal, Protocol

import peewee as pw

from gateway.audit import SYSTEM, Actor, diff, record
from gateway.clock import Clock, month_of, to_ms
from gateway.db.database import Database
from gateway.db.models import BudgetPeriod, Customer, Event, Plan
from gateway.errors import InvalidRequest, PlanExists, PlanInUse, PlanNotFound
from gateway.event_types import EventType, event_to_payload
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.ledger import Ledger
from gateway.serializers import plan_event_payload, plan_to_api
from gateway.services import validation as v
from gateway.services.pagination import Page, keyset_page

PLAN_FIELDS = {
    "name",
    "external_id",
    "monthly_budget_usd",
    "prepaid",
    "low_balance_threshold_usd",
    "markup",
    "allowed_models",
    "limits",
}
PlanAction = Literal["created", "updated", "deleted"]


class OperatorEvents(Protocol):
    """Records an event that is not about one customer, inside the open transaction (the
    webhooks package's outbox, wired in `gateway.wiring`)."""

    def record_operator_event(self, type_: EventType, data: dict[str, Any], event_ms: int) -> Event:
        """Record the event and queue its deliveries."""
        ...


def _audited(row: Plan) -> dict[str, Any]:
    """The plan's fields as the audit log compares them (money in nanos)."""
    return {
        "name": row.name,
        "external_id": row.external_id,
        "monthly_budget_usd": row.monthly_budget_nanos,
        "prepaid": row.prepaid,
        "low_balance_threshold_usd": row.low_balance_threshold_nanos,
        "markup": row.markup,
        "allowed_models": row.allowed_models,
        "limits": row.limits,
    }


def _rows(query: Any) -> builtins.list[tuple[Any, ...]]:
    """A `.tuples()` query's rows (peewee's stubs type them as model instances)."""
    return list(query)


def _in_use(plan_id: str) -> int:
    return int(
        Customer.select().where(Customer.plan_id == plan_id, Customer.status != "archived").count()
    )


def resolve_plan(ref: str) -> Plan:
    """By `plan_` id or by external id. Raises PlanNotFound (404, param `id`)."""
    row = Plan.get_or_none(Plan.id == ref) if ref.startswith("plan_") else None
    if row is None:
        row = Plan.get_or_none(Plan.external_id == ref)
    if row is None:
        raise PlanNotFound(f"No plan with id or external_id '{ref}'.", param="id")
    return row


class PlanService:
    def __init__(
        self, db: Database, ledger: Ledger, bus: EventBus, events: OperatorEvents, clock: Clock
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.bus = bus
        self.events = events
        self.clock = clock

    # ------------------------------------------------------------------ async API
    async def create(self, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        out, event = await self.db.write(self._create_sync, body, actor)
        self._published(out["id"], event)
        return out

    async def retrieve(self, ref: str) -> dict[str, Any]:
        return await self.db.read(self._retrieve_sync, ref)

    async def list(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        return await self.db.read(self._list_sync, params)

    async def list_all(self) -> builtins.list[dict[str, Any]]:
        """Every plan with its customer count (the dashboard's Plans screen, pickers)."""
        return await self.db.read(self._list_all_sync)

    async def update(self, ref: str, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        out, event = await self.db.write(self._update_sync, ref, body, actor)
        self._published(out["id"], event)
        return out

    async def delete(self, ref: str, actor: Actor = SYSTEM) -> dict[str, Any]:
        out, event = await self.db.write(self._delete_sync, ref, actor)
        self._published(out["id"], event)
        return out

    def _published(self, plan_id: str, event: dict[str, Any] | None) -> None:
        if event is not None:
            self.bus.publish("event.recorded", event=event)
        self.bus.publish("plan.changed", plan_id=plan_id)

    # ------------------------------------------------------------------ sync bodies
    def _values(self, body: dict[str, Any]) -> dict[Any, Any]:
        """The columns `body` sets (only the fields it names)."""
        values: dict[Any, Any] = {}
        if "name" in body:
            values[Plan.name] = v.string(body, "name", required=True)
        if "external_id" in body:
            values[Plan.external_id] = (
                v.external_id(body) if body["external_id"] is not None else None
            )
        if "monthly_budget_usd" in body:
            values[Plan.monthly_budget_nanos] = v.usd_nanos(body, "monthly_budget_usd")
        if "prepaid" in body:
            values[Plan.prepaid] = v.boolean(body, "prepaid")
        if "low_balance_threshold_usd" in body:
            values[Plan.low_balance_threshold_nanos] = v.usd_nanos(
                body, "low_balance_threshold_usd"
            )
        if "markup" in body:
            m = v.markup(body)
            values[Plan.markup] = str(m) if m is not None else None
        if "allowed_models" in body:
            values[Plan.allowed_models] = v.allowed_models(body)
        return values

    def _check_external_id(self, external_id: str | None, plan_id: str | None) -> None:
        if external_id is None:
            return
        if external_id.startswith("plan_"):
            raise InvalidRequest(
                "external_id may not start with 'plan_' (plan ids do).", param="external_id"
            )
        other = Plan.get_or_none(Plan.external_id == external_id)
        if other is not None and other.id != plan_id:
            raise PlanExists(
                f"A plan with external_id '{external_id}' already exists.", param="external_id"
            )

    def _create_sync(self, body: Any, actor: Actor) -> tuple[dict[str, Any], dict[str, Any]]:
        body = v.require_object(body)
        v.reject_unknown(body, PLAN_FIELDS)
        if "name" not in body:
            raise InvalidRequest("Missing required parameter: name.", param="name")
        values = self._values(body)
        values[Plan.limits] = v.rate_limits(body, "limits")
        now = to_ms(self.clock())
        with self.db.tx():
            self._check_external_id(values.get(Plan.external_id), None)
            try:
                row = Plan.create(
                    id=new_id("plan"),
                    created_ms=now,
                    updated_ms=now,
                    **{field.name: value for field, value in values.items()},
                )
            except pw.IntegrityError:
                raise PlanExists("A plan with this external_id already exists.") from None
            event = self._record(row, "created", sorted(body), now)
            record(
                actor,
                "plan.created",
                now,
                target_id=row.id,
                changes=diff({}, {k: v for k, v in _audited(row).items() if v is not None}),
            )
        return plan_to_api(row, customers=0), event

    def _retrieve_sync(self, ref: str) -> dict[str, Any]:
        row = resolve_plan(ref)
        return plan_to_api(row, customers=_in_use(row.id))

    def _list_sync(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        limit = v.limit(params.get("limit"))
        result = keyset_page(
            Plan.select(),
            Plan.id,
            limit=limit,
            starting_after=params.get("starting_after"),
            ending_before=params.get("ending_before"),
            exists=lambda pid: Plan.get_or_none(Plan.id == pid) is not None,
            kind="plan",
        )
        counts = self._counts([p.id for p in result.data])
        return Page(
            [plan_to_api(p, customers=counts.get(p.id, 0)) for p in result.data], result.has_more
        )

    def _list_all_sync(self) -> builtins.list[dict[str, Any]]:
        rows = list(Plan.select().order_by(Plan.name, Plan.id))
        counts = self._counts([p.id for p in rows])
        return [plan_to_api(p, customers=counts.get(p.id, 0)) for p in rows]

    @staticmethod
    def _counts(plan_ids: builtins.list[str]) -> dict[str, int]:
        if not plan_ids:
            return {}
        query = (
            Customer.select(Customer.plan_id, pw.fn.COUNT(Customer.id).alias("n"))
            .where(Customer.plan_id.in_(plan_ids), Customer.status != "archived")
            .group_by(Customer.plan_id)
            .tuples()
        )
        return {str(plan_id): int(n) for plan_id, n in _rows(query)}

    def _update_sync(
        self, ref: str, body: Any, actor: Actor
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        body = v.require_object(body)
        v.reject_unknown(body, PLAN_FIELDS)
        values = self._values(body)
        now = to_ms(self.clock())
        with self.db.tx():
            row = resolve_plan(ref)
            self.db.lock_row("plan", row.id)  # then read again: merges never lose a limit
            row = Plan.get_by_id(row.id)
            if "limits" in body:
                values[Plan.limits] = (
                    v.rate_limits(body, "limits", base=row.limits or {})
                    if body["limits"] is not None
                    else None
                )
            self._check_external_id(values.get(Plan.external_id), row.id)
            event = None
            if values:
                before = row
                values[Plan.updated_ms] = now
                Plan.update(values).where(Plan.id == row.id).execute()
                row = Plan.get_by_id(row.id)
                if row.monthly_budget_nanos != before.monthly_budget_nanos:
                    self._rearm_budgets(row)
                event = self._record(row, "updated", sorted(body), now)
                changed = diff(_audited(before), _audited(row))
                if changed:
                    record(actor, "plan.updated", now, target_id=row.id, changes=changed)
            return plan_to_api(row, customers=_in_use(row.id)), event

    def _rearm_budgets(self, plan: Plan) -> None:
        """The plan's cap changed: re-arm this month's crossings of the customers who take
        their budget from it, as a change of their own cap would."""
        period = month_of(self.clock())
        on_plan = (
            BudgetPeriod.select(BudgetPeriod.customer_id)
            .join(Customer, on=BudgetPeriod.customer_id == Customer.id)
            .where(
                Customer.plan_id == plan.id,
                Customer.monthly_budget_nanos.is_null(),
                BudgetPeriod.period == period,
            )
        )
        customer_ids: builtins.list[str] = [row.customer_id for row in on_plan]
        for customer_id in customer_ids:
            self.ledger.rearm_budget_sync(customer_id, plan.monthly_budget_nanos)

    def _delete_sync(self, ref: str, actor: Actor) -> tuple[dict[str, Any], dict[str, Any]]:
        now = to_ms(self.clock())
        with self.db.tx():
            row = resolve_plan(ref)
            # Customers attaching this plan share-lock it: wait for them, then count.
            self.db.lock_row("plan", row.id)
            in_use = _in_use(row.id)
            if in_use:
                raise PlanInUse(
                    f"Plan '{row.id}' is used by {in_use} customer(s); move them to another "
                    "plan (or none) first.",
                    param="id",
                    customers=in_use,
                )
            # Archived customers keep no plan: the plan row is about to go.
            Customer.update(plan_id=None).where(Customer.plan_id == row.id).execute()
            Plan.delete().where(Plan.id == row.id).execute()
            event = self._record(row, "deleted", [], now)
            record(actor, "plan.deleted", now, target_id=row.id)
        return {"id": row.id, "object": "plan", "deleted": True}, event

    def _record(
        self, row: Plan, action: PlanAction, fields: builtins.list[str], now: int
    ) -> dict[str, Any]:
        event = self.events.record_operator_event(
            EventType.PLAN_CHANGED,
            {"plan": plan_event_payload(row), "action": action, "changed": fields},
            now,
        )
        return event_to_payload(event)
