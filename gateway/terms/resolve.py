"""Merge a customer's own settings with its plan's: the customer's value wins, field by
field, and inside `limits` limit by limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.terms.limits import LIMIT_NAMES, RateLimits

# Where an effective value came from: the customer's own setting, its plan, or neither.
Source = Literal["customer", "plan", "default"]

MONEY_FIELDS = ("monthly_budget_usd", "prepaid", "low_balance_threshold_usd", "markup")


class CustomerSettings(Protocol):
    """What a customer row holds of its terms (the `customer` table's columns)."""

    monthly_budget_nanos: int | None
    prepaid: bool
    prepaid_own: bool
    low_balance_threshold_nanos: int | None
    markup: str | None
    allowed_models: list[str] | None
    limits: dict[str, Any] | None


class PlanSettings(Protocol):
    id: str
    name: str
    monthly_budget_nanos: int | None
    prepaid: bool | None
    low_balance_threshold_nanos: int | None
    markup: str | None
    allowed_models: list[str] | None
    limits: dict[str, Any] | None


@dataclass(frozen=True)
class Terms:
    """What applies to a customer's calls. `markup` None means the configured default."""

    plan_id: str | None
    plan_name: str | None
    monthly_budget_nanos: int | None
    prepaid: bool
    low_balance_threshold_nanos: int | None
    markup: str | None
    allowed_models: tuple[str, ...] | None  # None: every model
    limits: RateLimits
    sources: Mapping[str, Source] = field(default_factory=dict)


def _pick(own: Any, planned: Any, has_plan: bool) -> tuple[Any, Source]:
    if own is not None:
        return own, "customer"
    if has_plan and planned is not None:
        return planned, "plan"
    return None, "default"


def resolve_terms(customer: CustomerSettings, plan: PlanSettings | None) -> Terms:
    has_plan = plan is not None
    sources: dict[str, Source] = {}
    budget, sources["monthly_budget_usd"] = _pick(
        customer.monthly_budget_nanos, plan.monthly_budget_nanos if plan else None, has_plan
    )
    threshold, sources["low_balance_threshold_usd"] = _pick(
        customer.low_balance_threshold_nanos,
        plan.low_balance_threshold_nanos if plan else None,
        has_plan,
    )
    markup, sources["markup"] = _pick(customer.markup, plan.markup if plan else None, has_plan)
    # Without a plan the stored flag is the customer's own (rows from before plans, or
    # written directly, may not have `prepaid_own` set).
    own_prepaid = customer.prepaid_own or (not has_plan and bool(customer.prepaid))
    prepaid, sources["prepaid"] = _pick(
        bool(customer.prepaid) if own_prepaid else None,
        plan.prepaid if plan else None,
        has_plan,
    )
    models, sources["allowed_models"] = _pick(
        customer.allowed_models, plan.allowed_models if plan else None, has_plan
    )
    own_limits = RateLimits.from_json(customer.limits)
    plan_limits = RateLimits.from_json(plan.limits if plan else None)
    for name in LIMIT_NAMES:
        _, sources[f"limits.{name}"] = _pick(own_limits.get(name), plan_limits.get(name), has_plan)
    return Terms(
        plan_id=plan.id if plan else None,
        plan_name=plan.name if plan else None,
        monthly_budget_nanos=budget,
        prepaid=bool(prepaid),
        low_balance_threshold_nanos=threshold,
        markup=markup,
        allowed_models=tuple(models) if models is not None else None,
        limits=own_limits.over(plan_limits),
        sources=sources,
    )
