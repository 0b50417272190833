"""Peewee models for every table Ringside keeps.

Conventions: money is integer nano-USD (`*_nanos`, BigInteger); times are integer
milliseconds since the epoch, UTC (`*_ms`), which compare and index the same way on
SQLite and PostgreSQL; ids are prefixed strings.
"""

from __future__ import annotations

import json
from typing import Any

import peewee as pw

database_proxy = pw.DatabaseProxy()


class JSONText(pw.TextField):
    """JSON stored as text, portable across SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), default=str)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaMigration(BaseModel):
    version = pw.IntegerField(primary_key=True)
    name = pw.CharField()
    applied_ms = pw.BigIntegerField()


class Customer(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    external_id = pw.CharField(unique=True, max_length=255)
    name = pw.CharField(max_length=255)
    email = pw.CharField(null=True, max_length=320)
    status = pw.CharField(default="active", max_length=16, index=True)  # active|suspended|archived
    monthly_budget_nanos = pw.BigIntegerField(null=True)
    markup = pw.CharField(null=True, max_length=32)  # Decimal as text
    prepaid = pw.BooleanField(default=False)
    low_balance_threshold_nanos = pw.BigIntegerField(null=True)
    stripe_customer_id = pw.CharField(null=True, max_length=255, index=True)
    metadata = JSONText(null=True)
    created_ms = pw.BigIntegerField()
    updated_ms = pw.BigIntegerField()
    archived_ms = pw.BigIntegerField(null=True)
    # m0005: plans. The customer's own limits win over its plan's, field by field; a null
    # field (or `prepaid_own` false) takes the plan's value. See `gateway.plans.terms`.
    plan_id = pw.CharField(null=True, max_length=40, index=True)
    limits = JSONText(null=True)  # {"requests_per_minute": 20, ...}, the customer's own
    allowed_models = JSONText(null=True)  # ["openai/gpt-4o-mini", "anthropic/*"]
    prepaid_own = pw.BooleanField(default=False, constraints=[pw.SQL("DEFAULT FALSE")])


class ApiKey(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    name = pw.CharField(max_length=255)
    key_hash = pw.CharField(unique=True, max_length=64)
    prefix = pw.CharField(max_length=16)
    created_ms = pw.BigIntegerField()
    revoked_ms = pw.BigIntegerField(null=True)
    last_used_ms = pw.BigIntegerField(null=True)
    limits = JSONText(null=True)  # m0005: the key's own rate limits
    # m0006: scoped keys. admin | billing | read | app; an expired key is refused (401).
    kind = pw.CharField(max_length=16, default="app", constraints=[pw.SQL("DEFAULT 'app'")])
    expires_ms = pw.BigIntegerField(null=True)


class Wallet(BaseModel):
    """A prepaid balance. `held_nanos` is reserved by in-flight calls, never negative."""

    customer_id = pw.CharField(primary_key=True, max_length=40)
    balance_nanos = pw.BigIntegerField(default=0)
    held_nanos = pw.BigIntegerField(default=0)
    low_armed = pw.BooleanField(default=True)  # wallet.low fires on the next downward crossing
    empty_armed = pw.BooleanField(default=True)
    updated_ms = pw.BigIntegerField()


class BudgetPeriod(BaseModel):
    """Cost spent and held by a customer in one calendar month (UTC), 'YYYY-MM'."""

    customer_id = pw.CharField(max_length=40)
    period = pw.CharField(max_length=7)
    spent_nanos = pw.BigIntegerField(default=0)
    held_nanos = pw.BigIntegerField(default=0)
    warned = pw.BooleanField(default=False)
    exceeded = pw.BooleanField(default=False)

    class Meta:
        primary_key = pw.CompositeKey("customer_id", "period")


class Hold(BaseModel):
    """A reservation taken before forwarding a call; settled, released or expired after."""

    id = pw.CharField(primary_key=True, max_length=40)
    request_id = pw.CharField(max_length=40, index=True)
    customer_id = pw.CharField(null=True, max_length=40)
    period = pw.CharField(max_length=7)
    budget_nanos = pw.BigIntegerField(default=0)  # held against the monthly budget (cost)
    wallet_nanos = pw.BigIntegerField(default=0)  # held against the wallet (price)
    status = pw.CharField(max_length=12, default="active")  # active|settled|released|expired
    created_ms = pw.BigIntegerField()
    expires_ms = pw.BigIntegerField()
    # m0005: the rate-limit subjects whose concurrency slot this call holds (space-separated);
    # released at settlement, or by the sweep when the hold lapses.
    slots = pw.TextField(null=True)

    class Meta:
        indexes = ((("status", "expires_ms"), False),)


class WalletTransaction(BaseModel):
    """Every movement of a wallet balance: top-ups, usage debits, adjustments."""

    id = pw.CharField(primary_key=True, max_length=40)
    customer_id = pw.CharField(max_length=40)
    type = pw.CharField(max_length=16)  # topup|usage|adjustment
    amount_nanos = pw.BigIntegerField()  # signed: + credit, - debit
    balance_after_nanos = pw.BigIntegerField()
    request_id = pw.CharField(null=True, max_length=40)
    description = pw.TextField(null=True)
    created_ms = pw.BigIntegerField()

    class Meta:
        indexes = ((("customer_id", "created_ms"), False),)


class IdempotencyRecord(BaseModel):
    key = pw.CharField(max_length=255)
    scope = pw.CharField(max_length=255)  # method + route + principal
    request_hash = pw.CharField(max_length=64)
    status = pw.CharField(max_length=12)  # in_progress|done
    response_status = pw.IntegerField(null=True)
    response_body = pw.TextField(null=True)
    created_ms = pw.BigIntegerField(index=True)
    locked_until_ms = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("scope", "key")


class RequestLog(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    customer_id = pw.CharField(null=True, max_length=40)
    provider = pw.CharField(max_length=64)
    model = pw.CharField(max_length=255)
    endpoint = pw.CharField(max_length=32)  # chat|embeddings
    stream = pw.BooleanField(default=False)
    status = pw.CharField(max_length=16)  # ok|error|refused|cut
    http_status = pw.IntegerField()
    error_code = pw.CharField(null=True, max_length=64)
    input_tokens = pw.BigIntegerField(default=0)
    cached_tokens = pw.BigIntegerField(default=0)
    cache_write_tokens = pw.BigIntegerField(default=0)
    output_tokens = pw.BigIntegerField(default=0)
    reasoning_tokens = pw.BigIntegerField(default=0)
    cost_nanos = pw.BigIntegerField(default=0)
    price_nanos = pw.BigIntegerField(default=0)
    held_nanos = pw.BigIntegerField(default=0)
    over_hold = pw.BooleanField(default=False)
    latency_ms = pw.IntegerField(default=0)
    created_ms = pw.BigIntegerField()

    class Meta:
        indexes = (
            (("customer_id", "created_ms"), False),
            (("created_ms",), False),
            (("customer_id", "id"), False),  # m0004: /v1/requests?customer_id= keyset
        )


class UsageDaily(BaseModel):
    """Per day, per customer ('' = untagged), per provider/model: the settled totals."""

    day = pw.CharField(max_length=10)
    customer_id = pw.CharField(max_length=40)
    model = pw.CharField(max_length=255)
    requests = pw.BigIntegerField(default=0)
    input_tokens = pw.BigIntegerField(default=0)
    cached_tokens = pw.BigIntegerField(default=0)
    cache_write_tokens = pw.BigIntegerField(default=0)
    output_tokens = pw.BigIntegerField(default=0)
    reasoning_tokens = pw.BigIntegerField(default=0)
    cost_nanos = pw.BigIntegerField(default=0)
    price_nanos = pw.BigIntegerField(default=0)

    class Meta:
        primary_key = pw.CompositeKey("day", "customer_id", "model")
        indexes = ((("customer_id", "day"), False),)  # m0004: one customer's days


class Event(BaseModel):
    """A durable business event (threshold crossings, top-ups); the webhook outbox feeds off it."""

    id = pw.CharField(primary_key=True, max_length=40)
    type = pw.CharField(max_length=64, index=True)
    customer_id = pw.CharField(null=True, max_length=40, index=True)
    data = JSONText()
    created_ms = pw.BigIntegerField(index=True)


class WebhookEndpoint(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    url = pw.TextField()
    events = JSONText(null=True)  # None = all events
    description = pw.TextField(null=True)
    secret = pw.CharField(max_length=128)
    enabled = pw.BooleanField(default=True)
    disabled_reason = pw.TextField(null=True)
    created_ms = pw.BigIntegerField()
    last_success_ms = pw.BigIntegerField(null=True)
    failing_since_ms = pw.BigIntegerField(null=True)
    deleted_ms = pw.BigIntegerField(null=True)
    # m0003: after a rotation the old secret keeps signing until it expires (grace period).
    previous_secret = pw.CharField(null=True, max_length=128)
    previous_secret_expires_ms = pw.BigIntegerField(null=True)
    updated_ms = pw.BigIntegerField(null=True)


class WebhookDelivery(BaseModel):
    """The outbox: one row per event x endpoint, written in the event's transaction."""

    id = pw.CharField(primary_key=True, max_length=40)
    event_id = pw.CharField(max_length=40, index=True)
    endpoint_id = pw.CharField(max_length=40, index=True)
    status = pw.CharField(max_length=12, default="pending")  # pending|delivered|failed
    attempts = pw.IntegerField(default=0)
    next_attempt_ms = pw.BigIntegerField()
    locked_until_ms = pw.BigIntegerField(default=0)
    locked_by = pw.CharField(null=True, max_length=64)
    last_status_code = pw.IntegerField(null=True)
    last_error = pw.TextField(null=True)
    created_ms = pw.BigIntegerField(index=True)
    delivered_ms = pw.BigIntegerField(null=True)
    # m0003: retries run for max_retry_age_h from here (creation, or the last manual retry).
    window_start_ms = pw.BigIntegerField(null=True)
    last_attempt_ms = pw.BigIntegerField(null=True)

    class Meta:
        indexes = ((("status", "next_attempt_ms"), False),)


class WebhookAttempt(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    delivery_id = pw.CharField(max_length=40, index=True)
    attempted_ms = pw.BigIntegerField()
    status_code = pw.IntegerField(null=True)
    error = pw.TextField(null=True)
    duration_ms = pw.IntegerField(default=0)
    response_body = pw.TextField(null=True)  # m0003: the first KiB, for debugging receivers


class AuditEntry(BaseModel):
    """One management write (m0006): who, what, on what, the money before -> after. Written in
    the transaction of the change it records; never updated or deleted through the API."""

    id = pw.CharField(primary_key=True, max_length=40)
    created_ms = pw.BigIntegerField()
    key_id = pw.CharField(null=True, max_length=40)  # null: the bootstrap admin key
    key_kind = pw.CharField(max_length=16)  # admin | billing | read | app | dashboard | system
    action = pw.CharField(max_length=64)
    target_id = pw.CharField(null=True, max_length=64)
    customer_id = pw.CharField(null=True, max_length=40)
    changes = JSONText(null=True)  # {field: [before, after]}
    request_id = pw.CharField(null=True, max_length=64)
    idempotency_key = pw.CharField(null=True, max_length=255)
    ip = pw.CharField(null=True, max_length=64)

    class Meta:
        indexes = (
            (("customer_id", "id"), False),
            (("action", "id"), False),
        )


class Plan(BaseModel):
    """A named set of defaults for customers (m0005). Every field is optional: null means
    the plan does not set it, and a customer's own value always wins."""

    id = pw.CharField(primary_key=True, max_length=40)
    external_id = pw.CharField(null=True, unique=True, max_length=255)
    name = pw.CharField(max_length=255)
    monthly_budget_nanos = pw.BigIntegerField(null=True)
    prepaid = pw.BooleanField(null=True)
    low_balance_threshold_nanos = pw.BigIntegerField(null=True)
    markup = pw.CharField(null=True, max_length=32)
    allowed_models = JSONText(null=True)
    limits = JSONText(null=True)
    created_ms = pw.BigIntegerField()
    updated_ms = pw.BigIntegerField()


class RateWindow(BaseModel):
    """One rate-limit subject's last minute (m0005): `cus_...` or `key_...`.

    `requests` and `tokens` hold one-second buckets as JSON `[[second, amount], ...]`;
    `in_flight` counts the calls holding a concurrency slot. The row is locked while a call
    is admitted (see `gateway.limits`)."""

    subject = pw.CharField(primary_key=True, max_length=64)
    requests = pw.TextField(default="[]")
    tokens = pw.TextField(default="[]")
    in_flight = pw.BigIntegerField(default=0)
    notified = JSONText(null=True)  # {limit name: ms of the last customer.rate_limited event}
    updated_ms = pw.BigIntegerField()


class Lease(BaseModel):
    """A named lease so singleton jobs (Stripe sync) run on one instance at a time."""

    name = pw.CharField(primary_key=True, max_length=64)
    holder = pw.CharField(max_length=64)
    expires_ms = pw.BigIntegerField()


ALL_MODELS: list[type[BaseModel]] = [
    SchemaMigration,
    Customer,
    ApiKey,
    Wallet,
    BudgetPeriod,
    Hold,
    WalletTransaction,
    IdempotencyRecord,
    RequestLog,
    UsageDaily,
    Event,
    WebhookEndpoint,
    WebhookDelivery,
    WebhookAttempt,
    Lease,
    Plan,
    RateWindow,
    AuditEntry,
]
