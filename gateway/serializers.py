"""API representations of stored rows. Money leaves here as exact JSON numbers (event
data, a stored snapshot, keeps its historical float USD amounts)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from gateway.clock import iso_ms
from gateway.db.models import ApiKey, AuditEntry, Customer, Plan, WalletTransaction
from gateway.ledger import (
    BudgetCrossed,
    EventFacts,
    Forecast,
    RateLimited,
    WalletCrossed,
    WalletToppedUp,
    nanos_to_decimal,
    nanos_to_json,
)
from gateway.terms import RateLimits, Terms


def _markup(text: str | None) -> Any:
    if text is None:
        return None
    d = Decimal(text)
    return msgspec.Raw(format(d.normalize(), "f").encode())


def customer_to_api(
    c: Customer,
    *,
    wallet: tuple[int, int] | None = None,
    month: tuple[str, int, int] | None = None,
    terms: Terms | None = None,
) -> dict[str, Any]:
    """`wallet` = (balance, held) nanos; `month` = (period, spent, held) nanos. The top-level
    money fields are the customer's own settings (null: its plan's value applies);
    `effective` is what applies, with where each value comes from."""
    if c.prepaid_own or c.plan_id is None:
        prepaid: bool | None = bool(c.prepaid)
    else:
        prepaid = None  # on a plan, not set: the plan's
    out: dict[str, Any] = {
        "id": c.id,
        "object": "customer",
        "external_id": c.external_id,
        "name": c.name,
        "email": c.email,
        "status": c.status,
        "monthly_budget_usd": nanos_to_json(c.monthly_budget_nanos),
        "markup": _markup(c.markup),
        "prepaid": prepaid,
        "low_balance_threshold_usd": nanos_to_json(c.low_balance_threshold_nanos),
        "stripe_customer_id": c.stripe_customer_id,
        "metadata": c.metadata or {},
        "plan": c.plan_id,
        "allowed_models": c.allowed_models,
        "limits": RateLimits.from_json(c.limits).to_json(),
        "created": c.created_ms // 1000,
        "created_at": iso_ms(c.created_ms),
        "updated_at": iso_ms(c.updated_ms),
        "archived_at": iso_ms(c.archived_ms),
    }
    if wallet is not None:
        balance, held = wallet
        out["wallet"] = {
            "balance_usd": nanos_to_json(balance),
            "held_usd": nanos_to_json(held),
            "available_usd": nanos_to_json(balance - held),
        }
    if terms is not None:
        out["effective"] = terms_to_api(terms)
    if month is not None:
        period, spent, held = month
        budget = terms.monthly_budget_nanos if terms is not None else c.monthly_budget_nanos
        out["budget"] = {
            "period": period,
            "spent_usd": nanos_to_json(spent),
            "held_usd": nanos_to_json(held),
            "remaining_usd": nanos_to_json(max(budget - spent - held, 0))
            if budget is not None
            else None,
        }
    return out


def _usd_float(nanos: int | None) -> float | None:
    return None if nanos is None else float(nanos_to_decimal(nanos))


def forecast_to_api(f: Forecast) -> dict[str, Any]:
    """A customer's spend forecast: RFC 3339 times and exact USD, each null as
    `gateway.ledger.forecast` says (all of them while there is under a day of traffic)."""
    return {
        "budget_exhausted_at": iso_ms(f.budget_exhausted_ms),
        "wallet_empty_at": iso_ms(f.wallet_empty_ms),
        "month_end_cost_usd": nanos_to_json(f.month_end_cost_nanos),
        "month_end_price_usd": nanos_to_json(f.month_end_price_nanos),
    }


def forecast_event_payload(f: Forecast) -> dict[str, Any]:
    """The forecast as embedded in `wallet.low` / `budget.warning` (plain JSON types, like
    the rest of an event's data)."""
    return {
        "budget_exhausted_at": iso_ms(f.budget_exhausted_ms),
        "wallet_empty_at": iso_ms(f.wallet_empty_ms),
        "month_end_cost_usd": _usd_float(f.month_end_cost_nanos),
        "month_end_price_usd": _usd_float(f.month_end_price_nanos),
    }


def customer_event_payload(c: Customer) -> dict[str, Any]:
    """The customer as embedded in event payloads (plain JSON types, stored in the event row)."""
    return {
        "id": c.id,
        "object": "customer",
        "external_id": c.external_id,
        "name": c.name,
        "email": c.email,
        "status": c.status,
        "monthly_budget_usd": _usd_float(c.monthly_budget_nanos),
        "prepaid": bool(c.prepaid),
        "low_balance_threshold_usd": _usd_float(c.low_balance_threshold_nanos),
        "stripe_customer_id": c.stripe_customer_id,
        "metadata": c.metadata or {},
    }


def event_data(customer: Customer, facts: EventFacts) -> dict[str, Any]:
    """A customer event's `data`, as stored in its row and delivered: the customer as it
    was, then the event's own fields."""
    data: dict[str, Any] = {"customer": customer_event_payload(customer)}
    if isinstance(facts, BudgetCrossed):
        cap, spent = facts.budget_nanos, facts.spent_nanos
        data["period"] = facts.period
        data["monthly_budget_usd"] = _usd_float(cap)
        data["spent_usd"] = _usd_float(spent)
        data["share"] = float(Decimal(spent) / Decimal(cap)) if cap else None
        if facts.warning_share is not None:
            data["warning_share"] = float(facts.warning_share)
        if facts.forecast is not None:
            data["forecast"] = forecast_event_payload(facts.forecast)
    elif isinstance(facts, WalletCrossed):
        data["balance_usd"] = _usd_float(facts.balance_nanos)
        data["low_balance_threshold_usd"] = _usd_float(facts.low_balance_threshold_nanos)
        if facts.forecast is not None:
            data["forecast"] = forecast_event_payload(facts.forecast)
    elif isinstance(facts, WalletToppedUp):
        data["amount_usd"] = _usd_float(facts.amount_nanos)
        data["balance_usd"] = _usd_float(facts.balance_nanos)
        data["transaction_id"] = facts.transaction_id
    elif isinstance(facts, RateLimited):
        data["limit"] = facts.limit
        data["limit_value"] = facts.value
        data["retry_after_s"] = facts.retry_after_s
        data["plan"] = facts.plan_id
    return data


def transaction_to_api(t: WalletTransaction) -> dict[str, Any]:
    return {
        "id": t.id,
        "object": "wallet_transaction",
        "customer_id": t.customer_id,
        "type": t.type,
        "amount_usd": nanos_to_json(t.amount_nanos),
        "balance_after_usd": nanos_to_json(t.balance_after_nanos),
        "request_id": t.request_id,
        "description": t.description,
        "created": t.created_ms // 1000,
        "created_at": iso_ms(t.created_ms),
    }


def key_to_api(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "object": "api_key",
        "name": k.name,
        "prefix": k.prefix,
        "created": k.created_ms // 1000,
        "created_at": iso_ms(k.created_ms),
        "revoked_at": iso_ms(k.revoked_ms),
        "last_used_at": iso_ms(k.last_used_ms),
        "limits": RateLimits.from_json(k.limits).to_json(),
        "kind": k.kind,
        "expires_at": iso_ms(k.expires_ms),
    }


def plan_to_api(p: Plan, *, customers: int | None = None) -> dict[str, Any]:
    """A plan; `customers` is how many customers are on it (archived ones excluded)."""
    out: dict[str, Any] = {
        "id": p.id,
        "object": "plan",
        "external_id": p.external_id,
        "name": p.name,
        "monthly_budget_usd": nanos_to_json(p.monthly_budget_nanos),
        "prepaid": p.prepaid if p.prepaid is None else bool(p.prepaid),
        "low_balance_threshold_usd": nanos_to_json(p.low_balance_threshold_nanos),
        "markup": _markup(p.markup),
        "allowed_models": p.allowed_models,
        "limits": RateLimits.from_json(p.limits).to_json(),
        "created": p.created_ms // 1000,
        "created_at": iso_ms(p.created_ms),
        "updated_at": iso_ms(p.updated_ms),
    }
    if customers is not None:
        out["customers"] = customers
    return out


def plan_event_payload(p: Plan) -> dict[str, Any]:
    """The plan as embedded in `plan.changed` (plain JSON types, stored in the event row)."""
    return {
        "id": p.id,
        "object": "plan",
        "external_id": p.external_id,
        "name": p.name,
        "monthly_budget_usd": _usd_float(p.monthly_budget_nanos),
        "prepaid": p.prepaid if p.prepaid is None else bool(p.prepaid),
        "low_balance_threshold_usd": _usd_float(p.low_balance_threshold_nanos),
        "markup": str(Decimal(p.markup).normalize()) if p.markup is not None else None,
        "allowed_models": p.allowed_models,
        "limits": RateLimits.from_json(p.limits).to_json(),
    }


def terms_to_api(t: Terms) -> dict[str, Any]:
    """A customer's effective terms, and where each came from."""
    return {
        "plan": t.plan_id,
        "monthly_budget_usd": nanos_to_json(t.monthly_budget_nanos),
        "prepaid": t.prepaid,
        "low_balance_threshold_usd": nanos_to_json(t.low_balance_threshold_nanos),
        "markup": _markup(t.markup),
        "allowed_models": list(t.allowed_models) if t.allowed_models is not None else None,
        "limits": t.limits.to_json(),
        "sources": dict(t.sources),
    }


def audit_to_api(e: AuditEntry) -> dict[str, Any]:
    """An audit entry; `changes` money fields (`*_usd`) back from nanos to exact USD."""
    changes = None
    if e.changes:
        changes = {
            field: [
                nanos_to_json(x) if field.endswith("_usd") and isinstance(x, int) else x
                for x in pair
            ]
            for field, pair in e.changes.items()
        }
    return {
        "id": e.id,
        "object": "audit_entry",
        "created": e.created_ms // 1000,
        "created_at": iso_ms(e.created_ms),
        "key_id": e.key_id,
        "key_kind": e.key_kind,
        "action": e.action,
        "target_id": e.target_id,
        "customer_id": e.customer_id,
        "changes": changes,
        "request_id": e.request_id,
        "idempotency_key": e.idempotency_key,
        "ip": e.ip,
    }
