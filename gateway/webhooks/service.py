"""Webhook endpoints, events and deliveries: the one implementation the HTTP API and the
dashboard both call. Sending is the delivery worker's job (`gateway.webhooks.delivery`);
this service only changes the outbox and wakes the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import peewee as pw

from gateway.audit import SYSTEM, Actor, diff, record
from gateway.clock import Clock, iso_ms, now_ms, to_ms, utcnow
from gateway.config import WebhookSettings
from gateway.db.database import Database, tuples
from gateway.db.models import Customer, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from gateway.errors import InvalidRequest
from gateway.event_types import ALL_EVENT_TYPES, event_to_payload
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.services import validation as v
from gateway.services.pagination import Page, cut
from gateway.webhooks import urlpolicy
from gateway.webhooks.delivery import DeliveryStatus, DeliveryWorker, lock_endpoint
from gateway.webhooks.errors import (
    EventNotFound,
    WebhookDeliveryNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointNotFound,
)
from gateway.webhooks.signing import mask_secret, new_secret

CREATE_FIELDS = {"url", "events", "description", "enabled"}
UPDATE_FIELDS = CREATE_FIELDS
DEFAULT_GRACE_S = 24 * 3600  # how long the old secret keeps signing after a rotation
MAX_GRACE_S = 7 * 24 * 3600
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = get_args(DeliveryStatus)

# ---------------------------------------------------------------------------- views


def endpoint_to_api(
    ep: WebhookEndpoint, *, reveal_secret: bool = False, pending: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": ep.id,
        "object": "webhook_endpoint",
        "url": ep.url,
        "events": ep.events,
        "description": ep.description,
        "enabled": bool(ep.enabled),
        "status": "enabled" if ep.enabled else "disabled",
        "disabled_reason": ep.disabled_reason,
        "secret": ep.secret if reveal_secret else mask_secret(ep.secret),
        "created": ep.created_ms // 1000,
        "created_at": iso_ms(ep.created_ms),
        "last_success_at": iso_ms(ep.last_success_ms),
        "failing_since_at": iso_ms(ep.failing_since_ms),
        "previous_secret_expires_at": iso_ms(ep.previous_secret_expires_ms)
        if ep.previous_secret
        else None,
    }
    if pending is not None:
        out["pending_deliveries"] = pending
    return out


def attempt_to_api(a: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "object": "webhook_attempt",
        "delivery_id": a.delivery_id,
        "attempted_at": iso_ms(a.attempted_ms),
        "status_code": a.status_code,
        "error": a.error,
        "duration_ms": a.duration_ms,
        "response_body": a.response_body,
    }


def delivery_to_api(
    d: WebhookDelivery,
    *,
    endpoint: WebhookEndpoint | None = None,
    event: Event | None = None,
    attempts: list[WebhookAttempt] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "object": "webhook_delivery",
        "event_id": d.event_id,
        "endpoint_id": d.endpoint_id,
        "status": d.status,
        "attempt_count": d.attempts,
        "next_attempt_at": iso_ms(d.next_attempt_ms) if d.status == "pending" else None,
        "last_attempt_at": iso_ms(d.last_attempt_ms),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "delivered_at": iso_ms(d.delivered_ms),
        "created": d.created_ms // 1000,
        "created_at": iso_ms(d.created_ms),
    }
    if endpoint is not None:
        out["endpoint_url"] = endpoint.url
        out["endpoint_enabled"] = bool(endpoint.enabled)
    if event is not None:
        out["event_type"] = event.type
        out["customer_id"] = event.customer_id
    if attempts is not None:
        out["attempts"] = [attempt_to_api(a) for a in attempts]
    return out


# ---------------------------------------------------------------------------- service


class WebhookService:
    def __init__(
        self,
        db: Database,
        settings: WebhookSettings,
        bus: EventBus,
        worker: DeliveryWorker,
        *,
        resolve_customer: Callable[[str], Customer],
        clock: Clock = utcnow,
    ) -> None:
        """`clock` is the wall clock the worker schedules by (see `gateway.clock`)."""
        self.db = db
        self.settings = settings
        self.bus = bus
        self.worker = worker
        self.clock = clock
        self._resolve_customer = resolve_customer

    async def aclose(self) -> None:
        """Called by the app's shutdown: the worker finishes its sends and lets go."""
        await self.worker.aclose()

    # ------------------------------------------------------------------ endpoints
    async def create_endpoint(self, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        """The new endpoint, with its secret in full (the only time it is shown)."""
        body = v.require_object(body)
        v.reject_unknown(body, CREATE_FIELDS)
        url = await self._checked_url(body.get("url"), required=True)
        events = _event_types(body)
        description = v.string(body, "description", max_len=1000)
        enabled = v.boolean(body, "enabled")
        out = await self.db.write(
            self._create_sync,
            url,
            events,
            description,
            True if enabled is None else enabled,
            actor,
        )
        self._changed(out)
        return out

    def _create_sync(
        self,
        url: str,
        events: list[str] | None,
        description: str | None,
        enabled: bool,
        actor: Actor,
    ) -> dict[str, Any]:
        now = now_ms(self.clock)
        with self.db.tx():
            ep = WebhookEndpoint.create(
                id=new_id("whe"),
                url=url,
                events=events,
                description=description,
                secret=new_secret(),
                enabled=enabled,
                disabled_reason=None if enabled else "disabled by the operator",
                created_ms=now,
                updated_ms=now,
            )
            record(
                actor,
                "webhook_endpoint.created",
                now,
                target_id=ep.id,
                changes=diff({}, {k: v for k, v in _audited(ep).items() if v is not None}),
            )
        return endpoint_to_api(ep, reveal_secret=True, pending=0)

    async def list_endpoints(self, *, include_disabled: bool = True) -> list[dict[str, Any]]:
        """Every live endpoint with its health, oldest first (the dashboard's table)."""
        page = await self.db.read(self._list_endpoints_sync, 1000, None, include_disabled)
        return page.data

    async def endpoints_page(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        limit = v.limit(params.get("limit"))
        enabled = params.get("enabled")
        if enabled not in (None, "", "true", "false"):
            raise InvalidRequest("enabled must be true or false.", param="enabled")
        return await self.db.read(
            self._list_endpoints_sync,
            limit,
            params.get("starting_after") or None,
            enabled != "true",
            enabled == "false",
        )

    def _list_endpoints_sync(
        self,
        limit: int,
        starting_after: str | None,
        include_disabled: bool,
        only_disabled: bool = False,
    ) -> Page[dict[str, Any]]:
        q = WebhookEndpoint.select().where(WebhookEndpoint.deleted_ms.is_null())
        if not include_disabled:
            q = q.where(WebhookEndpoint.enabled == True)  # noqa: E712 - peewee expression
        if only_disabled:
            q = q.where(WebhookEndpoint.enabled == False)  # noqa: E712
        if starting_after:
            q = q.where(WebhookEndpoint.id > starting_after)
        page = cut(list(q.order_by(WebhookEndpoint.id).limit(limit + 1)), limit)
        pending = self._pending_counts([r.id for r in page.data])
        return page.map(lambda r: endpoint_to_api(r, pending=pending.get(r.id, 0)))

    @staticmethod
    def _pending_counts(endpoint_ids: list[str]) -> dict[str, int]:
        if not endpoint_ids:
            return {}
        D = WebhookDelivery
        rows = tuples(
            D.select(D.endpoint_id, pw.fn.COUNT(D.id))
            .where(D.endpoint_id.in_(endpoint_ids), D.status == "pending")
            .group_by(D.endpoint_id)
        )
        return {endpoint_id: int(n) for endpoint_id, n in rows}

    async def retrieve_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return await self.db.read(self._retrieve_endpoint_sync, endpoint_id)

    def _retrieve_endpoint_sync(self, endpoint_id: str) -> dict[str, Any]:
        ep = _live_endpoint(endpoint_id)
        return endpoint_to_api(ep, pending=self._pending_counts([ep.id]).get(ep.id, 0))

    async def update_endpoint(
        self, endpoint_id: str, body: Any, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        body = v.require_object(body)
        v.reject_unknown(body, UPDATE_FIELDS)
        changes: dict[Any, Any] = {}
        if "url" in body:
            changes[WebhookEndpoint.url] = await self._checked_url(body["url"], required=True)
        if "events" in body:
            changes[WebhookEndpoint.events] = _event_types(body)
        if "description" in body:
            changes[WebhookEndpoint.description] = v.string(body, "description", max_len=1000)
        enabled: bool | None = None
        if "enabled" in body:
            enabled = v.boolean(body, "enabled")
            if enabled is None:
                raise InvalidRequest("enabled must be true or false.", param="enabled")
        out = await self.db.write(self._update_sync, endpoint_id, changes, enabled, actor)
        self._changed(out)
        if enabled:
            self.worker.wake_threadsafe()
        return out

    def _update_sync(
        self, endpoint_id: str, changes: dict[Any, Any], enabled: bool | None, actor: Actor
    ) -> dict[str, Any]:
        now = now_ms(self.clock)
        with self.db.tx():
            ep = _live_endpoint(endpoint_id, db=self.db)
            if enabled is not None and enabled != bool(ep.enabled):
                changes.update(_enable_changes(enabled))
                if enabled:
                    _restart_pending(ep.id, now)
            if changes:
                changes[WebhookEndpoint.updated_ms] = now
                WebhookEndpoint.update(changes).where(WebhookEndpoint.id == ep.id).execute()
            after = WebhookEndpoint.get_by_id(ep.id)
            changed = diff(_audited(ep), _audited(after))
            if changed:
                record(actor, "webhook_endpoint.updated", now, target_id=ep.id, changes=changed)
            return endpoint_to_api(after, pending=self._pending_counts([ep.id]).get(ep.id, 0))

    async def set_endpoint_enabled(
        self, endpoint_id: str, enabled: bool, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """Enable (clears the failure history and restarts pending deliveries) or disable."""
        return await self.update_endpoint(endpoint_id, {"enabled": bool(enabled)}, actor)

    async def delete_endpoint(self, endpoint_id: str, actor: Actor = SYSTEM) -> dict[str, Any]:
        out = await self.db.write(self._delete_sync, endpoint_id, actor)
        self.bus.publish("webhook_endpoint.changed", endpoint_id=endpoint_id, deleted=True)
        return out

    def _delete_sync(self, endpoint_id: str, actor: Actor) -> dict[str, Any]:
        now = now_ms(self.clock)
        with self.db.tx():
            ep = _live_endpoint(endpoint_id, db=self.db)
            WebhookEndpoint.update(deleted_ms=now, enabled=False, updated_ms=now).where(
                WebhookEndpoint.id == ep.id
            ).execute()
            # Nobody will ever send these; say so instead of leaving them pending forever.
            WebhookDelivery.update(
                status="failed", last_error="endpoint deleted", locked_until_ms=0, locked_by=None
            ).where(
                WebhookDelivery.endpoint_id == ep.id, WebhookDelivery.status == "pending"
            ).execute()
            record(actor, "webhook_endpoint.deleted", now, target_id=ep.id)
        return {"id": ep.id, "object": "webhook_endpoint", "deleted": True}

    async def rotate_secret(
        self, endpoint_id: str, body: Any = None, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """A new secret, shown in full. The old one keeps signing for `grace_period_s`
        (default 24 h, 0 = stop at once) so receivers can switch without rejecting anything."""
        body = v.require_object(body if body is not None else {})
        v.reject_unknown(body, {"grace_period_s"})
        grace = body.get("grace_period_s", DEFAULT_GRACE_S)
        if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_GRACE_S:
            raise InvalidRequest(
                f"grace_period_s must be an integer between 0 and {MAX_GRACE_S}.",
                param="grace_period_s",
            )
        out = await self.db.write(self._rotate_sync, endpoint_id, grace, actor)
        self._changed(out)
        return out

    def _rotate_sync(self, endpoint_id: str, grace_s: int, actor: Actor) -> dict[str, Any]:
        now = now_ms(self.clock)
        with self.db.tx():
            ep = _live_endpoint(endpoint_id, db=self.db)
            WebhookEndpoint.update(
                secret=new_secret(),
                previous_secret=ep.secret if grace_s else None,
                previous_secret_expires_ms=now + grace_s * 1000 if grace_s else None,
                updated_ms=now,
            ).where(WebhookEndpoint.id == ep.id).execute()
            # Never the secrets themselves: that it rotated, and how long the old one signs.
            record(
                actor,
                "webhook_endpoint.updated",
                now,
                target_id=ep.id,
                changes={"secret_rotated_grace_period_s": [None, grace_s]},
            )
            ep = WebhookEndpoint.get_by_id(ep.id)
        return endpoint_to_api(ep, reveal_secret=True)

    async def _checked_url(self, url: Any, *, required: bool) -> str:
        if url is None and required:
            raise InvalidRequest("Missing required parameter: url.", param="url")
        return await urlpolicy.check_for_save(
            url, allow_private=self.settings.allow_private_networks
        )

    # ------------------------------------------------------------------ events
    async def list_events(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        return await self.db.read(self._list_events_sync, params)

    def _list_events_sync(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        from gateway.services.usage import parse_time

        limit = v.limit(params.get("limit"))
        q = Event.select()
        types = [t for t in (params.get("type") or "").split(",") if t]
        for t in types:
            if t not in ALL_EVENT_TYPES:
                raise InvalidRequest(
                    f"type must be one of {', '.join(ALL_EVENT_TYPES)}.", param="type"
                )
        if types:
            q = q.where(Event.type.in_(types))
        customer_ref = params.get("customer_id") or params.get("customer")
        if customer_ref:
            q = q.where(Event.customer_id == self._customer_id(customer_ref))
        since, _ = parse_time(params.get("since"), "since", end=False)
        until, _ = parse_time(params.get("until"), "until", end=True)
        if since:
            q = q.where(Event.created_ms >= to_ms(since))
        if until:
            q = q.where(Event.created_ms < to_ms(until))
        after = params.get("starting_after")
        if after:
            cursor = Event.get_or_none(Event.id == after)
            if cursor is None:
                raise InvalidRequest(
                    f"starting_after '{after}' is not an event id.", param="starting_after"
                )
            # Newest first by (created, id): a keyset cursor that stays stable as events arrive.
            q = q.where(
                (Event.created_ms < cursor.created_ms)
                | ((Event.created_ms == cursor.created_ms) & (Event.id < cursor.id))
            )
        rows = list(q.order_by(Event.created_ms.desc(), Event.id.desc()).limit(limit + 1))
        return cut(rows, limit).map(event_to_payload)

    def _customer_id(self, ref: str) -> str:
        if self._resolve_customer is not None:
            return str(self._resolve_customer(ref).id)
        row = Customer.get_or_none((Customer.id == ref) | (Customer.external_id == ref))
        return row.id if row is not None else ref

    async def retrieve_event(self, event_id: str) -> dict[str, Any]:
        """The event as delivered, plus `deliveries`, each with its `attempts`."""
        return await self.db.read(self._retrieve_event_sync, event_id)

    def _retrieve_event_sync(self, event_id: str) -> dict[str, Any]:
        event = Event.get_or_none(Event.id == event_id)
        if event is None:
            raise EventNotFound(f"No event with id '{event_id}'.", param="id")
        deliveries = list(
            WebhookDelivery.select()
            .where(WebhookDelivery.event_id == event.id)
            .order_by(WebhookDelivery.created_ms, WebhookDelivery.id)
        )
        attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
        if deliveries:
            for a in (
                WebhookAttempt.select()
                .where(WebhookAttempt.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttempt.attempted_ms, WebhookAttempt.id)
            ):
                attempts[a.delivery_id].append(a)
        endpoints = _endpoints_by_id({d.endpoint_id for d in deliveries})
        out = event_to_payload(event)
        out["deliveries"] = [
            delivery_to_api(d, endpoint=endpoints.get(d.endpoint_id), attempts=attempts[d.id])
            for d in deliveries
        ]
        return out

    async def retry_event(self, event_id: str, endpoint_id: str | None = None) -> dict[str, Any]:
        """Send the event again now: to one endpoint, or to every enabled endpoint subscribed
        to its type (creating deliveries for endpoints added since). Delivered ones are sent
        again too; receivers dedupe by `webhook-id`. Returns the event with its deliveries."""
        if endpoint_id is not None and not isinstance(endpoint_id, str):
            raise InvalidRequest("endpoint_id must be a string.", param="endpoint_id")
        await self.db.write(self._retry_event_sync, event_id, endpoint_id)
        self.worker.wake_threadsafe()
        out = await self.retrieve_event(event_id)
        self.bus.publish("webhook.retried", event_id=event_id, endpoint_id=endpoint_id)
        return out

    def _retry_event_sync(self, event_id: str, endpoint_id: str | None) -> int:
        now = now_ms(self.clock)
        with self.db.tx():
            event = Event.get_or_none(Event.id == event_id)
            if event is None:
                raise EventNotFound(f"No event with id '{event_id}'.", param="id")
            if endpoint_id is not None:
                ep = _live_endpoint(endpoint_id, param="endpoint_id")
                if not ep.enabled:
                    raise WebhookEndpointDisabled(
                        f"Webhook endpoint '{ep.id}' is disabled; enable it first.",
                        param="endpoint_id",
                    )
                targets = [ep]
            else:
                targets = [
                    ep
                    for ep in WebhookEndpoint.select().where(
                        WebhookEndpoint.enabled == True,  # noqa: E712
                        WebhookEndpoint.deleted_ms.is_null(),
                    )
                    if not ep.events or event.type in ep.events
                ]
            existing = {
                d.endpoint_id: d
                for d in WebhookDelivery.select().where(WebhookDelivery.event_id == event.id)
            }
            for ep in targets:
                d = existing.get(ep.id)
                if d is None:
                    WebhookDelivery.insert(
                        id=new_id("whd"),
                        event_id=event.id,
                        endpoint_id=ep.id,
                        status="pending",
                        attempts=0,
                        next_attempt_ms=now,
                        created_ms=now,
                        window_start_ms=now,
                    ).execute()
                else:
                    _rearm(d.id, now)
            return len(targets)

    async def retry_delivery(self, delivery_id: str) -> dict[str, Any]:
        """Send one delivery again now (also a delivered or failed one)."""
        out = await self.db.write(self._retry_delivery_sync, delivery_id)
        self.worker.wake_threadsafe()
        self.bus.publish("webhook.retried", event_id=out["event_id"], delivery_id=delivery_id)
        return out

    def _retry_delivery_sync(self, delivery_id: str) -> dict[str, Any]:
        now = now_ms(self.clock)
        with self.db.tx():
            d = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
            if d is None:
                raise WebhookDeliveryNotFound(f"No webhook delivery with id '{delivery_id}'.")
            ep = WebhookEndpoint.get_or_none(WebhookEndpoint.id == d.endpoint_id)
            if ep is None or ep.deleted_ms is not None:
                raise WebhookEndpointNotFound(f"The endpoint of delivery '{d.id}' was deleted.")
            if not ep.enabled:
                raise WebhookEndpointDisabled(
                    f"Webhook endpoint '{ep.id}' is disabled; enable it first."
                )
            _rearm(d.id, now)
            d = WebhookDelivery.get_by_id(d.id)
            return delivery_to_api(d, endpoint=ep, event=Event.get_or_none(Event.id == d.event_id))

    # ------------------------------------------------------------------ deliveries
    async def recent_deliveries(
        self, limit: int = 50, *, endpoint_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, with endpoint URL, event type and customer (the dashboard's table)."""
        page = await self.deliveries_page(
            {"limit": str(limit), "endpoint_id": endpoint_id, "status": status}, maximum=1000
        )
        return page.data

    async def deliveries_page(
        self, params: dict[str, str | None], *, maximum: int = 100
    ) -> Page[dict[str, Any]]:
        limit = v.limit(params.get("limit"), default=20, maximum=maximum)
        status = params.get("status") or None
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidRequest(
                f"status must be one of {', '.join(DELIVERY_STATUSES)}.", param="status"
            )
        return await self.db.read(
            self._deliveries_sync,
            limit,
            params.get("endpoint_id") or None,
            status,
            params.get("starting_after") or None,
        )

    def _deliveries_sync(
        self, limit: int, endpoint_id: str | None, status: str | None, after: str | None
    ) -> Page[dict[str, Any]]:
        D = WebhookDelivery
        q = D.select()
        if endpoint_id:
            q = q.where(D.endpoint_id == endpoint_id)
        if status:
            q = q.where(D.status == status)
        if after:
            cursor = D.get_or_none(D.id == after)
            if cursor is None:
                raise InvalidRequest(
                    f"starting_after '{after}' is not a delivery id.", param="starting_after"
                )
            q = q.where(
                (D.created_ms < cursor.created_ms)
                | ((D.created_ms == cursor.created_ms) & (D.id < cursor.id))
            )
        page = cut(list(q.order_by(D.created_ms.desc(), D.id.desc()).limit(limit + 1)), limit)
        rows, has_more = page.data, page.has_more
        endpoints = _endpoints_by_id({d.endpoint_id for d in rows})
        events = {
            e.id: e for e in Event.select().where(Event.id.in_(list({d.event_id for d in rows})))
        }
        data = [
            delivery_to_api(d, endpoint=endpoints.get(d.endpoint_id), event=events.get(d.event_id))
            for d in rows
        ]
        return Page(data, has_more)

    # ------------------------------------------------------------------ helpers
    def _changed(self, endpoint: dict[str, Any]) -> None:
        public = {k: v for k, v in endpoint.items() if k != "secret"}
        self.bus.publish("webhook_endpoint.changed", endpoint_id=endpoint["id"], endpoint=public)


def _event_types(body: dict[str, Any]) -> list[str] | None:
    """`events`: a non-empty list of known types; null, omitted or ["*"] mean all."""
    value = body.get("events")
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise InvalidRequest(
            "events must be a non-empty list of event types (omit it for all events).",
            param="events",
        )
    if value == ["*"]:
        return None
    for t in value:
        if t not in ALL_EVENT_TYPES:
            raise InvalidRequest(
                f"Unknown event type '{t}'; known: {', '.join(ALL_EVENT_TYPES)}.",
                param="events",
            )
    return list(dict.fromkeys(value))


def _audited(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": ep.url,
        "events": ep.events,
        "description": ep.description,
        "enabled": bool(ep.enabled),
    }


def _live_endpoint(
    endpoint_id: str, *, param: str = "id", db: Database | None = None
) -> WebhookEndpoint:
    """The endpoint unless deleted. With `db` (inside a write transaction), row-locked on
    PostgreSQL: the endpoint is locked before its deliveries, as the worker does."""
    if db is not None:
        ep = lock_endpoint(db, endpoint_id)
    else:
        ep = WebhookEndpoint.get_or_none(WebhookEndpoint.id == endpoint_id)
    if ep is None or ep.deleted_ms is not None:
        raise WebhookEndpointNotFound(f"No webhook endpoint with id '{endpoint_id}'.", param=param)
    return ep


def _endpoints_by_id(ids: set[str]) -> dict[str, WebhookEndpoint]:
    if not ids:
        return {}
    return {e.id: e for e in WebhookEndpoint.select().where(WebhookEndpoint.id.in_(list(ids)))}


def _enable_changes(enabled: bool) -> dict[Any, Any]:
    if enabled:
        # A fresh start: the failure history that disabled it no longer counts.
        return {
            WebhookEndpoint.enabled: True,
            WebhookEndpoint.disabled_reason: None,
            WebhookEndpoint.failing_since_ms: None,
        }
    return {
        WebhookEndpoint.enabled: False,
        WebhookEndpoint.disabled_reason: "disabled by the operator",
    }


def _restart_pending(endpoint_id: str, now: int) -> None:
    """Deliveries held back while the endpoint was disabled go out now, with a new window."""
    WebhookDelivery.update(next_attempt_ms=now, window_start_ms=now).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending"
    ).execute()


def _rearm(delivery_id: str, now: int) -> None:
    # An in-flight claim keeps its lock; the row is simply due again once that attempt ends.
    WebhookDelivery.update(
        status="pending", next_attempt_ms=now, window_start_ms=now, delivered_ms=None
    ).where(WebhookDelivery.id == delivery_id).execute()
