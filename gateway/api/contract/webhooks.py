"""The operations of webhooks (endpoints, events, deliveries) and the Stripe sync."""

from __future__ import annotations

import re
from typing import Any, get_args

from gateway.api.contract import webhook_models as w
from gateway.api.contract.spec import Link, Op, Param


def _limit(default: int, maximum: int, what: str = "Items per page") -> Param:
    return Param(
        "limit",
        "query",
        f"{what} (default {default}, at most {maximum})",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    )


def _after(what: str, checked: bool = True) -> Param:
    tail = " (400 if it names none)" if checked else ""
    return Param("starting_after", "query", f"The id of the last {what} of the previous page{tail}")


_TYPE = "|".join(re.escape(t) for t in w.EVENT_TYPES)
EVENT_TYPE_FILTER = Param(
    "type",
    "query",
    "Only events of these types, comma-separated (wallet.low,wallet.empty)",
    {"type": "string", "pattern": rf"^(?:{_TYPE})?(?:,(?:{_TYPE})?)*$"},
)
WHEN = (
    Param(
        "since",
        "query",
        "A date (2026-04-01) or an RFC 3339 time with an offset, 1970-9998",
    ),
    Param(
        "until",
        "query",
        "A date (included whole) or an RFC 3339 time with an offset, 1970-9998",
    ),
)
ENDPOINT_ID = Param("endpoint_id", "path", "The endpoint's id (whe_...)")
EVENT_ID = Param("event_id", "path", "The event's id (evt_...)")
ENDPOINT_LINKS = (
    Link("GetEndpoint", "getWebhookEndpoint", {"endpoint_id": "$response.body#/id"}),
    Link("RotateSecret", "rotateWebhookSecret", {"endpoint_id": "$response.body#/id"}),
    Link("UpdateEndpoint", "updateWebhookEndpoint", {"endpoint_id": "$response.body#/id"}),
    Link("Deliveries", "listWebhookDeliveries", {"endpoint_id": "$response.body#/id"}),
)


def _first(name: str, op_id: str, param: str, field: str = "id") -> Link:
    """A link from a list's first item (unresolved when the list is empty)."""
    return Link(name, op_id, {param: f"$response.body#/data/0/{field}"})


_SECRET_ONCE = (
    "The answer carries the signing secret in full; every other answer masks it. "
    "Deliveries are signed per Standard Webhooks (webhook-id, webhook-timestamp, "
    "webhook-signature)."
)


def _read(path: str, op_id: str, summary: str, tag: str, response: type, **kw: Any) -> Op:
    return Op("GET", path, op_id, summary, tag, "read", response, **kw)


OPS: list[Op] = [
    # ---------------------------------------------------------------- endpoints
    _read(
        "/v1/webhook_endpoints",
        "listWebhookEndpoints",
        "List webhook endpoints with their health, oldest first (secrets masked)",
        "webhooks",
        w.WebhookEndpointList,
        links=(_first("GetFirst", "getWebhookEndpoint", "endpoint_id"),),
        params=(
            _limit(20, 100),
            _after("endpoint", checked=False),
            Param(
                "enabled",
                "query",
                "Only enabled (true) or only disabled (false) endpoints",
                {"type": "string", "enum": ["true", "false"]},
            ),
        ),
    ),
    Op(
        "POST",
        "/v1/webhook_endpoints",
        "createWebhookEndpoint",
        "Register a webhook endpoint (the signing secret is shown only here)",
        "webhooks",
        "admin",
        w.WebhookEndpointWithSecret,
        status=201,
        request=w.WebhookEndpointCreate,
        description=_SECRET_ONCE,
        links=ENDPOINT_LINKS,
    ),
    _read(
        "/v1/webhook_endpoints/{endpoint_id}",
        "getWebhookEndpoint",
        "Retrieve a webhook endpoint (secret masked)",
        "webhooks",
        w.WebhookEndpoint,
        params=(ENDPOINT_ID,),
        links=(ENDPOINT_LINKS[3],),
    ),
    Op(
        "PATCH",
        "/v1/webhook_endpoints/{endpoint_id}",
        "updateWebhookEndpoint",
        "Update url, events, description or enabled",
        "webhooks",
        "admin",
        w.WebhookEndpoint,
        request=w.WebhookEndpointUpdate,
        params=(ENDPOINT_ID,),
        description="Re-enabling clears the failure history and sends the deliveries held "
        "back while the endpoint was disabled.",
    ),
    Op(
        "DELETE",
        "/v1/webhook_endpoints/{endpoint_id}",
        "deleteWebhookEndpoint",
        "Delete a webhook endpoint (its pending deliveries become failed)",
        "webhooks",
        "admin",
        w.WebhookEndpointDeleted,
        params=(ENDPOINT_ID,),
    ),
    Op(
        "POST",
        "/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
        "rotateWebhookSecret",
        "Rotate the signing secret (the old one signs too for grace_period_s, default 24 h)",
        "webhooks",
        "admin",
        w.WebhookEndpointWithSecret,
        request=w.WebhookSecretRotate,
        body_required=False,
        params=(ENDPOINT_ID,),
        description="The body is optional. " + _SECRET_ONCE,
    ),
    # ---------------------------------------------------------------- events
    _read(
        "/v1/events",
        "listEvents",
        "List events, newest first",
        "webhooks",
        w.WebhookEventList,
        links=(
            _first("GetFirst", "getEvent", "event_id"),
            _first("RetryFirst", "retryEvent", "event_id"),
        ),
        params=(
            _limit(20, 100),
            _after("event"),
            EVENT_TYPE_FILTER,
            Param("customer_id", "query", "A `cus_` id or an external id (404 if none)"),
            Param("customer", "query", "The same as customer_id"),
            *WHEN,
        ),
        errors=(404,),
    ),
    _read(
        "/v1/events/{event_id}",
        "getEvent",
        "Retrieve an event with its webhook deliveries and their attempts",
        "webhooks",
        w.WebhookEventDetail,
        params=(EVENT_ID,),
        links=(
            Link("Retry", "retryEvent", {"event_id": "$response.body#/id"}),
            Link(
                "RetryDelivery",
                "retryWebhookDelivery",
                {"delivery_id": "$response.body#/deliveries/0/id"},
            ),
        ),
    ),
    Op(
        "POST",
        "/v1/events/{event_id}/retry",
        "retryEvent",
        "Send an event again now, to every subscribed endpoint or to one (endpoint_id)",
        "webhooks",
        "admin",
        w.WebhookEventDetail,
        request=w.WebhookEventRetry,
        body_required=False,
        params=(EVENT_ID,),
        errors=(409,),
        description="The body is optional. Delivered deliveries are sent again too (receivers "
        "dedupe on webhook-id). 404 webhook_endpoint_not_found for an unknown endpoint_id; "
        "409 webhook_endpoint_disabled when it is disabled.",
    ),
    # ---------------------------------------------------------------- deliveries
    _read(
        "/v1/webhook_deliveries",
        "listWebhookDeliveries",
        "List webhook deliveries, newest first",
        "webhooks",
        w.WebhookDeliveryList,
        links=(_first("RetryFirst", "retryWebhookDelivery", "delivery_id"),),
        params=(
            _limit(20, 100),
            _after("delivery"),
            Param("endpoint_id", "query", "Only this endpoint's deliveries"),
            Param(
                "status",
                "query",
                "Only deliveries in this state",
                {"type": "string", "enum": list(get_args(w.DeliveryStatus))},
            ),
        ),
    ),
    Op(
        "POST",
        "/v1/webhook_deliveries/{delivery_id}/retry",
        "retryWebhookDelivery",
        "Send one delivery again now (also a delivered or failed one)",
        "webhooks",
        "admin",
        w.WebhookDelivery,
        params=(Param("delivery_id", "path", "The delivery's id (whd_...)"),),
        errors=(409,),
        description="404 webhook_delivery_not_found, or webhook_endpoint_not_found when its "
        "endpoint was deleted; 409 webhook_endpoint_disabled when the endpoint is disabled.",
    ),
    # ---------------------------------------------------------------- Stripe
    Op(
        "POST",
        "/v1/stripe/sync",
        "syncStripe",
        "Push unsynced usage to Stripe now; answers what was pushed and what failed",
        "stripe",
        "admin",
        w.StripeSyncRun,
        errors=(400, 409),
        description="Takes no parameters (a body, if any, must be valid JSON). 400 "
        "stripe_not_configured without a Stripe API key; 409 stripe_sync_in_progress while "
        "another run (on any instance) holds the lease.",
        links=(Link("GetRun", "getStripeSyncRun", {"run_id": "$response.body#/id"}),),
    ),
    _read(
        "/v1/stripe/sync_runs",
        "listStripeSyncRuns",
        "Stripe sync runs, newest first",
        "stripe",
        w.StripeSyncRunList,
        links=(_first("GetFirst", "getStripeSyncRun", "run_id"),),
        params=(_limit(20, 100), _after("run")),
    ),
    _read(
        "/v1/stripe/sync_runs/{run_id}",
        "getStripeSyncRun",
        "One Stripe sync run",
        "stripe",
        w.StripeSyncRun,
        params=(Param("run_id", "path", "The run's id (srun_...)"),),
    ),
    _read(
        "/v1/stripe/customers",
        "listStripeCustomerStates",
        "Per-customer Stripe state, newest customer first: last pushed period, pending "
        "amount, last error",
        "stripe",
        w.StripeCustomerStateList,
        links=(_first("GetFirst", "getStripeCustomerState", "customer_ref", "customer_id"),),
        params=(_limit(20, 100), _after("customer (a cus_ id)")),
    ),
    _read(
        "/v1/stripe/customers/{customer_ref}",
        "getStripeCustomerState",
        "One customer's Stripe state",
        "stripe",
        w.StripeCustomerState,
        params=(Param("customer_ref", "path", "A `cus_` id or your external id"),),
    ),
    _read(
        "/v1/stripe/batches",
        "listStripeBatches",
        "Meter-event batches, newest first",
        "stripe",
        w.StripeBatchList,
        links=(_first("ResolveFirst", "resolveStripeBatch", "batch_id"),),
        params=(
            _limit(50, 500),
            _after("batch", checked=False),
            Param("customer_id", "query", "A `cus_` id or an external id (404 if none)"),
            Param(
                "state",
                "query",
                "Only batches in this state",
                {"type": "string", "enum": list(get_args(w.BatchState))},
            ),
        ),
        errors=(404,),
    ),
    Op(
        "POST",
        "/v1/stripe/batches/{batch_id}/resolve",
        "resolveStripeBatch",
        "Resolve a failed or uncertain batch as pushed, or to resend",
        "stripe",
        "admin",
        w.StripeBatch,
        request=w.StripeBatchResolve,
        params=(Param("batch_id", "path", "The batch's id (sbat_...)"),),
        errors=(409,),
        description="404 stripe_batch_not_found; 409 stripe_batch_not_resolvable unless the "
        "batch is failed or uncertain.",
    ),
]
