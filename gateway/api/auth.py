"""Bearer-key authentication: a guard on every route; route `opt["auth"]` sets the scope.

"public" - no key (only /healthz)
"app"    - an app key or the admin key (the proxy routes, the OpenAPI document)
default  - the admin key

`authenticate` is the one implementation; the guard and the proxy's fast path call it.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.container import Services
from gateway.errors import AuthenticationRequired, InsufficientPermissions
from gateway.services.keys import KeyService, Principal

Scope = Literal["app", "admin"]
MAX_KEY_LENGTH = 512


async def authenticate(
    keys: KeyService, authorization: str | None, x_api_key: str | None, scope: Scope
) -> Principal:
    """The caller's principal for a route of `scope`, or AuthenticationRequired (401) /
    InsufficientPermissions (403)."""
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
    if scope != "app" and principal.kind != "admin":
        raise InsufficientPermissions()
    return principal


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    opt = handler.opt.get("auth")
    if opt == "public":
        return
    scope: Scope = "app" if opt == "app" or connection.url.path.startswith("/schema") else "admin"
    services: Services = connection.app.state.services
    connection.state.principal = await authenticate(
        services.keys,
        connection.headers.get("authorization"),
        connection.headers.get("x-api-key"),
        scope,
    )
