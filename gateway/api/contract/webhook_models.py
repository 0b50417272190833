"""Typed models of the webhook routes (endpoints, events, deliveries) and the Stripe sync,
as the code answers them (`gateway.webhooks.service`, `gateway.event_types`,
`gateway.stripe_sync.service` and `.engine`).

Every name is prefixed (Webhook*, Stripe*): the OpenAPI components are named after the
classes, so they must not collide with `models.py`. The Literals repeat the code's fixed
sets (event types, delivery statuses, batch states, value units); a test checks they agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from gateway.api.contract.models import Rfc3339, Unix

# ---------------------------------------------------------------- shared vocabulary

EventTypeName = Literal[
    "budget.warning",
    "budget_exceeded",
    "wallet.low",
    "wallet.empty",
    "wallet.topped_up",
    "customer.rate_limited",
    "webhook_endpoint.disabled",
    "plan.changed",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventTypeName)
DeliveryStatus = Literal["pending", "delivered", "failed"]
BatchState = Literal["claimed", "pushed", "failed", "uncertain", "unpushable"]
ValueUnit = Literal["price_cents", "cost_cents", "price_microusd", "tokens"]

Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD (UTC)")]
Exact = Annotated[
    float,
    Meta(description="In the value unit, an exact JSON number (fractions of a unit kept)"),
]
WebhookUrl = Annotated[
    str,
    Meta(
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@:\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*$",
        description="An http(s) URL naming a host; link-local and cloud metadata addresses "
        "are refused (400 invalid_webhook_url), private ones unless "
        "[webhooks] allow_private_networks = false",
    ),
]
Subscription = Annotated[
    list[Literal[EventTypeName, "*"]],
    Meta(
        min_length=1,
        description='Event types to send; ["*"] (alone), null or omitted: every type. '
        "Duplicates are dropped.",
        extra_json_schema={"not": {"contains": {"const": "*"}, "minItems": 2}},
    ),
]
Description = Annotated[
    str,
    Meta(max_length=1000, pattern=r"^[^\x00]*$", description="Free text, trimmed"),
]
FullSecret = Annotated[
    str,
    Meta(
        pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$",
        description="The Standard Webhooks signing secret; shown only in this answer",
    ),
]
MaskedSecret = Annotated[
    str,
    Meta(
        pattern=r"^whsec_\*\*\*\*[A-Za-z0-9+/=]{4}$",
        description="The secret, masked: whsec_**** and its last 4 characters",
    ),
]
EnabledIn = Annotated[bool, Meta(description="Default true (null: the default)")]
RetryEndpointId = Annotated[str, Meta(description="Only this endpoint (must be enabled)")]
GracePeriod = Annotated[
    int,
    Meta(
        ge=0,
        le=7 * 24 * 3600,
        description="Seconds the old secret keeps signing beside the new one (default 86400; "
        "0: stops at once)",
    ),
]

# ---------------------------------------------------------------- endpoints


class WebhookEndpoint(Struct, kw_only=True):
    """An endpoint with its health; the secret masked."""

    id: str
    object: Literal["webhook_endpoint"]
    url: str
    events: list[EventTypeName] | None
    description: str | None
    enabled: bool
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    secret: MaskedSecret
    created: Unix
    created_at: Rfc3339
    last_success_at: Rfc3339 | None
    failing_since_at: Rfc3339 | None
    previous_secret_expires_at: Rfc3339 | None
    pending_deliveries: Annotated[int, Meta(ge=0, description="Deliveries still to send")]


class WebhookEndpointWithSecret(Struct, kw_only=True):
    """The endpoint as created or just rotated: the secret in full, the only time it is
    shown. `pending_deliveries` is in the answer to create (0), not to rotate_secret."""

    id: str
    object: Literal["webhook_endpoint"]
    url: str
    events: list[EventTypeName] | None
    description: str | None
    enabled: bool
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    secret: FullSecret
    created: Unix
    created_at: Rfc3339
    last_success_at: Rfc3339 | None
    failing_since_at: Rfc3339 | None
    previous_secret_expires_at: Rfc3339 | None
    pending_deliveries: Annotated[int, Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET


class WebhookEndpointList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[WebhookEndpoint]
    has_more: bool
    url: str


class WebhookEndpointDeleted(Struct, kw_only=True):
    id: str
    object: Literal["webhook_endpoint"]
    deleted: Literal[True]


class WebhookEndpointCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    url: WebhookUrl
    events: Subscription | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    enabled: (
        Annotated[bool, Meta(description="Default true (null: the default)")]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET


class WebhookEndpointUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields sent change. `enabled: true` clears the failure history and sends
    the deliveries held back meanwhile; `events: null` subscribes to every type."""

    url: WebhookUrl | msgspec.UnsetType = msgspec.UNSET
    events: Subscription | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookSecretRotate(Struct, kw_only=True, forbid_unknown_fields=True):
    """Optional: an empty body rotates with the default grace period."""

    grace_period_s: GracePeriod | msgspec.UnsetType = msgspec.UNSET


# ---------------------------------------------------------------- events and deliveries


class WebhookEvent(Struct, kw_only=True):
    """The envelope every event travels in (the webhook body is exactly this)."""

    id: str
    object: Literal["event"]
    type: EventTypeName
    created: Unix
    data: Annotated[
        dict[str, Any],
        Meta(description="The event's facts (the customer, amounts, thresholds); by type"),
    ]


class WebhookEventList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[WebhookEvent]
    has_more: bool
    url: str


class WebhookAttempt(Struct, kw_only=True):
    id: str
    object: Literal["webhook_attempt"]
    delivery_id: str
    attempted_at: Rfc3339
    status_code: int | None
    error: str | None
    duration_ms: int
    response_body: Annotated[str, Meta(description="The receiver's first KiB")] | None


class WebhookEventDelivery(Struct, kw_only=True):
    """A delivery inside an event: with the endpoint's URL and state, and its attempts."""

    id: str
    object: Literal["webhook_delivery"]
    event_id: str
    endpoint_id: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: Annotated[Rfc3339, Meta(description="Set while pending")] | None
    last_attempt_at: Rfc3339 | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Rfc3339 | None
    created: Unix
    created_at: Rfc3339
    attempts: list[WebhookAttempt]
    endpoint_url: str | msgspec.UnsetType = msgspec.UNSET
    endpoint_enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookEventDetail(Struct, kw_only=True):
    """The event as delivered, plus its deliveries (oldest first) and their attempts."""

    id: str
    object: Literal["event"]
    type: EventTypeName
    created: Unix
    data: dict[str, Any]
    deliveries: list[WebhookEventDelivery]


class WebhookEventRetry(Struct, kw_only=True, forbid_unknown_fields=True):
    """Optional: an empty body (or endpoint_id null) sends to every enabled endpoint
    subscribed to the event's type, creating deliveries for endpoints added since."""

    endpoint_id: (
        Annotated[str, Meta(description="Only this endpoint (must be enabled)")]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET


class WebhookDelivery(Struct, kw_only=True):
    """A delivery with its endpoint's URL and state and its event's type and customer."""

    id: str
    object: Literal["webhook_delivery"]
    event_id: str
    endpoint_id: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: Annotated[Rfc3339, Meta(description="Set while pending")] | None
    last_attempt_at: Rfc3339 | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Rfc3339 | None
    created: Unix
    created_at: Rfc3339
    endpoint_url: str | msgspec.UnsetType = msgspec.UNSET
    endpoint_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    event_type: EventTypeName | msgspec.UnsetType = msgspec.UNSET
    customer_id: str | msgspec.UnsetType | None = msgspec.UNSET


class WebhookDeliveryList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[WebhookDelivery]
    has_more: bool
    url: str


# ---------------------------------------------------------------- Stripe sync runs


class StripeSyncRunCustomer(Struct, kw_only=True):
    customer_id: str
    external_id: str
    stripe_customer_id: str
    events: int
    value: int
    identifiers: list[str]


class StripeSyncFailure(Struct, kw_only=True):
    customer_id: str
    external_id: str
    stripe_customer_id: str | None
    batch_id: str | None
    identifier: str | None
    day: Day | None
    value: int | None
    code: Annotated[str, Meta(description="stripe_customer_not_found, stripe_unavailable, ...")]
    message: str
    http_status: int | None
    stripe_code: str | None
    retryable: bool


class StripeSyncSkipped(Struct, kw_only=True):
    customer_id: str
    external_id: str
    reason: Literal["no_stripe_customer_id"]
    pending_value: int
    pending: Exact


class StripeSyncUnpushable(Struct, kw_only=True):
    """Usage older than Stripe's 35-day window: reported once, never sent."""

    customer_id: str
    external_id: str
    days: int
    first_day: Day
    last_day: Day
    value: int
    batch_ids: list[str]
    exact: Exact


class StripeCreatedCustomer(Struct, kw_only=True):
    customer_id: str
    stripe_customer_id: str


class StripeRunError(Struct, kw_only=True):
    code: str
    message: str


class StripeSyncRun(Struct, kw_only=True):
    id: str
    object: Literal["stripe_sync_run"]
    trigger: Literal["manual", "schedule", "recovery"]
    status: Literal["succeeded", "partial", "failed"]
    started_at: Rfc3339
    finished_at: Rfc3339
    duration_ms: int
    unit: ValueUnit
    event_name: str
    customers_pushed: int
    events: int
    total_value: int
    customers: list[StripeSyncRunCustomer]
    failures: list[StripeSyncFailure]
    skipped: list[StripeSyncSkipped]
    unpushable: list[StripeSyncUnpushable]
    created_stripe_customers: list[StripeCreatedCustomer]
    error: Annotated[StripeRunError, Meta(description="Set when the run failed as a whole")] | None


class StripeSyncRunList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[StripeSyncRun]
    has_more: bool
    url: str


# ---------------------------------------------------------------- Stripe customer state


class StripeCustomerError(Struct, kw_only=True):
    code: str
    message: str
    at: Rfc3339
    batch_id: str | None


class StripeCustomerState(Struct, kw_only=True):
    object: Literal["stripe_customer_state"]
    customer_id: str
    external_id: str
    name: str
    customer_status: Literal["active", "suspended", "archived"]
    stripe_customer_id: str | None
    status: Literal["unmapped", "action_required", "error", "pending", "synced"]
    unit: ValueUnit
    last_pushed_day: Day | None
    last_pushed_at: Rfc3339 | None
    pushed_events: int
    pushed_value: int
    pending_value: Annotated[int, Meta(description="Whole units waiting to be pushed")]
    pending: Exact
    carry: Annotated[Exact, Meta(description="The remainder below one unit, carried on")]
    outstanding_batches: int
    unpushable_value: int
    last_error: StripeCustomerError | None


class StripeCustomerStateList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[StripeCustomerState]
    has_more: bool
    url: str


# ---------------------------------------------------------------- Stripe batches


class StripeBatchError(Struct, kw_only=True):
    code: str
    message: str | None


class StripeBatch(Struct, kw_only=True):
    """One meter event: claimed -> pushed, or failed / uncertain / unpushable."""

    id: str
    object: Literal["stripe_batch"]
    customer_id: str
    stripe_customer_id: str | None
    day: Day
    identifier: str
    event_name: str
    unit: ValueUnit
    value: int
    timestamp: Unix
    state: BatchState
    attempts: int
    duplicate: Annotated[bool, Meta(description="Stripe already had this identifier")]
    last_error: StripeBatchError | None
    created_at: Rfc3339
    pushed_at: Rfc3339 | None
    resolved_by: Literal["operator"] | None


class StripeBatchList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[StripeBatch]
    has_more: bool
    url: str


class StripeBatchResolve(Struct, kw_only=True, forbid_unknown_fields=True):
    outcome: Annotated[
        Literal["pushed", "resend"],
        Meta(
            description="pushed: Stripe has it (or it was billed another way); resend: Stripe "
            "certainly does not, send it again"
        ),
    ]
