"""The OpenAPI 3.1 document, generated from the operations and their typed models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from gateway.api.contract.models import ErrorBody
from gateway.api.contract.spec import Op, Param

REF = "#/components/schemas/{name}"
ERROR_REF = {"$ref": REF.format(name="ErrorBody")}
_REASONS = {
    400: "Invalid request: `param` names the field, header or query parameter",
    401: "No key, or an unknown, revoked or expired one",
    402: "The customer's budget or wallet cannot pay for the call (never forwarded)",
    403: "The key may not call this route (`required_scope`), or the customer may not",
    404: "No such resource",
    405: "Method not allowed on this route",
    409: "Conflicts with the current state",
    413: "The body is larger than the server accepts",
    415: "A body of a type the route does not take",
    429: "A rate limit refused the call (not forwarded, not charged)",
    500: "A bug: the message carries a reference for the server log",
    502: "The provider failed (not charged)",
    503: "The database cannot take the write (fail closed)",
    504: "The provider timed out (not charged)",
}
RESPONSE_HEADERS = {
    "FC-Request-Id": "This request's id (the request log's, or the audit log's `request_id`)",
    "Idempotent-Replayed": "`true` when this answer is the stored one for the Idempotency-Key",
    "Retry-After": "Whole seconds until the call would fit",
    "x-ratelimit-limit-requests": "requests_per_minute, when a limit applies",
    "x-ratelimit-remaining-requests": "Calls that still fit in the current minute",
    "x-ratelimit-reset-requests": "When the window is empty again (`1s`, `6m0s`)",
    "x-ratelimit-limit-tokens": "tokens_per_minute, when a limit applies",
    "x-ratelimit-remaining-tokens": "Tokens that still fit in the current minute",
    "x-ratelimit-reset-tokens": "When the token window is empty again",
    "FC-Cost-USD": "What the call cost (not on streams)",
    "FC-Price-USD": "What the customer was charged (not on streams)",
    "FC-Budget-Remaining-USD": "What is left of the month's budget",
    "FC-Wallet-Balance-USD": "The wallet balance after the call",
}


def _param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "in": p.where,
        "description": p.description,
        "required": p.required or p.where == "path",
        "schema": p.schema,
    }
    return out


def _types(ops: Iterable[Op]) -> list[type]:
    found: list[type] = [ErrorBody]
    for op in ops:
        for t in (op.request, op.response):
            if t is not None and t not in found:
                found.append(t)
    return found


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [_param(p) for p in op.params],
    }
    if op.description:
        out["description"] = op.description
    if op.scope == "public":
        out["security"] = []
    else:
        out["x-ringside-scope"] = op.scope
    body_schema = (
        {"$ref": REF.format(name=op.request.__name__)} if op.request else op.request_schema
    )
    if body_schema is not None:
        out["requestBody"] = {"required": op.body_required, "content": _json(body_schema)}
    ok_schema = (
        {"$ref": REF.format(name=op.response.__name__)} if op.response else op.response_schema
    )
    content = _json(ok_schema) if ok_schema is not None else {}
    content.update({media: {"schema": schema} for media, schema in op.extra_content.items()})
    ok: dict[str, Any] = {"description": "Success"}
    if content:
        ok["content"] = content
    headers = ("FC-Request-Id", *op.response_headers) if op.scope != "public" else ()
    if headers:
        ok["headers"] = {
            h: {"description": RESPONSE_HEADERS[h], "schema": {"type": "string"}} for h in headers
        }
    if op.links:
        ok["links"] = {
            link.name: {"operationId": link.operation_id, "parameters": link.parameters}
            for link in op.links
        }
    responses: dict[str, Any] = {str(op.status): ok}
    statuses = set(op.errors)
    if op.scope != "public":
        statuses |= {401, 403}
    if op.params or body_schema is not None:
        statuses.add(400)
    if body_schema is not None:
        statuses.add(413)
    if any(p.where == "path" for p in op.params):
        statuses.add(404)
    for status in sorted(statuses):
        error: dict[str, Any] = {"description": _REASONS[status], "content": _json(ERROR_REF)}
        if status == 429:
            error["headers"] = {
                h: {"description": RESPONSE_HEADERS[h], "schema": {"type": "string"}}
                for h in ("Retry-After", "x-ratelimit-limit-requests")
            }
        responses[str(status)] = error
    # Anything else (a 5xx, a 405) still has the envelope.
    responses["default"] = {"description": "An error, in the envelope", "content": _json(ERROR_REF)}
    out["responses"] = responses
    return out


def openapi_document(ops: Iterable[Op], *, version: str, description: str) -> dict[str, Any]:
    ops = list(ops)
    _, components = msgspec.json.schema_components(_types(ops), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ringside", "version": version, "description": description},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: admin, billing, read or app (rs_...). The "
                    "`x-ringside-scope` of an operation names the least kind it takes.",
                }
            },
        },
        "security": [{"bearer": []}],
    }
