"""Why a call was refused: the 402 the client sees, with the ledger's numbers, and the
request log row that records the refusal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.db.models import Customer, RequestLog
from gateway.errors import (
    ApiError,
    CustomerBudgetExceeded,
    CustomerRateLimited,
    CustomerWalletEmpty,
    KeyRateLimited,
    ModelNotAllowed,
)
from gateway.ledger.amounts import nanos_to_dollars, nanos_to_json
from gateway.ledger.types import CallEstimate, Limit, PeriodState, WalletState
from gateway.limits import Throttled
from gateway.terms import Terms

_LIMIT_WORDS = {
    "requests_per_minute": "requests per minute",
    "tokens_per_minute": "tokens per minute",
    "max_concurrent": "calls in flight at once",
}


@dataclass(frozen=True)
class Refusal:
    """The limit a call does not fit, and what it would have needed held."""

    limit: Limit
    need: int


def budget_error(
    customer: Customer, cap: int, period_row: PeriodState | None, need: int = 0
) -> ApiError:
    spent = period_row.spent_nanos if period_row else 0
    held = period_row.held_nanos if period_row else 0
    return CustomerBudgetExceeded(
        f"Customer '{customer.id}' has reached its monthly budget: "
        f"${nanos_to_dollars(spent)} spent (${nanos_to_dollars(held)} held by calls in "
        f"flight) of ${nanos_to_dollars(cap)} this month.",
        customer_id=customer.id,
        external_id=customer.external_id,
        monthly_budget_usd=nanos_to_json(cap),
        spent_usd=nanos_to_json(spent),
        held_usd=nanos_to_json(held),
        remaining_usd=nanos_to_json(max(cap - spent - held, 0)),
        required_usd=nanos_to_json(need) if need else None,
        period=period_row.period if period_row else None,
    )


def wallet_error(
    customer: Customer,
    wallet: WalletState | None,
    *,
    spent_this_month: int,
    period: str,
    need: int = 0,
) -> ApiError:
    balance = wallet.balance_nanos if wallet else 0
    held = wallet.held_nanos if wallet else 0
    return CustomerWalletEmpty(
        f"Customer '{customer.id}' cannot pay for this call from its wallet: "
        f"balance ${nanos_to_dollars(balance)} (${nanos_to_dollars(held)} held by calls in "
        f"flight); ${nanos_to_dollars(spent_this_month)} spent from it this month.",
        customer_id=customer.id,
        external_id=customer.external_id,
        balance_usd=nanos_to_json(balance),
        spent_usd=nanos_to_json(spent_this_month),
        period=period,
        held_usd=nanos_to_json(held),
        available_usd=nanos_to_json(max(balance - held, 0)),
        required_usd=nanos_to_json(need) if need else None,
    )


def model_not_allowed(customer: Customer, terms: Terms, est: CallEstimate) -> ApiError:
    model = f"{est.provider}/{est.model}"
    source = terms.sources.get("allowed_models")
    where = f"plan '{terms.plan_name}' ({terms.plan_id})" if source == "plan" else "its own list"
    allowed = list(terms.allowed_models or ())
    return ModelNotAllowed(
        f"Model '{model}' is not allowed for customer '{customer.id}' by {where}; "
        f"allowed: {', '.join(allowed) or 'none'}.",
        param="model",
        customer_id=customer.id,
        model=model,
        plan=terms.plan_id,
        allowed_models=allowed,
    )


def rate_limited_error(refused: Throttled, terms: Terms | None) -> ApiError:
    subject = refused.subject
    words = _LIMIT_WORDS[refused.limit]
    if refused.limit == "tokens_per_minute" and refused.need > refused.value:
        detail = f"this call needs {refused.need} tokens, more than the limit of {refused.value}"
    else:
        detail = f"the limit is {refused.value} {words}"
    cls = CustomerRateLimited if subject.kind == "customer" else KeyRateLimited
    who = "Customer" if subject.kind == "customer" else "API key"
    fields: dict[str, Any] = {
        "limit": refused.limit,
        "limit_value": refused.value,
        "retry_after_s": refused.retry_after_s,
    }
    if subject.kind == "customer":
        fields["customer_id"] = subject.id
        fields["plan"] = terms.plan_id if terms else None
    else:
        fields["key_id"] = subject.id
    return cls(
        f"{who} '{subject.id}' is rate limited: {detail}. Retry after {refused.retry_after_s} s.",
        headers=dict(refused.headers),
        **fields,
    )


def log_refusal(
    request_id: str, customer_id: str | None, est: CallEstimate, err: ApiError, now_ms: int
) -> None:
    RequestLog.insert(
        id=request_id,
        customer_id=customer_id,
        provider=est.provider,
        model=est.model,
        endpoint=est.endpoint,
        stream=est.stream,
        status="refused",
        http_status=err.status,
        error_code=err.code,
        created_ms=now_ms,
    ).execute()
