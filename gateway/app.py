"""create_app(): the Litestar application, its routes and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from gateway import __version__
from gateway.api import customers, keys, proxy, usage
from gateway.api.auth import auth_guard
from gateway.api.errors import EXCEPTION_HANDLERS
from gateway.api.health import healthz
from gateway.clock import Clock, utcnow
from gateway.config import Settings
from gateway.db.database import Database
from gateway.events import EventBus
from gateway.ledger.holds import HoldKeeper
from gateway.ledger.idempotency import Idempotency
from gateway.ledger.ledger import Ledger
from gateway.ledger.prices import PriceBook
from gateway.providers.registry import ProviderRegistry
from gateway.services.customers import CustomerService
from gateway.services.keys import KeyService
from gateway.services.usage import UsageService
from gateway.services.wallets import WalletService

log = logging.getLogger("ringside.app")


@dataclass
class Services:
    """The service functions both the HTTP API and the dashboard call."""

    bus: EventBus
    customers: CustomerService
    keys: KeyService
    wallets: WalletService
    usage: UsageService
    idempotency: Idempotency
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Gateway:
    """Everything one running gateway owns. Kept on `app.state` and handed to the dashboard."""

    settings: Settings
    db: Database
    bus: EventBus
    ledger: Ledger
    prices: PriceBook
    services: Services
    holds: HoldKeeper
    providers: ProviderRegistry | None = None
    model_list: list[dict[str, Any]] = field(default_factory=list)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    scheduler: Any = None
    loop: asyncio.AbstractEventLoop | None = None


def build_gateway(
    settings: Settings,
    db: Database,
    *,
    admin_key: str,
    bus: EventBus | None = None,
    clock: Clock = utcnow,
) -> Gateway:
    bus = bus or EventBus()
    ledger = Ledger(db, settings, bus, clock)
    idempotency = Idempotency(db)
    services = Services(
        bus=bus,
        customers=CustomerService(db, ledger, bus),
        keys=KeyService(db, bus, admin_key),
        wallets=WalletService(ledger, idempotency, bus),
        usage=UsageService(db, ledger),
        idempotency=idempotency,
    )
    gw = Gateway(
        settings=settings,
        db=db,
        bus=bus,
        ledger=ledger,
        prices=PriceBook(settings),
        services=services,
        holds=HoldKeeper(ledger),
    )
    _attach_extra_services(gw)
    return gw


# Modules that add a service: each exposes `build_service(gw) -> (name, service)`; the
# service lands in `gw.services.extra[name]` for the API and the dashboard alike.
EXTRA_SERVICE_MODULES = ("gateway.webhooks.service", "gateway.stripe_sync")


def _attach_extra_services(gw: Gateway) -> None:
    for module_name in EXTRA_SERVICE_MODULES:
        try:
            module = __import__(module_name, fromlist=["build_service"])
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        build = getattr(module, "build_service", None)
        if build is not None:
            name, service = build(gw)
            gw.services.extra[name] = service


def _model_list(gw: Gateway) -> list[dict[str, Any]]:
    assert gw.providers is not None
    out = []
    seen: set[str] = set()
    for name, provider in gw.providers.providers.items():
        names = list(provider.models())
        ps = gw.settings.providers[name]
        if ps.api_key or name not in ("openai", "anthropic") or _base_url_overridden(gw, name):
            # Without a key the official APIs refuse every call: don't advertise them.
            names += gw.prices.catalog_models(name)
        names += [k.split("/", 1)[1] for k in gw.settings.prices if k.startswith(f"{name}/")]
        for model in names:
            mid = f"fc:{name}/{model}"
            if mid in seen or not gw.prices.known(name, model):
                continue
            seen.add(mid)
            out.append({"id": mid, "object": "model", "created": 0, "owned_by": name})
    return out


def _base_url_overridden(gw: Gateway, name: str) -> bool:
    default = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
    return gw.settings.providers[name].base_url != default.get(name)


@contextlib.asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    gw: Gateway = app.state.gateway
    gw.loop = asyncio.get_running_loop()
    gw.providers = ProviderRegistry(
        gw.settings,
        lambda p, m: (
            gw.prices.rates(p, m).max_output_tokens
            if gw.prices.known(p, m)
            else gw.settings.billing.default_max_output_tokens
        ),
    )
    app.state.providers = gw.providers
    gw.model_list = _model_list(gw)
    app.state.model_list = gw.model_list
    await gw.holds.start()
    from gateway.jobs import start_scheduler

    gw.scheduler = start_scheduler(gw)
    try:
        yield
    finally:
        if gw.scheduler is not None:
            with contextlib.suppress(Exception):
                gw.scheduler.shutdown(wait=False)
        # Let in-flight calls finish settling before the database goes away.
        if gw.background:
            await asyncio.wait(list(gw.background), timeout=30)
        await gw.holds.stop()
        await gw.providers.aclose()
        for service in gw.services.extra.values():
            close = getattr(service, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def create_app(gw: Gateway) -> Litestar:
    app = Litestar(
        route_handlers=[
            healthz,
            *proxy.ROUTES,
            *customers.ROUTES,
            *keys.ROUTES,
            *usage.ROUTES,
            *_extra_routes(),
        ],
        guards=[auth_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[_lifespan],
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
    app.state.gateway = gw
    app.state.settings = gw.settings
    app.state.ledger = gw.ledger
    app.state.prices = gw.prices
    app.state.holds = gw.holds
    app.state.services = gw.services
    app.state.background = gw.background
    return app


def _extra_routes() -> list[Any]:
    """Routes of the webhook and Stripe modules, when present."""
    routes: list[Any] = []
    for module_name in ("gateway.api.webhooks", "gateway.api.stripe"):
        try:
            module = __import__(module_name, fromlist=["ROUTES"])
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        routes.extend(module.ROUTES)
    return routes
