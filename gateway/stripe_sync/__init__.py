"""Stripe usage sync: metered usage reaches Stripe Billing meter events exactly once.

`gateway.app` calls `build_service(gw)`; `gateway.jobs` calls `register_jobs(scheduler, gw)`.
Imports stay lazy so the migration that only needs `models` does not pull in the SDK.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.stripe_sync.service import StripeSyncService

log = logging.getLogger("ringside.stripe")

SERVICE_NAME = "stripe"
SYNC_JOB_ID = "stripe-sync"
RECOVERY_JOB_ID = "stripe-sync-recovery"
RECOVERY_INTERVAL_MIN = 5


def build_service(gw: Gateway) -> tuple[str, StripeSyncService]:
    from gateway.stripe_sync.service import StripeSyncService

    service = StripeSyncService(gw)
    if gw.settings.stripe.create_customers:
        gw.services.customers.on_created.append(service.on_customer_created)
    return SERVICE_NAME, service


def register_jobs(scheduler: Any, gw: Gateway) -> None:
    """The nightly sync on `[stripe] sync_cron` (UTC) and a frequent recovery pass."""
    from apscheduler.triggers.cron import CronTrigger

    service = gw.services.extra.get(SERVICE_NAME)
    if service is None or not service.configured:
        log.info("Stripe sync not scheduled: no API key in $%s", gw.settings.stripe.api_key_env)
        return
    scheduler.add_job(
        service.run_scheduled,
        CronTrigger.from_crontab(gw.settings.stripe.sync_cron, timezone="UTC"),
        id=SYNC_JOB_ID,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )
    scheduler.add_job(
        service.run_recovery,
        "interval",
        minutes=RECOVERY_INTERVAL_MIN,
        id=RECOVERY_JOB_ID,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
