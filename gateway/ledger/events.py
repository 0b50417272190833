"""Durable business events, recorded inside the money transaction that caused them.

The ledger records what happened - the `Event` row, with the facts in nano-USD - and
hands it to an `EventOutbox` inside the same open write transaction. The outbox (the
webhooks package, wired in `gateway.wiring`) says how the event reads on the wire and
queues its deliveries, so the event, its outbox rows and the money commit or roll back
together: a crash can lose none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from gateway.db.models import Customer, Event
from gateway.event_types import EventType, event_to_payload
from gateway.ids import new_id
from gateway.ledger.forecast import Forecast


@dataclass(frozen=True)
class BudgetCrossed:
    """budget.warning / budget_exceeded: the month's spend reached a share of the cap."""

    period: str
    budget_nanos: int  # the customer's cap (0 if it has none any more)
    spent_nanos: int
    warning_share: Decimal | None = None  # budget.warning only
    forecast: Forecast | None = None  # budget.warning only


@dataclass(frozen=True)
class WalletCrossed:
    """wallet.low / wallet.empty: the balance fell through a threshold."""

    balance_nanos: int
    low_balance_threshold_nanos: int | None
    forecast: Forecast | None = None  # wallet.low only


@dataclass(frozen=True)
class WalletToppedUp:
    amount_nanos: int
    balance_nanos: int
    transaction_id: str


@dataclass(frozen=True)
class RateLimited:
    """customer.rate_limited: a rate limit refused the customer's call."""

    limit: str  # requests_per_minute | tokens_per_minute | max_concurrent
    value: int
    retry_after_s: int
    plan_id: str | None


EventFacts = BudgetCrossed | WalletCrossed | WalletToppedUp | RateLimited
# Recorded events' payloads, published on the bus once their transaction has committed.
Payloads = list[dict[str, Any]]


class EventOutbox(Protocol):
    """Where a recorded event goes next. Both methods run inside the write transaction
    that records the event, so whatever they write commits or rolls back with it."""

    def event_data(self, type_: EventType, customer: Customer, facts: EventFacts) -> dict[str, Any]:
        """The event's `data` as stored and delivered."""
        ...

    def on_event_recorded(self, event: Event, now_ms: int) -> None:
        """Queue the event's deliveries."""
        ...


class EventRecorder:
    def __init__(self, outbox: EventOutbox) -> None:
        self.outbox = outbox

    def record(
        self, type_: EventType, customer: Customer, facts: EventFacts, now_ms: int
    ) -> dict[str, Any]:
        """Record one event about `customer`; call inside an open write transaction.

        Returns the event's payload, for the bus once the transaction has committed.
        """
        event = Event.create(
            id=new_id("evt"),
            type=type_.value,
            customer_id=customer.id,
            data=self.outbox.event_data(type_, customer, facts),
            created_ms=now_ms,
        )
        self.outbox.on_event_recorded(event, now_ms)
        return event_to_payload(event)
