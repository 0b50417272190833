"""create_app(): the Litestar application over a built `Gateway`, its routes and lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from gateway import __version__
from gateway.api import customers, keys, ops, plans, proxy, stripe, usage, webhooks
from gateway.api.auth import auth_guard
from gateway.api.errors import EXCEPTION_HANDLERS
from gateway.api.fast_proxy import RingsideApp
from gateway.wiring import Gateway


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
            *keys.ROUTES,
            *usage.ROUTES,
            *webhooks.ROUTES,
            *stripe.ROUTES,
        ],
        guards=[auth_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=gw.settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Ringside",
            version=__version__,
            description="Self-hosted AI gateway: OpenAI-compatible proxy with per-customer "
            "metering, budgets, wallets, webhooks and Stripe sync.",
            path="/schema",
            render_plugins=[JsonRenderPlugin(path="/openapi.json")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="Admin key or app key (rs_...)"
                    )
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        logging_config=None,
    )
    # The one thing on app.state: the controllers reach the services through it.
    app.state.services = gw.services
    app.services = gw.services
    app.max_body_bytes = gw.settings.server.max_body_bytes
    return app
