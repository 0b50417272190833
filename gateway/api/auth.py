"""Bearer-key authentication: a guard on every route; route `opt["auth"]` sets the scope.

"public" - no key (only /healthz)
"app"    - an app key or the admin key (the proxy routes, the OpenAPI document)
default  - the admin key
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.container import Services
from gateway.errors import AuthenticationRequired, InsufficientPermissions
from gateway.services.keys import Principal


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    scope = handler.opt.get("auth")
    if scope == "public":
        return
    if scope is None and connection.url.path.startswith("/schema"):
        scope = "app"
    header = connection.headers.get("authorization")
    if header is None and "x-api-key" in connection.headers:
        # The anthropic SDK sends its key this way; same keys, same rules.
        header = "Bearer " + connection.headers["x-api-key"]
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        raise AuthenticationRequired()
    found: Services = connection.app.state.services
    principal: Principal | None = await found.keys.authenticate(token)
    if principal is None:
        raise AuthenticationRequired("Invalid API key.")
    if scope != "app" and principal.kind != "admin":
        raise InsufficientPermissions()
    connection.state.principal = principal
