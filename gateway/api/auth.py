"""Bearer-key authentication and scopes: a guard on every route.

A route's scope is what a key must be allowed to do there:

"public"  - no key (/healthz, /readyz; /metrics checks its own)
"proxy"   - app or admin keys (the metered routes, /v1/models)
"any"     - any valid key (the OpenAPI document)
"read"    - read, billing or admin keys (every GET of the management API by default)
"billing" - billing or admin keys (customers, wallets, plans)
"admin"   - admin keys (keys, webhooks, Stripe; every other write by default)

A route sets it with `opt={"scope": ...}`; `auth_guard` also stamps each request with an id
(`FC-Request-Id` on the answer) and builds the `Actor` the audit log records.
`authenticate` is the one implementation; the guard and the proxy's fast path call it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.audit import Actor
from gateway.container import Services
from gateway.errors import AuthenticationRequired, InsufficientPermissions, InvalidRequest
from gateway.ids import new_id
from gateway.services.keys import KeyKind, KeyService, Principal

Scope = Literal["proxy", "any", "read", "billing", "admin"]
MAX_KEY_LENGTH = 512

ALLOWED: dict[Scope, frozenset[KeyKind]] = {
    "proxy": frozenset({"app", "admin"}),
    "any": frozenset({"app", "read", "billing", "admin"}),
    "read": frozenset({"read", "billing", "admin"}),
    "billing": frozenset({"billing", "admin"}),
    "admin": frozenset({"admin"}),
}
_NEEDS: dict[Scope, str] = {
    "proxy": "an app or admin key",
    "any": "a key",
    "read": "a read, billing or admin key",
    "billing": "a billing or admin key",
    "admin": "an admin key",
}


async def authenticate(
    keys: KeyService, authorization: str | None, x_api_key: str | None, scope: Scope
) -> Principal:
    """The caller's principal for a route of `scope`, or AuthenticationRequired (401) /
    InsufficientPermissions (403, naming the scope needed)."""
    header = authorization
    if header is None and x_api_key is not None:
        # The anthropic SDK sends its key this way; same keys, same rules.
        header = "Bearer " + x_api_key
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_LENGTH:
        raise AuthenticationRequired()
    principal = await keys.authenticate(token)
    if principal is None:
        raise AuthenticationRequired("Invalid API key.")
    if principal.kind not in ALLOWED[scope]:
        article = "an" if principal.kind in ("app", "admin") else "a"
        raise InsufficientPermissions(
            f"This route needs {_NEEDS[scope]}; this is {article} {principal.kind} key.",
            required_scope=scope,
            key_kind=principal.kind,
        )
    return principal


def _client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The client's address as the server saw it (or as a trusted proxy said), only if it
    is an IP address: the audit log never stores arbitrary header text as `ip`."""
    host = connection.client.host if connection.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def route_scope(handler: BaseRouteHandler, method: str, path: str) -> Scope | Literal["public"]:
    opt = handler.opt
    if opt.get("auth") == "public":
        return "public"
    if path.startswith("/schema"):
        return "any"
    scope: Scope | None = opt.get("scope")
    if scope is not None:
        return scope
    return "read" if method in ("GET", "HEAD") else "admin"


def refuse_nul(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """No path or query value may hold a NUL: no id does, and PostgreSQL text cannot."""
    for name, value in connection.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest(f"{name} must not contain NUL characters.", param=name)
    for name, value in connection.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise InvalidRequest(f"{name} must not contain NUL characters.", param=name)


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    method = str(connection.scope.get("method", "GET"))
    scope = route_scope(handler, method, connection.url.path)
    refuse_nul(connection)
    if scope == "public":
        return
    services: Services = connection.app.state.services
    principal = await authenticate(
        services.keys,
        connection.headers.get("authorization"),
        connection.headers.get("x-api-key"),
        scope,
    )
    request_id = new_id("req")
    connection.state.principal = principal
    connection.state.request_id = request_id
    connection.state.actor = Actor(
        principal.kind,
        principal.key_id,
        request_id=request_id,
        ip=_client_ip(connection),
        idempotency_key=connection.headers.get("idempotency-key"),
    )
