"""create_app(): the Litestar application over a built `Gateway`, its routes and lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from gateway.api import (
    audit,
    customers,
    keys,
    ops,
    plans,
    proxy,
    schema,
    stripe,
    usage,
    webhooks,
)
from gateway.api.auth import auth_guard
from gateway.api.errors import EXCEPTION_HANDLERS
from gateway.api.fast_proxy import RingsideApp
from gateway.wiring import Gateway


async def _request_id_header(message: Message, scope: Scope) -> None:
    """Every authenticated management answer names its request (the audit log's
    `request_id`) in `FC-Request-Id`."""
    if message["type"] != "http.response.start":
        return
    request_id = scope.get("state", {}).get("request_id")
    if request_id is not None:
        headers = MutableScopeHeaders.from_message(message)
        if "fc-request-id" not in headers:
            headers["FC-Request-Id"] = request_id


def create_app(gw: Gateway) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop(gw.settings.server.shutdown_grace_s)

    app = RingsideApp(
        route_handlers=[
            *ops.ROUTES,
            *proxy.ROUTES,
            *customers.ROUTES,
            *plans.ROUTES,
            *audit.ROUTES,
            *keys.ROUTES,
            *usage.ROUTES,
            *webhooks.ROUTES,
            *stripe.ROUTES,
            *schema.ROUTES,
        ],
        guards=[auth_guard],
        before_send=[_request_id_header],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=gw.settings.server.max_body_bytes,
        # The document is generated from the typed contract (gateway/api/contract).
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    # The one thing on app.state: the controllers reach the services through it.
    app.state.services = gw.services
    app.services = gw.services
    app.max_body_bytes = gw.settings.server.max_body_bytes
    return app
