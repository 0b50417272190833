"""Background jobs on APScheduler (3.x, in-memory jobs with stable ids).

Durable state lives in our own tables; jobs only drive it. Each feature that owns jobs
(webhooks, Stripe sync) has a `register_jobs` that takes exactly what its jobs need.
"""

from __future__ import annotations

import asyncio
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway import stripe_sync
from gateway.config import Settings
from gateway.db.database import Database
from gateway.events import EventBus
from gateway.ledger import Idempotency
from gateway.stripe_sync import StripeSyncService
from gateway.webhooks import jobs as webhook_jobs
from gateway.webhooks.delivery import DeliveryWorker

log = logging.getLogger("ringside.jobs")


async def purge_idempotency_keys(db: Database, idempotency: Idempotency) -> None:
    try:
        await db.write(idempotency.purge_expired_sync)
    except Exception as exc:
        log.warning("idempotency purge failed: %s", exc)


def start_scheduler(
    *,
    settings: Settings,
    db: Database,
    bus: EventBus,
    idempotency: Idempotency,
    webhook_worker: DeliveryWorker,
    stripe: StripeSyncService,
    loop: asyncio.AbstractEventLoop,
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC", event_loop=loop)
    scheduler.add_job(
        purge_idempotency_keys,
        "interval",
        hours=1,
        args=[db, idempotency],
        id="idempotency-purge",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
    webhook_jobs.register_jobs(scheduler, webhook_worker, settings.webhooks, bus, loop)
    stripe_sync.register_jobs(scheduler, stripe, settings.stripe)
    scheduler.start()
    return scheduler
