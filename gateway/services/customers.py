"""Customer lifecycle: the one implementation the HTTP API and the dashboard both call."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import peewee as pw

from gateway.audit import SYSTEM, Action, Actor, diff, record
from gateway.clock import Clock, to_ms
from gateway.db.database import Database
from gateway.db.models import Customer, Plan
from gateway.errors import CustomerExists, InvalidRequest, PlanNotFound
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.jsoncodec import encode
from gateway.ledger import Forecast, Idempotency, Ledger, StoredResponse, read_forecast
from gateway.serializers import customer_to_api, forecast_to_api
from gateway.services import validation as v
from gateway.services.pagination import Page, keyset_page
from gateway.services.plans import resolve_plan
from gateway.terms import resolve_terms

log = logging.getLogger("ringside.customers")

CREATE_FIELDS = {
    "external_id",
    "name",
    "email",
    "monthly_budget_usd",
    "budget_usd",
    "markup",
    "prepaid",
    "low_balance_threshold_usd",
    "stripe_customer_id",
    "metadata",
    "plan",
    "limits",
    "allowed_models",
}
UPDATE_FIELDS = (CREATE_FIELDS - {"external_id"}) | {"status", "external_id"}
STATUSES = ("active", "suspended", "archived")


def _audited(row: Customer) -> dict[str, Any]:
    """The customer's fields as the audit log compares them (money in nanos)."""
    return {
        "external_id": row.external_id,
        "name": row.name,
        "email": row.email,
        "status": row.status,
        "monthly_budget_usd": row.monthly_budget_nanos,
        "markup": row.markup,
        "prepaid": bool(row.prepaid) if row.prepaid_own else None,
        "low_balance_threshold_usd": row.low_balance_threshold_nanos,
        "stripe_customer_id": row.stripe_customer_id,
        "metadata": row.metadata or None,
        "plan": row.plan_id,
        "limits": row.limits,
        "allowed_models": row.allowed_models,
    }


def _update_action(before: str, after: str) -> Action:
    if after != before and after == "archived":
        return "customer.archived"
    if after != before and after == "suspended":
        return "customer.suspended"
    return "customer.updated"


def _plan_id(body: dict[str, Any]) -> str | None:
    """The `plan_` id that `body["plan"]` (an id or an external id, or null) names."""
    ref = v.string(body, "plan")
    if ref is None:
        return None
    try:
        return resolve_plan(ref).id
    except PlanNotFound:
        raise InvalidRequest(f"No plan with id or external_id '{ref}'.", param="plan") from None


def _refuse_anothers_id(external_id: str) -> None:
    """FC-Customer resolves `cus_` ids first: an external id equal to another customer's id
    could never be addressed, and would read as that customer."""
    if external_id.startswith("cus_") and Customer.get_or_none(Customer.id == external_id):
        raise InvalidRequest(
            f"external_id '{external_id}' is another customer's id.", param="external_id"
        )


class CustomerService:
    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        bus: EventBus,
        idempotency: Idempotency,
        clock: Clock,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.bus = bus
        self.idempotency = idempotency
        # Called with the new customer (API dict) after creation commits, e.g. to create
        # the matching Stripe customer. A failing hook is logged, never undoes the create.
        self.on_created: list[Callable[[dict[str, Any]], Awaitable[None]]] = []

    async def run_created_hooks(self, customer: dict[str, Any]) -> None:
        for hook in self.on_created:
            try:
                await hook(customer)
            except Exception:
                log.exception("customer-created hook failed for %s", customer.get("id"))

    # ------------------------------------------------------------------ async API
    async def create(self, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Create a customer (no idempotency key: the dashboard's form)."""
        out = await self.db.write(self.create_sync, body, actor)
        self.bus.publish("customer.changed", customer_id=out["id"])
        await self.run_created_hooks(out)
        return out

    async def create_idempotent(
        self,
        body: Any,
        *,
        idempotency_key: str | None,
        raw_body: bytes,
        actor: Actor = SYSTEM,
    ) -> StoredResponse:
        """Create a customer honouring an `Idempotency-Key`: the same key and body answer
        the stored response; the customer and the stored answer commit together."""
        created: list[dict[str, Any]] = []

        def operation() -> tuple[int, bytes]:
            customer = self.create_sync(body, actor)
            created.append(customer)
            return 201, encode(customer)

        result = await self.idempotency.run(
            idempotency_key, "customers.create", raw_body, operation
        )
        if created:
            self.bus.publish("customer.changed", customer_id=created[0]["id"])
            await self.run_created_hooks(created[0])
        return result

    async def retrieve(self, ref: str) -> dict[str, Any]:
        return await self.db.read(self._retrieve_sync, ref)

    async def update(self, ref: str, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        out = await self.db.write(self._update_sync, ref, body, actor)
        self.bus.publish("customer.changed", customer_id=out["id"])
        return out

    async def archive(self, ref: str, actor: Actor = SYSTEM) -> dict[str, Any]:
        return await self.update(ref, {"status": "archived"}, actor)

    async def list(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        return await self.db.read(self._list_sync, params)

    # ------------------------------------------------------------------ sync bodies
    def _attach_plan(self, body: dict[str, Any]) -> str | None:
        """The plan `body["plan"]` names, share-locked until the transaction ends, so a
        concurrent delete of that plan waits and then sees this customer on it (409)."""
        plan_id = _plan_id(body)
        if plan_id is not None and not self.db.lock_row("plan", plan_id, shared=True):
            raise InvalidRequest(f"No plan with id '{plan_id}'.", param="plan")
        return plan_id

    def _budget(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        """(given, nanos) for monthly_budget_usd or its alias budget_usd."""
        has_monthly = "monthly_budget_usd" in body
        has_alias = "budget_usd" in body
        if has_monthly and has_alias and body["monthly_budget_usd"] != body["budget_usd"]:
            raise InvalidRequest(
                "Give monthly_budget_usd or budget_usd, not both.", param="budget_usd"
            )
        if has_monthly:
            return True, v.usd_nanos(body, "monthly_budget_usd")
        if has_alias:
            return True, v.usd_nanos(body, "budget_usd")
        return False, None

    def create_sync(self, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        body = v.require_object(body)
        v.reject_unknown(body, CREATE_FIELDS)
        external_id = v.external_id(body)
        name = v.string(body, "name", required=True)
        email = v.email(body)
        _, budget = self._budget(body)
        markup = v.markup(body)
        prepaid = v.boolean(body, "prepaid")
        threshold = v.usd_nanos(body, "low_balance_threshold_usd")
        stripe_id = v.string(body, "stripe_customer_id")
        metadata = v.metadata(body)
        limits = v.rate_limits(body, "limits")
        models = v.allowed_models(body)
        now = to_ms(self.clock())
        with self.db.tx():
            plan_id = self._attach_plan(body)
            _refuse_anothers_id(external_id)
            if Customer.get_or_none(Customer.external_id == external_id) is not None:
                raise CustomerExists(
                    f"A customer with external_id '{external_id}' already exists.",
                    param="external_id",
                )
            try:
                row = Customer.create(
                    id=new_id("cus"),
                    external_id=external_id,
                    name=name,
                    email=email,
                    status="active",
                    monthly_budget_nanos=budget,
                    markup=str(markup) if markup is not None else None,
                    prepaid=bool(prepaid),
                    prepaid_own=prepaid is not None,
                    low_balance_threshold_nanos=threshold,
                    stripe_customer_id=stripe_id,
                    metadata=metadata or {},
                    created_ms=now,
                    updated_ms=now,
                    plan_id=plan_id,
                    limits=limits,
                    allowed_models=models,
                )
            except pw.IntegrityError:
                raise CustomerExists(
                    f"A customer with external_id '{external_id}' already exists.",
                    param="external_id",
                ) from None
            record(
                actor,
                "customer.created",
                now,
                target_id=row.id,
                customer_id=row.id,
                changes=diff({}, {k: v for k, v in _audited(row).items() if v is not None}),
            )
        return self._to_api(row)

    def _retrieve_sync(self, ref: str) -> dict[str, Any]:
        """The customer with its spend forecast. Only the single retrieve carries the
        forecast: it reads the customer's rollups, which a list must not do per row."""
        row = self.ledger.resolve_customer(ref)
        out = self._to_api(row)
        out["forecast"] = forecast_to_api(self._forecast_sync(row.id))
        return out

    def _forecast_sync(self, customer_id: str) -> Forecast:
        _, terms = self.ledger.customer_on_terms(customer_id)
        return read_forecast(
            customer_id,
            to_ms(self.clock()),
            budget_nanos=terms.monthly_budget_nanos,
            prepaid=terms.prepaid,
        )

    def _update_sync(self, ref: str, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        body = v.require_object(body)
        v.reject_unknown(body, UPDATE_FIELDS)
        now = to_ms(self.clock())
        with self.db.tx():
            row = self.ledger.resolve_customer(ref)
            # Lock, then read again: two PATCHes merging `limits` must not lose one.
            self.db.lock_row("customer", row.id)
            row = Customer.get_by_id(row.id)
            cap_before = self.ledger.customer_on_terms(row.id)[1].monthly_budget_nanos
            changes: dict[Any, Any] = {}
            if "external_id" in body:
                ext = v.external_id(body)
                if ext != row.external_id:
                    _refuse_anothers_id(ext)
                    other = Customer.get_or_none(Customer.external_id == ext)
                    if other is not None:
                        raise CustomerExists(
                            f"A customer with external_id '{ext}' already exists.",
                            param="external_id",
                        )
                    changes[Customer.external_id] = ext
            if "name" in body:
                changes[Customer.name] = v.string(body, "name", required=True)
            if "email" in body:
                changes[Customer.email] = v.email(body)
            given, budget = self._budget(body)
            if given:
                changes[Customer.monthly_budget_nanos] = budget
            if "plan" in body:
                changes[Customer.plan_id] = self._attach_plan(body)
            if "limits" in body:
                changes[Customer.limits] = (
                    v.rate_limits(body, "limits", base=row.limits or {})
                    if body["limits"] is not None
                    else None
                )
            if "allowed_models" in body:
                changes[Customer.allowed_models] = v.allowed_models(body)
            if "markup" in body:
                m = v.markup(body)
                changes[Customer.markup] = str(m) if m is not None else None
            if "prepaid" in body:
                prepaid = v.boolean(body, "prepaid")  # null: the plan's (or false)
                changes[Customer.prepaid] = bool(prepaid)
                changes[Customer.prepaid_own] = prepaid is not None
            if "low_balance_threshold_usd" in body:
                changes[Customer.low_balance_threshold_nanos] = v.usd_nanos(
                    body, "low_balance_threshold_usd"
                )
            if "stripe_customer_id" in body:
                changes[Customer.stripe_customer_id] = v.string(body, "stripe_customer_id")
            if "metadata" in body:
                changes[Customer.metadata] = v.metadata(body) or {}
            if "status" in body:
                status = body["status"]
                if status not in STATUSES:
                    raise InvalidRequest(
                        "status must be one of active, suspended, archived.", param="status"
                    )
                if row.status == "archived" and status != "archived":
                    raise InvalidRequest(
                        "An archived customer cannot be reactivated; create a new one.",
                        param="status",
                    )
                changes[Customer.status] = status
                if status == "archived" and row.archived_ms is None:
                    changes[Customer.archived_ms] = now
            if changes:
                changes[Customer.updated_ms] = now
                Customer.update(changes).where(Customer.id == row.id).execute()
                cap_after = self.ledger.customer_on_terms(row.id)[1].monthly_budget_nanos
                if cap_after != cap_before:
                    self.ledger.rearm_budget_sync(row.id, cap_after)
            after = Customer.get_by_id(row.id)
            changed = diff(_audited(row), _audited(after))
            if changed:
                record(
                    actor,
                    _update_action(row.status, after.status),
                    now,
                    target_id=row.id,
                    customer_id=row.id,
                    changes=changed,
                )
            row = after
        return self._to_api(row)

    def _list_sync(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        limit = v.limit(params.get("limit"))
        query = Customer.select()
        status = params.get("status")
        if status:
            if status not in STATUSES:
                raise InvalidRequest(
                    "status must be one of active, suspended, archived.", param="status"
                )
            query = query.where(Customer.status == status)
        if params.get("external_id"):
            query = query.where(Customer.external_id == params["external_id"])
        search = params.get("search") or params.get("q")
        if search:
            like = f"%{search.lower()}%"
            query = query.where(
                (pw.fn.LOWER(Customer.name) ** like)
                | (pw.fn.LOWER(pw.fn.COALESCE(Customer.email, "")) ** like)
                | (pw.fn.LOWER(Customer.external_id) ** like)
            )
        result = keyset_page(
            query,
            Customer.id,
            limit=limit,
            starting_after=params.get("starting_after"),
            ending_before=params.get("ending_before"),
            exists=lambda cid: Customer.get_or_none(Customer.id == cid) is not None,
            kind="customer",
        )
        return Page(self._many_to_api(result.data), result.has_more)

    # ------------------------------------------------------------------ views
    def _to_api(self, row: Customer) -> dict[str, Any]:
        return self._many_to_api([row])[0]

    def _many_to_api(self, rows: builtins.list[Customer]) -> builtins.list[dict[str, Any]]:
        ids = [r.id for r in rows]
        months = self.ledger.month_state_sync(ids) if ids else {}
        wallets = self.ledger.wallet_state_sync(ids) if ids else {}
        plan_ids = {r.plan_id for r in rows if r.plan_id}
        plans = {p.id: p for p in Plan.select().where(Plan.id.in_(plan_ids))} if plan_ids else {}
        out = []
        for r in rows:
            terms = resolve_terms(r, plans.get(r.plan_id) if r.plan_id else None)
            out.append(
                customer_to_api(
                    r,
                    wallet=wallets.get(r.id, (0, 0)) if terms.prepaid or r.id in wallets else None,
                    month=months.get(r.id),
                    terms=terms,
                )
            )
        return out

    async def rate_usage(self, ref: str) -> dict[str, Any]:
        """This minute's requests and tokens and the calls in flight, against the customer's
        effective limits (the dashboard's customer detail)."""
        return await self.db.read(self._rate_usage_sync, ref)

    def _rate_usage_sync(self, ref: str) -> dict[str, Any]:
        customer, terms = self.ledger.customer_on_terms(ref)
        usage = self.ledger.rate_usage_sync(customer.id)
        return {
            "requests_this_minute": usage.requests,
            "tokens_this_minute": usage.tokens,
            "in_flight": usage.in_flight,
            "limits": terms.limits.to_json(),
        }
