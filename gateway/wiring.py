"""Builds the gateway's parts once, typed, and owns their start and stop.

`build_gateway` constructs everything from the settings and an open database; each part
receives only the narrow things it needs. `Gateway.start()` / `Gateway.stop()` run on the
gateway's event loop (the app lifespan calls them): they open the upstream connections,
start the hold keeper and the scheduler, and on the way down let in-flight calls settle
before anything closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.clock import Clock, utcnow
from gateway.config import Settings
from gateway.container import Services
from gateway.db.database import Database
from gateway.events import EventBus
from gateway.jobs import start_scheduler
from gateway.ledger import HoldKeeper, Idempotency, Ledger, PriceBook
from gateway.metering import MeteringService
from gateway.metering.observe import CallObserver
from gateway.metrics import Metrics
from gateway.ops import MetricsService
from gateway.providers.registry import ProviderRegistry
from gateway.services.audit import AuditService
from gateway.services.customers import CustomerService
from gateway.services.keys import KeyService
from gateway.services.plans import PlanService
from gateway.services.snapshots import SnapshotService
from gateway.services.statements import StatementService
from gateway.services.usage import UsageService
from gateway.services.wallets import WalletService
from gateway.stripe_sync import StripeSyncService
from gateway.tasks import BackgroundTasks
from gateway.tracing import build_tracer
from gateway.webhooks.delivery import DeliveryWorker
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.service import WebhookService

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

log = logging.getLogger("ringside.wiring")

# At shutdown: how long settlements of calls whose clients already left may still take, and
# how long cut calls get to write their settlement.
STRAGGLERS_S = 5.0
CUT_SETTLE_S = 10.0

_OFFICIAL_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


@dataclass
class Gateway:
    """Everything one running gateway owns."""

    settings: Settings
    db: Database
    bus: EventBus
    clock: Clock
    ledger: Ledger
    prices: PriceBook
    holds: HoldKeeper
    providers: ProviderRegistry
    webhook_worker: DeliveryWorker
    tasks: BackgroundTasks
    services: Services
    # OpenTelemetry's provider when tracing is on: flushed on stop.
    tracer_provider: TracerProvider | None = None
    scheduler: AsyncIOScheduler | None = None
    loop: asyncio.AbstractEventLoop | None = field(default=None)

    async def start(self) -> None:
        """On the gateway's loop: connections, hold keeper, scheduled jobs."""
        self.loop = asyncio.get_running_loop()
        await self.providers.open()
        await self.holds.start()
        self.scheduler = start_scheduler(
            settings=self.settings,
            db=self.db,
            bus=self.bus,
            idempotency=self.services.idempotency,
            webhook_worker=self.webhook_worker,
            stripe=self.services.stripe,
            loop=self.loop,
        )

    async def stop(self, grace_s: float = 30.0) -> None:
        """Let in-flight calls settle, then close what `start` opened."""
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)
            self.scheduler = None
        # The server already gave open connections `grace_s`; calls still running past it
        # are cut: each settles as a cut stream (charged for what it produced) on its way out.
        await self.tasks.drain(min(grace_s, STRAGGLERS_S))
        await self.tasks.cancel_all(CUT_SETTLE_S)
        await self.holds.stop()
        await self.providers.aclose()
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.shutdown)  # flushes pending spans
        for close in (self.services.webhooks.aclose, self.services.stripe.aclose):
            try:
                await close()
            except Exception:
                log.exception("closing a service failed")


def _max_output_tokens(settings: Settings, prices: PriceBook, provider: str, model: str) -> int:
    if prices.known(provider, model):
        return prices.rates(provider, model).max_output_tokens
    return settings.billing.default_max_output_tokens


def routable_models(
    settings: Settings, providers: ProviderRegistry, prices: PriceBook
) -> list[dict[str, Any]]:
    """What GET /v1/models lists: every priced model each configured provider can serve."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, provider in providers.providers.items():
        names = list(provider.models())
        ps = settings.providers[name]
        overridden = ps.base_url != _OFFICIAL_BASE_URLS.get(name)
        if ps.api_key or name not in _OFFICIAL_BASE_URLS or overridden:
            # Without a key the official APIs refuse every call: don't advertise them.
            names += prices.catalog_models(name)
        names += [k.split("/", 1)[1] for k in settings.prices if k.startswith(f"{name}/")]
        for model in names:
            mid = f"fc:{name}/{model}"
            if mid in seen or not prices.known(name, model):
                continue
            seen.add(mid)
            out.append({"id": mid, "object": "model", "created": 0, "owned_by": name})
    return out


def build_gateway(
    settings: Settings,
    db: Database,
    *,
    admin_key: str,
    bus: EventBus | None = None,
    clock: Clock = utcnow,
    wall_clock: Clock = utcnow,
    span_processor: SpanProcessor | None = None,
) -> Gateway:
    """`clock` is the business clock (months, holds, money rows); `wall_clock` runs what
    waits real time or coordinates live processes (webhook retries, leases, idempotency
    windows). Tests move `clock` and leave `wall_clock` alone: see `gateway.clock`."""
    bus = bus or EventBus()
    tasks = BackgroundTasks()
    # Events the ledger records are fanned out to webhook endpoints in the same transaction.
    outbox = Outbox(wall_clock)
    ledger = Ledger(db, settings, bus, clock, outbox=outbox)
    prices = PriceBook(settings)
    holds = HoldKeeper(ledger)
    providers = ProviderRegistry(settings, lambda p, m: _max_output_tokens(settings, prices, p, m))
    idempotency = Idempotency(db, wall_clock)
    customers = CustomerService(db, ledger, bus, idempotency, clock)
    worker = DeliveryWorker(
        db, settings.webhooks, bus, background=tasks, clock=wall_clock, outbox=outbox
    )
    webhooks = WebhookService(
        db,
        settings.webhooks,
        bus,
        worker,
        resolve_customer=ledger.resolve_customer,
        clock=wall_clock,
    )

    async def store_stripe_id(customer_id: str, stripe_id: str) -> None:
        await customers.update(customer_id, {"stripe_customer_id": stripe_id})

    stripe = StripeSyncService(
        settings.stripe,
        db=db,
        clock=clock,
        wall_clock=wall_clock,
        bus=bus,
        tasks=tasks,
        resolve_customer=ledger.resolve_customer,
        store_stripe_id=store_stripe_id,
    )
    if settings.stripe.create_customers:
        customers.on_created.append(stripe.on_customer_created)
    metrics = Metrics(per_customer=settings.metrics.per_customer)
    metrics.holds_open.set_function(lambda: len(holds.active))
    access = settings.server.access_log
    traced = build_tracer(settings.tracing, span_processor)
    observer = CallObserver(
        metrics,
        access=access if access is not None else settings.server.log_format == "json",
        tracer=traced[0] if traced else None,
    )
    metering = MeteringService(
        observer=observer,
        ledger=ledger,
        prices=prices,
        providers=providers,
        holds=holds,
        untagged="allow" if settings.billing.untagged == "allow" else "reject",
        tasks=tasks,
        models=routable_models(settings, providers, prices),
    )
    services = Services(
        bus=bus,
        metering=metering,
        customers=customers,
        plans=PlanService(db, ledger, bus, outbox, clock),
        audit=AuditService(db),
        keys=KeyService(db, bus, admin_key, clock),
        wallets=WalletService(ledger, idempotency, bus),
        usage=UsageService(db, ledger),
        statements=StatementService(db, ledger, clock),
        idempotency=idempotency,
        webhooks=webhooks,
        stripe=stripe,
        metrics=MetricsService(metrics, db, ledger, wall_clock),
        metrics_settings=settings.metrics,
        snapshots=SnapshotService(db, clock, Decimal(settings.billing.budget_warning_share)),
    )
    return Gateway(
        settings=settings,
        db=db,
        bus=bus,
        clock=clock,
        ledger=ledger,
        prices=prices,
        holds=holds,
        providers=providers,
        webhook_worker=worker,
        tasks=tasks,
        services=services,
        tracer_provider=traced[1] if traced else None,
    )
