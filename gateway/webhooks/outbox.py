"""The outbox: every recorded event becomes one delivery row per subscribed endpoint,
written in the transaction that recorded the event.

The ledger records its money events and hands each one to `Outbox` (it is the ledger's
`EventOutbox`, wired in `gateway.wiring`) while the money transaction is still open; the
webhooks package records its own operator events the same way. Either way the event,
its deliveries and whatever caused them commit together or not at all, so a crash can
never leave an event that is not delivered. The delivery worker sends the rows.
"""

from __future__ import annotations

from typing import Any

from gateway.clock import Clock, now_ms, utcnow
from gateway.db.models import Customer, Event, WebhookDelivery, WebhookEndpoint
from gateway.event_types import EventType
from gateway.ids import new_id
from gateway.ledger import EventFacts
from gateway.serializers import event_data


class Outbox:
    def __init__(self, clock: Clock = utcnow) -> None:
        """`clock` is the wall clock the delivery worker schedules by (see `gateway.clock`)."""
        self.clock = clock

    # ------------------------------------------------------------------ EventOutbox
    def event_data(self, type_: EventType, customer: Customer, facts: EventFacts) -> dict[str, Any]:
        return event_data(customer, facts)

    def on_event_recorded(self, event: Event, now_ms: int) -> None:
        self.enqueue(event, now_ms)

    # ------------------------------------------------------------------ fan-out
    def enqueue(self, event: Event, event_ms: int, *, skip_endpoint: str | None = None) -> int:
        """One outbox row per endpoint subscribed to the event's type (None = all).

        Call inside the write transaction that recorded `event`. Disabled endpoints get
        their rows too: the worker holds them back and enabling the endpoint sends them,
        so disabling never loses an event (deleting an endpoint does).

        Delivery is scheduled on this outbox's clock, whatever clock stamped the event
        (`event_ms`), so an event recorded under a moved business clock is still due at once.
        """
        wall = now_ms(self.clock)
        rows = []
        for ep in WebhookEndpoint.select().where(WebhookEndpoint.deleted_ms.is_null()):
            if ep.id == skip_endpoint or (ep.events and event.type not in ep.events):
                continue
            rows.append(
                {
                    "id": new_id("whd"),
                    "event_id": event.id,
                    "endpoint_id": ep.id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_ms": min(event_ms, wall),
                    "created_ms": wall,
                    "window_start_ms": wall,
                }
            )
        if rows:
            WebhookDelivery.insert_many(rows).execute()
        return len(rows)

    def record_operator_event(
        self,
        type_: EventType,
        data: dict[str, Any],
        event_ms: int,
        *,
        skip_endpoint: str | None = None,
    ) -> Event:
        """Record an event that is not about a customer (and not about money) and queue it;
        call inside an open write transaction. `skip_endpoint` gets no delivery."""
        event = Event.create(
            id=new_id("evt"),
            type=type_.value,
            customer_id=None,
            data=data,
            created_ms=event_ms,
        )
        self.enqueue(event, event_ms, skip_endpoint=skip_endpoint)
        return event
