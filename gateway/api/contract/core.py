"""The operations of the proxy, customers, wallets, plans, keys, usage and the audit log."""

from __future__ import annotations

from typing import Any

from gateway.api.contract import models as m
from gateway.api.contract import statement_models as sm
from gateway.api.contract.spec import Link, Op, Param

PAGE = (
    Param(
        "limit",
        "query",
        "Items per page (default 20; customers and plans at most 100)",
        {"type": "string", "pattern": r"^\d{1,6}$"},
    ),
    Param("starting_after", "query", "The id of the last item of the previous page"),
    Param("ending_before", "query", "The id of the first item of the next page"),
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
CUSTOMER_REF = Param("customer_ref", "path", "A `cus_` id or your external id")
PLAN_REF = Param("plan_ref", "path", "A `plan_` id or the plan's external id")
IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    "1-255 printable characters; the same key and body within 24 h answer the stored answer",
    {"type": "string", "minLength": 1, "maxLength": 255},
)
FC_CUSTOMER = Param(
    "FC-Customer",
    "header",
    "The paying customer: a `cus_` id or your external id (exactly one header)",
    {"type": "string", "minLength": 1, "maxLength": 255},
)
PROXY_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "FC-Cost-USD",
    "FC-Price-USD",
    "FC-Budget-Remaining-USD",
    "FC-Wallet-Balance-USD",
)
PROXY_ERRORS = (402, 403, 404, 429, 502, 503, 504)

_USAGE_ADDED = {
    "type": "object",
    "description": "The provider's usage, with Ringside's exact cost and price added",
    "properties": {
        "cost_usd": {"type": "number", "description": "What the call cost (USD, exact)"},
        "price_usd": {"type": "number", "description": "What the customer was charged"},
    },
}


def _passthrough(kind: str, required: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{kind}, passed through to the provider; `model` is "
        "`fc:<provider>/<model>`",
        "required": required,
        "properties": {
            "model": {"type": "string", "examples": ["fc:openai/gpt-4o-mini"]},
            **extra,
        },
        "additionalProperties": True,
    }


_MESSAGES = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "object", "required": ["role"], "additionalProperties": True},
}
_ANSWER = {
    "type": "object",
    "description": "The provider's answer, as it sent it, with `usage.cost_usd` and "
    "`usage.price_usd` added",
    "properties": {"usage": _USAGE_ADDED},
    "additionalProperties": True,
}
_SSE = {"text/event-stream": {"type": "string", "description": "Server-sent events"}}
_CSV = {"text/csv": {"type": "string", "description": "CSV, header row first (Accept: text/csv)"}}

OPS: list[Op] = [
    # ---------------------------------------------------------------- health
    Op("GET", "/healthz", "getHealth", "Liveness", "health", "public", m.Health),
    Op(
        "GET",
        "/readyz",
        "getReadiness",
        "Readiness: the database takes writes",
        "health",
        "public",
        m.Ready,
        errors=(503,),
    ),
    Op(
        "GET",
        "/metrics",
        "getMetrics",
        "Prometheus metrics (admin key, the metrics token, or public by configuration)",
        "health",
        "admin",
        None,
        extra_content={"text/plain": {"type": "string"}},
        errors=(404,),
    ),
    Op(
        "GET",
        "/schema/openapi.json",
        "getOpenApi",
        "This document",
        "health",
        "any",
        None,
        response_schema={"type": "object"},
    ),
    # ---------------------------------------------------------------- proxy
    Op(
        "POST",
        "/v1/chat/completions",
        "createChatCompletion",
        "OpenAI-compatible chat completions, metered (JSON, or SSE with `stream: true`)",
        "proxy",
        "proxy",
        None,
        request_schema=_passthrough(
            "OpenAI's chat request",
            ["model", "messages"],
            {
                "messages": _MESSAGES,
                "stream": {"type": "boolean"},
                "max_tokens": {"type": "integer", "minimum": 1},
            },
        ),
        response_schema=_ANSWER,
        extra_content=_SSE,
        params=(FC_CUSTOMER,),
        errors=PROXY_ERRORS,
        response_headers=PROXY_HEADERS,
    ),
    Op(
        "POST",
        "/v1/embeddings",
        "createEmbedding",
        "OpenAI-compatible embeddings, metered",
        "proxy",
        "proxy",
        None,
        request_schema=_passthrough("OpenAI's embeddings request", ["model", "input"], {}),
        response_schema=_ANSWER,
        params=(FC_CUSTOMER,),
        errors=PROXY_ERRORS,
        response_headers=PROXY_HEADERS,
    ),
    Op(
        "POST",
        "/v1/messages",
        "createMessage",
        "Anthropic's Messages API (for the anthropic SDK), metered",
        "proxy",
        "proxy",
        None,
        request_schema=_passthrough(
            "Anthropic's messages request (a bare model name means anthropic/<model>)",
            ["model", "messages"],
            {"messages": _MESSAGES, "max_tokens": {"type": "integer", "minimum": 1}},
        ),
        response_schema=_ANSWER,
        extra_content=_SSE,
        params=(FC_CUSTOMER,),
        errors=PROXY_ERRORS,
        response_headers=PROXY_HEADERS,
    ),
    Op(
        "GET",
        "/v1/models",
        "listModels",
        "Routable models; with FC-Customer, only those its allow-list lets it call",
        "proxy",
        "proxy",
        m.ModelList,
        params=(FC_CUSTOMER,),
        errors=(404,),
    ),
    # ---------------------------------------------------------------- customers
    Op(
        "GET",
        "/v1/customers",
        "listCustomers",
        "List customers (newest first)",
        "customers",
        "read",
        m.CustomerList,
        params=(
            *PAGE,
            Param(
                "status",
                "query",
                "Only customers in this status",
                {"type": "string", "enum": ["active", "suspended", "archived"]},
            ),
            Param("external_id", "query", "Only the customer with this external id"),
            Param("search", "query", "Name, email or external id contains this"),
            Param("q", "query", "The same as search"),
        ),
    ),
    Op(
        "POST",
        "/v1/customers",
        "createCustomer",
        "Create a customer (honours Idempotency-Key)",
        "customers",
        "billing",
        m.Customer,
        status=201,
        request=m.CustomerCreate,
        params=(IDEMPOTENCY,),
        errors=(409,),
        response_headers=("Idempotent-Replayed",),
        links=(
            Link("GetCustomer", "getCustomer", {"customer_ref": "$response.body#/id"}),
            Link("TopUp", "topUpWallet", {"customer_ref": "$response.body#/id"}),
            Link("Usage", "getUsage", {"customer_id": "$response.body#/id"}),
            Link("Update", "updateCustomer", {"customer_ref": "$response.body#/id"}),
        ),
    ),
    Op(
        "GET",
        "/v1/customers/{customer_ref}",
        "getCustomer",
        "Retrieve a customer, with its effective terms",
        "customers",
        "read",
        m.Customer,
        params=(CUSTOMER_REF,),
    ),
    Op(
        "PATCH",
        "/v1/customers/{customer_ref}",
        "updateCustomer",
        "Update a customer (`status` suspends, reactivates or archives)",
        "customers",
        "billing",
        m.Customer,
        request=m.CustomerUpdate,
        params=(CUSTOMER_REF,),
        errors=(409,),
    ),
    Op(
        "DELETE",
        "/v1/customers/{customer_ref}",
        "archiveCustomer",
        "Archive a customer (its ledger and usage stay)",
        "customers",
        "billing",
        m.Customer,
        params=(CUSTOMER_REF,),
    ),
    Op(
        "POST",
        "/v1/customers/{customer_ref}/wallet/topup",
        "topUpWallet",
        "Top up a prepaid wallet (honours Idempotency-Key)",
        "wallets",
        "billing",
        m.TopupOut,
        request=m.TopupIn,
        params=(CUSTOMER_REF, IDEMPOTENCY),
        errors=(409,),
        response_headers=("Idempotent-Replayed",),
        links=(Link("Wallet", "getWallet", {"customer_ref": "$response.body#/customer_id"}),),
    ),
    Op(
        "GET",
        "/v1/customers/{customer_ref}/wallet",
        "getWallet",
        "Wallet balance and its latest transactions",
        "wallets",
        "read",
        m.Wallet,
        params=(
            CUSTOMER_REF,
            Param(
                "limit",
                "query",
                "Transactions (default 100, at most 1000)",
                {"type": "string", "pattern": r"^\d{1,6}$"},
            ),
        ),
    ),
    # ---------------------------------------------------------------- plans
    Op(
        "GET",
        "/v1/plans",
        "listPlans",
        "List plans (newest first), with customer counts",
        "plans",
        "read",
        m.PlanList,
        params=PAGE,
    ),
    Op(
        "POST",
        "/v1/plans",
        "createPlan",
        "Create a plan",
        "plans",
        "billing",
        m.Plan,
        status=201,
        request=m.PlanCreate,
        errors=(409,),
        links=(Link("GetPlan", "getPlan", {"plan_ref": "$response.body#/id"}),),
    ),
    Op(
        "GET",
        "/v1/plans/{plan_ref}",
        "getPlan",
        "Retrieve a plan",
        "plans",
        "read",
        m.Plan,
        params=(PLAN_REF,),
    ),
    Op(
        "PATCH",
        "/v1/plans/{plan_ref}",
        "updatePlan",
        "Update a plan (applies at once to its customers; `limits` merges)",
        "plans",
        "billing",
        m.Plan,
        request=m.PlanUpdate,
        params=(PLAN_REF,),
        errors=(409,),
    ),
    Op(
        "DELETE",
        "/v1/plans/{plan_ref}",
        "deletePlan",
        "Delete an unused plan (409 plan_in_use while a customer is on it)",
        "plans",
        "billing",
        m.Deleted,
        params=(PLAN_REF,),
        errors=(409,),
    ),
    # ---------------------------------------------------------------- keys
    Op(
        "GET",
        "/v1/keys",
        "listKeys",
        "List API keys",
        "keys",
        "admin",
        m.ApiKeyList,
        params=(
            Param(
                "include_revoked",
                "query",
                "Also revoked keys",
                {"type": "string", "enum": ["true", "false", "1", "0"]},
            ),
        ),
    ),
    Op(
        "POST",
        "/v1/keys",
        "createKey",
        "Create an API key (shown once)",
        "keys",
        "admin",
        m.ApiKeyCreated,
        status=201,
        request=m.ApiKeyCreate,
    ),
    Op(
        "DELETE",
        "/v1/keys/{key_id}",
        "revokeKey",
        "Revoke an API key",
        "keys",
        "admin",
        m.ApiKey,
        params=(Param("key_id", "path", "The key's id (key_...)"),),
    ),
    # ---------------------------------------------------------------- usage
    Op(
        "GET",
        "/v1/usage",
        "getUsage",
        "Usage totals, optionally broken down by day, model or customer (CSV: one row per "
        "group, or the totals)",
        "usage",
        "read",
        m.Usage,
        params=(
            Param("customer_id", "query", "A `cus_` id or an external id"),
            Param("customer", "query", "The same as customer_id"),
            *WHEN,
            Param(
                "group_by",
                "query",
                "Break the totals down",
                {"type": "string", "enum": ["day", "model", "customer"]},
            ),
        ),
        errors=(404,),
        extra_content=_CSV,
    ),
    Op(
        "GET",
        "/v1/requests",
        "listRequests",
        "The per-request log, newest first (CSV: every matching request, streamed)",
        "usage",
        "read",
        m.RequestList,
        params=(
            Param("customer_id", "query", "A `cus_` id or an external id"),
            Param("customer", "query", "The same as customer_id"),
            Param("model", "query", "fc:<provider>/<model> or <provider>/<model>"),
            Param(
                "status",
                "query",
                "Only requests with this outcome",
                {"type": "string", "enum": ["ok", "error", "refused", "cut"]},
            ),
            *WHEN,
            PAGE[0],
            PAGE[1],
        ),
        errors=(404,),
        extra_content=_CSV,
    ),
    # ---------------------------------------------------------------- statements
    Op(
        "GET",
        "/v1/customers/{customer_ref}/statement",
        "getStatement",
        "A month's statement: opening balance, top-ups, usage by model and day, wallet "
        "debits, closing balance (CSV: one row per day)",
        "statements",
        "read",
        sm.Statement,
        params=(
            CUSTOMER_REF,
            Param(
                "month",
                "query",
                "A UTC month, YYYY-MM (1970-01 to 9998-12); default: this month",
                {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}$"},
            ),
        ),
        extra_content=_CSV,
        description="Reconciles to the nano-dollar: closing_balance_usd = opening_balance_usd "
        "+ topups_usd + adjustments_usd - wallet_debits_usd, and `usage` equals /v1/usage "
        "for the customer over the month.",
    ),
    # ---------------------------------------------------------------- audit
    Op(
        "GET",
        "/v1/audit_log",
        "listAuditLog",
        "Every management write, newest first (send Accept: text/csv for CSV)",
        "audit",
        "read",
        m.AuditList,
        params=(
            *PAGE,
            Param("customer_id", "query", "A `cus_` id or an external id"),
            Param("action", "query", "Only this action (customer.created, wallet.topup, ...)"),
            *WHEN,
        ),
        extra_content={"text/csv": {"type": "string"}},
    ),
]
