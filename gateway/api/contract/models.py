"""The management API's typed models: what each route takes and answers, as msgspec
Structs. The OpenAPI document is generated from them (`document.py`); schemathesis holds
the running server to it.

Money is USD as an exact JSON number (at most 9 decimals), never a string. Times are unix
seconds (`created`) and RFC 3339 (`*_at`). A request field absent from a body is left as
it is; `null` clears it where the field says so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Usd = Annotated[float, Meta(description="USD, an exact JSON number (at most 9 decimals)")]
UsdIn = Annotated[
    float, Meta(ge=0, le=1_000_000_000, description="USD, a JSON number, at most 9 decimals")
]
TopupUsd = Annotated[
    float, Meta(gt=0, le=1_000_000, description="USD above 0, at most 1,000,000; 9 decimals")
]
Markup = Annotated[float, Meta(ge=0, le=1000, description="Price = cost x markup (6 decimals)")]
Unix = Annotated[int, Meta(description="Unix seconds")]
Rfc3339 = Annotated[str, Meta(description="RFC 3339 time, UTC")]
ExternalId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x2b\x2d-\x2e\x30-\x7e]+$",
        description="Your id: printable ASCII without spaces, ',' or '/' (sent in FC-Customer)",
    ),
]
Name = Annotated[str, Meta(min_length=1, max_length=255, pattern=r"\S")]
Limit = Annotated[int, Meta(ge=1, le=1_000_000_000_000)]
Pattern = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=r"^(\*|[!-.0-~][!-~]*/[!-~]*)$",
        description="provider/model; '*' matches anything (anthropic/*, *)",
    ),
]
Metadata = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=40)], str | int | float],
    Meta(max_length=50, description="Up to 50 keys; values up to 500 characters"),
]


PlanRef = Annotated[str, Meta(max_length=255, description="A plan's id or external id")]
Expiry = Annotated[str, Meta(max_length=64, description="RFC 3339 with an offset, in the future")]


class Deleted(Struct, kw_only=True):
    id: str
    object: str
    deleted: Literal[True]


# ---------------------------------------------------------------- errors


class ErrorDetail(Struct, kw_only=True):
    type: str
    code: str
    message: str
    param: str | None = None


class ErrorBody(Struct, kw_only=True):
    """Every 4xx and 5xx: OpenAI's envelope. Some codes add fields (a 402 names the
    customer and the money; a 429 the limit; a 500 a reference for the log)."""

    error: ErrorDetail


# ---------------------------------------------------------------- ops


class Health(Struct, kw_only=True):
    status: Literal["ok"]
    version: str


class Ready(Struct, kw_only=True):
    status: Literal["ready"]


# ---------------------------------------------------------------- limits and plans


class RateLimits(Struct, kw_only=True):
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None


class RateLimitsIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """Positive integers; on PATCH they merge into what is set, and null removes one."""

    requests_per_minute: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tokens_per_minute: Limit | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrent: Limit | msgspec.UnsetType | None = msgspec.UNSET


Models = Annotated[list[Pattern], Meta(max_length=100)]


class Plan(Struct, kw_only=True):
    id: str
    object: Literal["plan"]
    external_id: str | None
    name: str
    monthly_budget_usd: Usd | None
    prepaid: bool | None
    low_balance_threshold_usd: Usd | None
    markup: float | None
    allowed_models: list[str] | None
    limits: RateLimits
    created: Unix
    created_at: Rfc3339
    updated_at: Rfc3339
    customers: int = 0


class PlanList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[Plan]
    has_more: bool
    url: str


class PlanCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    external_id: ExternalId | msgspec.UnsetType | None = msgspec.UNSET
    monthly_budget_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    prepaid: bool | msgspec.UnsetType | None = msgspec.UNSET
    low_balance_threshold_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    markup: Markup | msgspec.UnsetType | None = msgspec.UNSET
    allowed_models: Models | msgspec.UnsetType | None = msgspec.UNSET
    limits: RateLimitsIn | msgspec.UnsetType | None = msgspec.UNSET


class PlanUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    external_id: ExternalId | msgspec.UnsetType | None = msgspec.UNSET
    monthly_budget_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    prepaid: bool | msgspec.UnsetType | None = msgspec.UNSET
    low_balance_threshold_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    markup: Markup | msgspec.UnsetType | None = msgspec.UNSET
    allowed_models: Models | msgspec.UnsetType | None = msgspec.UNSET
    limits: RateLimitsIn | msgspec.UnsetType | None = msgspec.UNSET


# ---------------------------------------------------------------- customers

Source = Literal["customer", "plan", "default"]


class Effective(Struct, kw_only=True):
    """What applies to the customer's calls, its own settings over its plan's."""

    plan: str | None
    monthly_budget_usd: Usd | None
    prepaid: bool
    low_balance_threshold_usd: Usd | None
    markup: float | None
    allowed_models: list[str] | None
    limits: RateLimits
    sources: dict[str, Source]


class WalletSummary(Struct, kw_only=True):
    balance_usd: Usd
    held_usd: Usd
    available_usd: Usd


class BudgetSummary(Struct, kw_only=True):
    period: Annotated[str, Meta(description="YYYY-MM (UTC)")]
    spent_usd: Usd
    held_usd: Usd
    remaining_usd: Usd | None


class Forecast(Struct, kw_only=True):
    """From the last 7 days' burn, weighted to the recent past; every field null while the
    customer has less than one day of traffic."""

    budget_exhausted_at: Annotated[
        Rfc3339 | None,
        Meta(description="When spent + held reaches the monthly budget; null: not this month"),
    ]
    wallet_empty_at: Annotated[
        Rfc3339 | None,
        Meta(description="When the available balance reaches 0; null: not prepaid, no burn"),
    ]
    month_end_cost_usd: Usd | None
    month_end_price_usd: Usd | None


class Customer(Struct, kw_only=True):
    id: str
    object: Literal["customer"]
    external_id: str
    name: str
    email: str | None
    status: Literal["active", "suspended", "archived"]
    monthly_budget_usd: Usd | None
    markup: float | None
    prepaid: bool | None
    low_balance_threshold_usd: Usd | None
    stripe_customer_id: str | None
    metadata: dict[str, str]
    plan: str | None
    allowed_models: list[str] | None
    limits: RateLimits
    created: Unix
    created_at: Rfc3339
    updated_at: Rfc3339
    archived_at: Rfc3339 | None
    effective: Effective
    budget: BudgetSummary
    wallet: WalletSummary | None = None
    forecast: Annotated[
        Forecast | None, Meta(description="GET /v1/customers/{id} only: the spend forecast")
    ] = None


class CustomerList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[Customer]
    has_more: bool
    url: str


class CustomerCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    external_id: ExternalId
    name: Name
    email: Annotated[str, Meta(max_length=320)] | msgspec.UnsetType | None = msgspec.UNSET
    monthly_budget_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    budget_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    markup: Markup | msgspec.UnsetType | None = msgspec.UNSET
    prepaid: bool | msgspec.UnsetType | None = msgspec.UNSET
    low_balance_threshold_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    stripe_customer_id: Annotated[str, Meta(max_length=255)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    metadata: Metadata | msgspec.UnsetType | None = msgspec.UNSET
    plan: (
        Annotated[str, Meta(description="A plan's id or external id")] | msgspec.UnsetType | None
    ) = msgspec.UNSET
    limits: RateLimitsIn | msgspec.UnsetType | None = msgspec.UNSET
    allowed_models: Models | msgspec.UnsetType | None = msgspec.UNSET


class CustomerUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    """Any create field; `status` suspends, reactivates or archives (final)."""

    external_id: ExternalId | msgspec.UnsetType = msgspec.UNSET
    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Annotated[str, Meta(max_length=320)] | msgspec.UnsetType | None = msgspec.UNSET
    monthly_budget_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    budget_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    markup: Markup | msgspec.UnsetType | None = msgspec.UNSET
    prepaid: bool | msgspec.UnsetType | None = msgspec.UNSET
    low_balance_threshold_usd: UsdIn | msgspec.UnsetType | None = msgspec.UNSET
    stripe_customer_id: Annotated[str, Meta(max_length=255)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    metadata: Metadata | msgspec.UnsetType | None = msgspec.UNSET
    status: Literal["active", "suspended", "archived"] | msgspec.UnsetType = msgspec.UNSET
    plan: str | msgspec.UnsetType | None = msgspec.UNSET
    limits: RateLimitsIn | msgspec.UnsetType | None = msgspec.UNSET
    allowed_models: Models | msgspec.UnsetType | None = msgspec.UNSET


# ---------------------------------------------------------------- wallets


class Transaction(Struct, kw_only=True):
    id: str
    object: Literal["wallet_transaction"]
    customer_id: str
    type: Literal["topup", "usage", "adjustment"]
    amount_usd: Usd
    balance_after_usd: Usd
    request_id: str | None
    description: str | None
    created: Unix
    created_at: Rfc3339


class TopupIn(Struct, kw_only=True, forbid_unknown_fields=True):
    amount_usd: TopupUsd
    description: Annotated[str, Meta(max_length=500)] | msgspec.UnsetType | None = msgspec.UNSET


class TopupOut(Struct, kw_only=True):
    object: Literal["wallet"]
    customer_id: str
    balance_usd: Usd
    transaction: Transaction


class Wallet(Struct, kw_only=True):
    object: Literal["wallet"]
    customer_id: str
    prepaid: bool
    balance_usd: Usd
    held_usd: Usd
    available_usd: Usd
    low_balance_threshold_usd: Usd | None
    transactions: list[Transaction]


# ---------------------------------------------------------------- usage and requests


class UsageGroup(Struct, kw_only=True):
    requests: int
    input_tokens: int
    output_tokens: int
    total_cost_usd: Usd
    total_price_usd: Usd
    margin_usd: Usd
    day: str | None = None
    model: str | None = None
    customer_id: str | None = None


class Usage(Struct, kw_only=True):
    object: Literal["usage"]
    customer_id: str | None
    since: str | None
    until: str | None
    group_by: Literal["day", "model", "customer"] | None
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_cost_usd: Usd
    total_price_usd: Usd
    margin_usd: Usd
    breakdown: list[UsageGroup] | None = None


class LoggedRequest(Struct, kw_only=True):
    id: str
    object: Literal["request"]
    customer_id: str | None
    model: str
    provider: str
    endpoint: str
    stream: bool
    status: Literal["ok", "error", "refused", "cut"]
    http_status: int
    error_code: str | None
    input_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Usd
    price_usd: Usd
    margin_usd: Usd
    held_usd: Usd
    over_hold: bool
    latency_ms: int
    created: Unix
    created_at: Rfc3339


class RequestList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[LoggedRequest]
    has_more: bool
    url: str


# ---------------------------------------------------------------- keys


KeyKind = Literal["app", "read", "billing", "admin"]


class _ApiKeyFields(Struct, kw_only=True):
    """What every answer about a key holds (never the key itself, except at creation)."""

    id: str
    object: Literal["api_key"]
    name: str
    prefix: str
    kind: KeyKind
    limits: RateLimits
    created: Unix
    created_at: Rfc3339
    revoked_at: Rfc3339 | None
    last_used_at: Rfc3339 | None
    expires_at: Rfc3339 | None


class ApiKey(_ApiKeyFields, kw_only=True):
    deleted: bool | None = None


class ApiKeyCreated(_ApiKeyFields, kw_only=True):
    key: Annotated[str, Meta(description="The key itself; shown only in this answer")]


class ApiKeyList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[ApiKey]
    has_more: bool
    url: str


class ApiKeyCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"\S")]
    kind: KeyKind | msgspec.UnsetType = msgspec.UNSET
    expires_at: (
        Annotated[str, Meta(description="RFC 3339, in the future")] | msgspec.UnsetType | None
    ) = msgspec.UNSET
    limits: RateLimitsIn | msgspec.UnsetType | None = msgspec.UNSET


# ---------------------------------------------------------------- audit log


class AuditEntry(Struct, kw_only=True):
    id: str
    object: Literal["audit_entry"]
    created: Unix
    created_at: Rfc3339
    key_id: str | None
    key_kind: Literal["admin", "billing", "read", "app", "dashboard", "system"]
    action: str
    target_id: str | None
    customer_id: str | None
    changes: dict[str, list[Any]] | None
    request_id: str | None
    idempotency_key: str | None
    ip: str | None


class AuditList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[AuditEntry]
    has_more: bool
    url: str


# ---------------------------------------------------------------- proxy


class Model(Struct, kw_only=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[Model]
