"""Scheduling of the delivery worker on the gateway's APScheduler.

The interval job is the safety net (it finds retries that came due and rows another
instance left behind); real time comes from the bus: every committed event wakes the
worker at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, SchedulerEvent
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.base import BaseScheduler

from gateway.config import WebhookSettings
from gateway.events import BusEvent, EventBus
from gateway.webhooks.delivery import DeliveryWorker

log = logging.getLogger("ringside.webhooks")

JOB_ID = "webhooks-deliver"
EXECUTOR = "webhooks"
# APScheduler logs every run at INFO; a poll every second would drown the gateway's log.
logging.getLogger(f"apscheduler.executors.{EXECUTOR}").setLevel(logging.WARNING)


def register_jobs(
    scheduler: BaseScheduler,
    worker: DeliveryWorker,
    settings: WebhookSettings,
    bus: EventBus,
    loop: asyncio.AbstractEventLoop,
) -> None:
    worker.attach(loop)
    interval = settings.poll_interval_s
    scheduler.add_executor(AsyncIOExecutor(), alias=EXECUTOR)
    scheduler.add_job(
        worker.tick,
        "interval",
        seconds=interval,
        id=JOB_ID,
        name="webhook deliveries",
        executor=EXECUTOR,
        replace_existing=True,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(interval * 2)),
        # First run at start-up: deliveries left pending by the last process go out now.
        next_run_time=datetime.now(UTC),
    )

    def on_bus(event: BusEvent) -> None:
        # Publishers may be on any thread; the worker lives on the gateway's loop.
        if event.kind == "event.recorded":
            worker.wake_threadsafe()

    unsubscribe = bus.subscribe(on_bus)

    def on_shutdown(_event: SchedulerEvent) -> None:
        unsubscribe()
        worker.stop()

    scheduler.add_listener(on_shutdown, EVENT_SCHEDULER_SHUTDOWN)
