"""Tables of the Stripe usage sync. Ringside's record of what was pushed is authoritative.

Stripe only de-duplicates meter-event identifiers for about 24 hours, so these rows, not
Stripe, decide whether a batch of usage still needs sending:

* `StripeUsageMark`  per customer and UTC day, the rollup totals already taken into
  batches (all three measures, so switching the value unit never re-pushes old usage).
* `StripeCustomerState`  per customer, the remainders below one unit carried to the next
  batch (one per measure) and the last push / last error, for the operator.
* `StripeBatch`  one meter event: claimed -> pushed, or failed / uncertain / unpushable.
* `StripeSyncRun`  the history of sync runs with their results.
"""

from __future__ import annotations

import peewee as pw

from gateway.db.models import BaseModel

BATCH_STATES = ("claimed", "pushed", "failed", "uncertain", "unpushable")
# Batches that still owe Stripe a delivery (or an operator decision).
OUTSTANDING_STATES = ("claimed", "failed", "uncertain")


class StripeCustomerState(BaseModel):
    customer_id = pw.CharField(primary_key=True, max_length=40)
    # Remainders below one unit, in the base measure (nano-USD or tokens); never rounded away.
    carry_price_nanos = pw.BigIntegerField(default=0)
    carry_cost_nanos = pw.BigIntegerField(default=0)
    carry_tokens = pw.BigIntegerField(default=0)
    last_pushed_day = pw.CharField(null=True, max_length=10)
    last_pushed_ms = pw.BigIntegerField(null=True)
    last_error_code = pw.CharField(null=True, max_length=64)
    last_error_message = pw.TextField(null=True)
    last_error_ms = pw.BigIntegerField(null=True)
    last_error_batch_id = pw.CharField(null=True, max_length=40)
    updated_ms = pw.BigIntegerField()


class StripeUsageMark(BaseModel):
    customer_id = pw.CharField(max_length=40)
    day = pw.CharField(max_length=10)
    price_nanos = pw.BigIntegerField(default=0)
    cost_nanos = pw.BigIntegerField(default=0)
    tokens = pw.BigIntegerField(default=0)
    next_seq = pw.IntegerField(default=1)  # numbers the day's batches inside the identifier
    updated_ms = pw.BigIntegerField()

    class Meta:
        primary_key = pw.CompositeKey("customer_id", "day")


class StripeBatch(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    customer_id = pw.CharField(max_length=40)
    day = pw.CharField(max_length=10)
    seq = pw.IntegerField()
    identifier = pw.CharField(unique=True, max_length=100)
    stripe_customer_id = pw.CharField(null=True, max_length=255)
    event_name = pw.CharField(max_length=100)
    unit = pw.CharField(max_length=20)
    value = pw.BigIntegerField()
    timestamp = pw.BigIntegerField()  # seconds since the epoch, as sent to Stripe
    # The usage this batch took from the rollups (all measures) and the carry it used.
    price_nanos = pw.BigIntegerField(default=0)
    cost_nanos = pw.BigIntegerField(default=0)
    tokens = pw.BigIntegerField(default=0)
    carry_in = pw.BigIntegerField(default=0)
    carry_out = pw.BigIntegerField(default=0)
    state = pw.CharField(max_length=12)
    attempts = pw.IntegerField(default=0)
    # Set before a request that Stripe may have recorded without us learning it; past
    # Stripe's de-duplication window such a batch is never resent blindly.
    uncertain_since_ms = pw.BigIntegerField(null=True)
    last_attempt_ms = pw.BigIntegerField(null=True)
    last_error_code = pw.CharField(null=True, max_length=64)
    last_error_message = pw.TextField(null=True)
    duplicate = pw.BooleanField(default=False)  # Stripe already had this identifier
    run_id = pw.CharField(null=True, max_length=40)
    pushed_run_id = pw.CharField(null=True, max_length=40)
    created_ms = pw.BigIntegerField()
    pushed_ms = pw.BigIntegerField(null=True)
    resolved_by = pw.CharField(null=True, max_length=16)  # "operator" when resolved by hand

    class Meta:
        indexes = (
            (("customer_id", "state"), False),
            (("state",), False),
            (("customer_id", "day", "seq"), True),
        )


class StripeSyncRun(BaseModel):
    id = pw.CharField(primary_key=True, max_length=40)
    trigger = pw.CharField(max_length=16)  # manual|schedule|recovery
    status = pw.CharField(max_length=16)  # succeeded|partial|failed
    unit = pw.CharField(max_length=20)
    event_name = pw.CharField(max_length=100)
    customers_pushed = pw.IntegerField(default=0)
    events = pw.IntegerField(default=0)
    total_value = pw.BigIntegerField(default=0)
    failures = pw.IntegerField(default=0)
    error_code = pw.CharField(null=True, max_length=64)
    result = pw.TextField()  # JSON written by gateway.jsoncodec, so exact decimals survive
    started_ms = pw.BigIntegerField(index=True)
    finished_ms = pw.BigIntegerField()


STRIPE_MODELS: list[type[BaseModel]] = [
    StripeCustomerState,
    StripeUsageMark,
    StripeBatch,
    StripeSyncRun,
]
