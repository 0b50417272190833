"""`/metrics` and `/readyz`: what the gateway reports about itself to operators' tools.

The counters and histograms are kept as calls happen (`gateway.metrics`); at scrape time
this service reads the durable state the gauges describe (the webhook outbox, the Stripe
sync, the settlement spool) with a handful of indexed queries on a reader thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import peewee as pw
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.clock import Clock, to_ms
from gateway.db.database import Database, tuples
from gateway.db.migrate import discover
from gateway.db.models import SchemaMigration, WebhookDelivery, WebhookEndpoint
from gateway.ledger import Ledger
from gateway.metrics import Metrics
from gateway.stripe_sync.models import StripeBatch, StripeSyncRun

EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST
# More settlements than this waiting in the spool: the database is not keeping up.
READY_MAX_SPOOLED = 100
# A write that cannot start within this is a locked database: not ready.
WRITE_PROBE_S = 2.0


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str | None = None


class MetricsService:
    def __init__(self, metrics: Metrics, db: Database, ledger: Ledger, clock: Clock) -> None:
        self.metrics = metrics
        self._db = db
        self._ledger = ledger
        self._clock = clock  # the wall clock: ages of pending deliveries

    async def exposition(self) -> bytes:
        await self._db.read(self._refresh_sync)
        self.metrics.spooled.set(await asyncio.to_thread(self._ledger.spool.pending))
        return generate_latest(self.metrics.registry)

    def _refresh_sync(self) -> None:
        m, now_ms = self.metrics, to_ms(self._clock())
        D = WebhookDelivery
        states = dict(tuples(D.select(D.status, pw.fn.COUNT(D.id)).group_by(D.status)))
        for state in ("pending", "delivered", "failed"):
            m.deliveries.labels(state).set(int(states.get(state, 0)))
        m.outbox_pending.set(int(states.get("pending", 0)))
        oldest = D.select(pw.fn.MIN(D.created_ms)).where(D.status == "pending").scalar()
        m.outbox_oldest.set(max(0, now_ms - int(oldest)) / 1000 if oldest else 0)
        E = WebhookEndpoint
        m.endpoints_disabled.set(
            E.select().where(E.enabled == False, E.deleted_ms.is_null()).count()  # noqa: E712
        )
        R = StripeSyncRun
        last = R.select(pw.fn.MAX(R.finished_ms)).where(R.status == "succeeded").scalar()
        m.stripe_last_sync.set(int(last) / 1000 if last else 0)
        B = StripeBatch
        batches = dict(tuples(B.select(B.state, pw.fn.COUNT(B.id)).group_by(B.state)))
        for state in ("claimed", "pushed", "failed", "uncertain", "unpushable"):
            m.stripe_batches.labels(state).set(int(batches.get(state, 0)))
        unpushable = B.select(pw.fn.SUM(B.price_nanos)).where(B.state == "unpushable").scalar()
        m.stripe_unpushable_usd.set(int(unpushable or 0) / 1_000_000_000)

    async def readiness(self) -> Readiness:
        """Ready: the database answers, its schema is current, and the spool is not growing."""
        try:
            applied = await self._db.read(_applied_version)
            # Reads pass beside a held write lock (WAL): probe a write, as a call would.
            await asyncio.wait_for(self._db.write(_write_probe, self._db), WRITE_PROBE_S)
        except TimeoutError:
            return Readiness(False, "database locked: writes are waiting")
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return Readiness(False, f"database unavailable: {detail}")
        latest = max((v for v, _, _ in discover()), default=0)
        if applied < latest:
            return Readiness(False, f"migrations not current ({applied} < {latest})")
        pending = await asyncio.to_thread(self._ledger.spool.pending)
        if pending > READY_MAX_SPOOLED:
            return Readiness(False, f"{pending} settlements spooled, waiting for the database")
        return Readiness(True)


def _write_probe(db: Database) -> None:
    with db.tx():  # BEGIN IMMEDIATE on SQLite: takes the write lock, writes nothing
        pass


def _applied_version() -> int:
    found = SchemaMigration.select(pw.fn.MAX(SchemaMigration.version)).scalar()
    return int(found or 0)
