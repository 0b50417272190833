"""Background jobs on APScheduler (3.x, in-memory jobs with stable ids).

Durable state lives in our own tables; jobs only drive it. Modules that own jobs
(webhooks, Stripe sync) expose `register_jobs(scheduler, gateway)`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("ringside.jobs")

JOB_MODULES = ("gateway.webhooks.jobs", "gateway.stripe_sync")


async def purge_idempotency_keys(gw: Gateway) -> None:
    try:
        await gw.db.write(gw.services.idempotency.purge_expired_sync)
    except Exception as exc:
        log.warning("idempotency purge failed: %s", exc)


def start_scheduler(gw: Gateway) -> Any:
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        purge_idempotency_keys,
        "interval",
        hours=1,
        args=[gw],
        id="idempotency-purge",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
    for module_name in JOB_MODULES:
        try:
            module = __import__(module_name, fromlist=["register_jobs"])
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        register = getattr(module, "register_jobs", None)
        if register is not None:
            register(scheduler, gw)
    scheduler.start()
    return scheduler
