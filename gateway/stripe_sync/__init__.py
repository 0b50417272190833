"""Stripe usage sync: metered usage reaches Stripe Billing meter events exactly once.

`StripeSyncService` (service.py) is built by the gateway's wiring; `register_jobs` puts
its nightly run and its recovery pass on the scheduler.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from gateway.config import StripeSettings
from gateway.stripe_sync.service import StripeSyncService

__all__ = ["StripeSyncService", "register_jobs"]

log = logging.getLogger("ringside.stripe")

SYNC_JOB_ID = "stripe-sync"
RECOVERY_JOB_ID = "stripe-sync-recovery"
RECOVERY_INTERVAL_MIN = 5


def register_jobs(
    scheduler: BaseScheduler, service: StripeSyncService, settings: StripeSettings
) -> None:
    """The nightly sync on `[stripe] sync_cron` (UTC) and a frequent recovery pass."""
    if not service.configured:
        log.info("Stripe sync not scheduled: no API key in $%s", settings.api_key_env)
        return
    scheduler.add_job(
        service.run_scheduled,
        CronTrigger.from_crontab(settings.sync_cron, timezone="UTC"),
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
