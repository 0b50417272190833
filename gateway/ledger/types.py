"""The ledger's data: what a call is estimated to cost, the hold taken for it, what
happened upstream, what was settled, and the read-only views of a customer's money."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from gateway.db.models import WalletTransaction
from gateway.ledger.prices import ModelRates
from gateway.tokens import TokenUsage

Endpoint = Literal["chat", "embeddings", "messages"]
# What happened upstream: answered, failed (nothing charged unless usage is known), or a
# stream cut short (charged for what was produced).
OutcomeStatus = Literal["ok", "error", "cut"]
# The limit that refused a call.
Limit = Literal["budget", "wallet"]


@dataclass(frozen=True)
class CallEstimate:
    """What the proxy knows before forwarding."""

    provider: str
    model: str
    endpoint: Endpoint
    stream: bool
    rates: ModelRates
    input_tokens_bound: int
    requested_output_tokens: int | None  # the client's max_tokens x n, if it gave one
    output_multiplier: int = 1  # n choices


@dataclass
class Reservation:
    request_id: str
    hold_id: str | None
    customer_id: str | None
    customer_markup: Decimal | None
    period: str
    budget_hold_nanos: int
    wallet_hold_nanos: int
    # Set when the client gave no max_tokens and a limit applies: the proxy injects it.
    max_output_tokens: int | None
    budget_nanos: int | None
    budget_remaining_nanos: int | None  # after this hold
    prepaid: bool
    wallet_available_nanos: int | None  # after this hold
    started_ms: int
    low_balance_threshold_nanos: int | None = None
    estimate: CallEstimate | None = None
    settled: bool = field(default=False)
    # Rate limits (gateway.limits): the headers to answer with, and what settlement gives
    # back: the tokens counted at admission (in the bucket of `rate_second`, on
    # `token_subjects`) and the concurrency slots this call holds.
    rate_headers: dict[str, str] = field(default_factory=dict)
    rate_second: int = 0
    rate_tokens: int = 0
    token_subjects: tuple[str, ...] = ()
    slots: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What happened upstream. `usage` None means nothing is charged."""

    status: OutcomeStatus
    http_status: int
    usage: TokenUsage | None = None
    error_code: str | None = None
    latency_ms: int = 0


@dataclass(frozen=True)
class Settlement:
    cost_nanos: int
    price_nanos: int
    budget_remaining_nanos: int | None
    wallet_balance_nanos: int | None
    over_hold: bool


@dataclass(frozen=True)
class PeriodState:
    """A customer's budget row for one month, as read (or as it was before a change)."""

    period: str
    spent_nanos: int
    held_nanos: int
    warned: bool
    exceeded: bool


@dataclass(frozen=True)
class WalletState:
    balance_nanos: int
    held_nanos: int
    low_armed: bool
    empty_armed: bool


@dataclass(frozen=True)
class WalletView:
    customer_id: str
    balance_nanos: int
    held_nanos: int
    prepaid: bool
    low_balance_threshold_nanos: int | None
    transactions: list[WalletTransaction]
