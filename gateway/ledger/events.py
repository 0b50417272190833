"""Durable business events, recorded inside the money transaction that caused them.

`record_event` must be called inside an open write transaction: the event row and its
webhook outbox rows (one per subscribed endpoint) commit or roll back with the money.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.db.models import Customer, Event, WebhookDelivery, WebhookEndpoint
from gateway.ids import new_id
from gateway.serializers import customer_event_payload

EVENT_TYPES = (
    "budget.warning",
    "budget_exceeded",
    "wallet.low",
    "wallet.empty",
    "wallet.topped_up",
)
# Operator-visible events that are not about a customer.
SYSTEM_EVENT_TYPES = ("webhook_endpoint.disabled",)
ALL_EVENT_TYPES = EVENT_TYPES + SYSTEM_EVENT_TYPES


def record_event(
    type_: str, customer: Customer | None, data: dict[str, Any], *, now_ms: int | None = None
) -> dict[str, Any]:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    payload_data = dict(data)
    if customer is not None:
        payload_data = {"customer": customer_event_payload(customer), **payload_data}
    event = Event.create(
        id=new_id("evt"),
        type=type_,
        customer_id=customer.id if customer is not None else None,
        data=payload_data,
        created_ms=now_ms,
    )
    enqueue_deliveries(event, now_ms)
    return event_to_payload(event)


def enqueue_deliveries(event: Event, now_ms: int) -> int:
    """One outbox row per endpoint subscribed to the event's type (None = all).

    Disabled endpoints get their rows too: the worker holds them back and enabling the
    endpoint sends them, so disabling never loses an event (deleting an endpoint does).
    Delivery is scheduled on the wall clock, whatever clock stamped the event, so an event
    recorded under a test's moved clock is still due at once.
    """
    wall_ms = int(time.time() * 1000)
    rows = []
    for ep in WebhookEndpoint.select().where(WebhookEndpoint.deleted_ms.is_null()):
        if ep.events and event.type not in ep.events:
            continue
        rows.append(
            {
                "id": new_id("whd"),
                "event_id": event.id,
                "endpoint_id": ep.id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_ms": min(now_ms, wall_ms),
                "created_ms": wall_ms,
                "window_start_ms": wall_ms,
            }
        )
    if rows:
        WebhookDelivery.insert_many(rows).execute()
    return len(rows)


def event_to_payload(event: Event) -> dict[str, Any]:
    """The wire payload: {id, object, type, created, data}."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created": event.created_ms // 1000,
        "data": event.data,
    }
