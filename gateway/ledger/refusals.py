"""Why a call was refused: the 402 the client sees, with the ledger's numbers, and the
request log row that records the refusal."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.db.models import Customer, RequestLog
from gateway.errors import ApiError, CustomerBudgetExceeded, CustomerWalletEmpty
from gateway.ledger.amounts import nanos_to_dollars, nanos_to_json
from gateway.ledger.types import CallEstimate, Limit, PeriodState, WalletState


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


def log_refusal(
    request_id: str, customer_id: str, est: CallEstimate, err: ApiError, now_ms: int
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
