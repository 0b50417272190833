"""The durable business events Ringside records: their type names and their envelope.

Shared by the ledger, which records the money events, and the webhooks package, which
records its own operator events, fans every event out to endpoints and lists them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.db.models import Event


class EventType(StrEnum):
    BUDGET_WARNING = "budget.warning"
    BUDGET_EXCEEDED = "budget_exceeded"
    WALLET_LOW = "wallet.low"
    WALLET_EMPTY = "wallet.empty"
    WALLET_TOPPED_UP = "wallet.topped_up"
    CUSTOMER_RATE_LIMITED = "customer.rate_limited"
    # Operator-visible, not about a customer.
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    PLAN_CHANGED = "plan.changed"


CUSTOMER_EVENT_TYPES: tuple[EventType, ...] = (
    EventType.BUDGET_WARNING,
    EventType.BUDGET_EXCEEDED,
    EventType.WALLET_LOW,
    EventType.WALLET_EMPTY,
    EventType.WALLET_TOPPED_UP,
    EventType.CUSTOMER_RATE_LIMITED,
)
SYSTEM_EVENT_TYPES: tuple[EventType, ...] = (
    EventType.WEBHOOK_ENDPOINT_DISABLED,
    EventType.PLAN_CHANGED,
)
ALL_EVENT_TYPES: tuple[EventType, ...] = CUSTOMER_EVENT_TYPES + SYSTEM_EVENT_TYPES


def event_to_payload(event: Event) -> dict[str, Any]:
    """The envelope every event travels in (webhook body, /v1/events item, bus message):
    {id, object, type, created, data}."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created": event.created_ms // 1000,
        "data": event.data,
    }
