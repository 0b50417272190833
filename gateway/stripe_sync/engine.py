"""The sync engine: usage rollups -> Stripe meter events, exactly once.

Per customer with a `stripe_customer_id`, under a lease so one instance syncs at a time:

1. Outstanding batches first (claimed earlier, not yet known to be pushed), oldest first,
   resent with their original identifier. A customer with a batch still outstanding after
   that gets no new batch: pending usage stays in the rollups, visible to the operator.
2. Claim: one write transaction reads the customer's daily rollups, subtracts what earlier
   batches took (`StripeUsageMark`), and turns each UTC day's new usage plus the carried
   remainder into at most one batch with an integer value; the remainder below one unit is
   carried on. Usage whose day is outside Stripe's 35-day window becomes an `unpushable`
   batch: reported, never sent, never silently dropped.
3. Send, then mark pushed. Before every attempt the batch is flagged as possibly received,
   so a crash between send and mark is resolved by resending the same identifier (Stripe
   answers "already exists", which counts as pushed) - but only while Stripe still
   de-duplicates it; later such a batch waits for an operator decision instead of risking
   a double bill.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import peewee as pw

from gateway.audit import SYSTEM, Actor, record
from gateway.clock import Clock, iso_ms, to_ms, utcnow
from gateway.db.database import Database, tuples
from gateway.db.models import Customer, Lease, UsageDaily
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.jsoncodec import encode
from gateway.stripe_sync.client import StripeApi, StripeFailure
from gateway.stripe_sync.errors import StripeNotConfigured, StripeSyncInProgress
from gateway.stripe_sync.models import (
    OUTSTANDING_STATES,
    StripeBatch,
    StripeCustomerState,
    StripeSyncRun,
    StripeUsageMark,
)
from gateway.stripe_sync.units import UNITS, Measure, Unit

log = logging.getLogger("ringside.stripe")

# Stripe refuses meter events older than 35 calendar days; an hour of margin keeps a batch
# claimed near the edge from being refused on its way out.
WINDOW_S = 35 * 86_400
WINDOW_MARGIN_S = 3_600
# Stripe de-duplicates identifiers for "at least 24 hours"; stop trusting that earlier.
DEDUPE_SAFE_MS = 20 * 3_600_000
LEASE_NAME = "stripe-sync"
LEASE_TTL_MS = 10 * 60_000

_MEASURE_FIELDS: dict[Measure, str] = {
    "price": "carry_price_nanos",
    "cost": "carry_cost_nanos",
    "tokens": "carry_tokens",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient Stripe failures within one run (429, 5xx, connection)."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        backoff *= 0.5 + random.random() / 2  # jitter: instances must not retry in step
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s, self.max_delay_s))
        return backoff


@dataclass(frozen=True)
class Usage:
    price: int = 0
    cost: int = 0
    tokens: int = 0

    def of(self, measure: Measure) -> int:
        return {"price": self.price, "cost": self.cost, "tokens": self.tokens}[measure]

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.price - other.price, self.cost - other.cost, self.tokens - other.tokens)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.price + other.price, self.cost + other.cost, self.tokens + other.tokens)

    @property
    def zero(self) -> bool:
        return not (self.price or self.cost or self.tokens)


@dataclass(frozen=True)
class CustomerRef:
    id: str
    external_id: str
    name: str
    email: str | None
    status: str
    stripe_customer_id: str | None


@dataclass
class _CustomerOutcome:
    customer_id: str
    external_id: str
    stripe_customer_id: str | None
    events: int = 0
    value: int = 0
    identifiers: list[str] = field(default_factory=list)


@dataclass
class _Run:
    id: str
    trigger: str
    unit: Unit
    event_name: str
    started_ms: int
    customers: dict[str, _CustomerOutcome] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    unpushable: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_customers: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    touched: bool = False

    def outcome(self, c: CustomerRef) -> _CustomerOutcome:
        if c.id not in self.customers:
            self.customers[c.id] = _CustomerOutcome(c.id, c.external_id, c.stripe_customer_id)
        return self.customers[c.id]

    def fail(
        self, c: CustomerRef, f: StripeFailure, batch: StripeBatch | None, *, retryable: bool
    ) -> None:
        self.touched = True
        self.failures.append(
            {
                "customer_id": c.id,
                "external_id": c.external_id,
                "stripe_customer_id": c.stripe_customer_id,
                "batch_id": batch.id if batch else None,
                "identifier": batch.identifier if batch else None,
                "day": batch.day if batch else None,
                "value": batch.value if batch else None,
                "code": f.code,
                "message": f.message,
                "http_status": f.http_status,
                "stripe_code": f.stripe_code,
                "retryable": retryable,
            }
        )

    def add_unpushable(self, c: CustomerRef, b: StripeBatch) -> None:
        self.touched = True
        entry = self.unpushable.setdefault(
            c.id,
            {
                "customer_id": c.id,
                "external_id": c.external_id,
                "days": 0,
                "first_day": b.day,
                "last_day": b.day,
                "value": 0,
                "base": 0,
                "batch_ids": [],
            },
        )
        entry["days"] += 1
        entry["first_day"] = min(entry["first_day"], b.day)
        entry["last_day"] = max(entry["last_day"], b.day)
        entry["value"] += b.value
        entry["base"] += Usage(b.price_nanos, b.cost_nanos, b.tokens).of(self.unit.measure)
        entry["batch_ids"].append(b.id)

    def result(self, finished_ms: int) -> dict[str, Any]:
        pushed = [o for o in self.customers.values() if o.events]
        if self.error is not None:
            status = "failed"
        elif self.failures:
            status = "partial"
        else:
            status = "succeeded"
        unpushable = []
        for entry in self.unpushable.values():
            base = entry.pop("base")
            entry["exact"] = self.unit.exact(base)
            unpushable.append(entry)
        return {
            "id": self.id,
            "object": "stripe_sync_run",
            "trigger": self.trigger,
            "status": status,
            "started_at": iso_ms(self.started_ms),
            "finished_at": iso_ms(finished_ms),
            "duration_ms": max(finished_ms - self.started_ms, 0),
            "unit": self.unit.name,
            "event_name": self.event_name,
            "customers_pushed": len(pushed),
            "events": sum(o.events for o in pushed),
            "total_value": sum(o.value for o in pushed),
            "customers": [
                {
                    "customer_id": o.customer_id,
                    "external_id": o.external_id,
                    "stripe_customer_id": o.stripe_customer_id,
                    "events": o.events,
                    "value": o.value,
                    "identifiers": o.identifiers,
                }
                for o in pushed
            ],
            "failures": self.failures,
            "skipped": self.skipped,
            "unpushable": unpushable,
            "created_stripe_customers": self.created_customers,
            "error": self.error,
        }


def day_end_s(day: str) -> int:
    """The last second of a UTC day, the timestamp of a finished day's batch."""
    d = date.fromisoformat(day)
    start = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
    return int(start.timestamp()) - 1


def identifier_for(customer_id: str, day: str, seq: int) -> str:
    return f"ringside-{customer_id}-{day}-{seq}"


class SyncEngine:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        wall_clock: Clock = utcnow,
        bus: EventBus,
        unit: str,
        event_name: str,
        api: StripeApi | None,
        create_customers: bool = False,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        store_stripe_id: Callable[[str, str], Awaitable[Any]] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock  # Stripe's windows, days, the rows' timestamps
        self.wall_clock = wall_clock  # the lease, which is about live processes
        self.bus = bus
        self.unit = UNITS[unit]
        self.event_name = event_name
        self.api = api
        self.create_customers = create_customers
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.store_stripe_id = store_stripe_id
        self.holder_prefix = f"{socket.gethostname()[:30]}:{os.getpid()}"
        # A thread lock, never waited on: callers may come from the gateway's loop or the
        # dashboard's, and a second run is refused rather than queued.
        self._local = threading.Lock()

    # ------------------------------------------------------------------ entry point
    async def run(
        self, trigger: str = "manual", *, claim_new: bool = True, actor: Actor = SYSTEM
    ) -> dict[str, Any] | None:
        """One sync run. Returns its result, or None for a recovery pass with nothing to do.

        Raises StripeSyncInProgress when another run holds the lease.
        """
        if self.api is None:
            raise StripeNotConfigured()
        if not claim_new and not await self.db.read(self._has_claimed_sync):
            return None  # the frequent recovery pass stays a single cheap read
        if not self._local.acquire(blocking=False):
            raise StripeSyncInProgress()
        try:
            run_id = new_id("srun")
            holder = f"{self.holder_prefix}:{run_id}"
            if not await self.db.write(self._acquire_lease_sync, holder):
                raise StripeSyncInProgress()
            try:
                run = _Run(run_id, trigger, self.unit, self.event_name, to_ms(self.clock()))
                await self._run(run, holder, claim_new=claim_new)
                if not claim_new and not run.touched:
                    return None
                finished = to_ms(self.clock())
                result = run.result(finished)
                await self.db.write(self._record_run_sync, result, run.started_ms, finished, actor)
            finally:
                try:
                    await self.db.write(self._release_lease_sync, holder)
                except Exception:  # the lease lapses on its own; never mask the run's outcome
                    log.warning("could not release the Stripe sync lease", exc_info=True)
        finally:
            self._local.release()
        self.bus.publish(
            "stripe.sync_finished",
            run_id=result["id"],
            status=result["status"],
            events=result["events"],
            total_value=result["total_value"],
            failures=len(result["failures"]),
        )
        log.info(
            "stripe sync %s (%s): %s, %d event(s), %d %s, %d failure(s), %d unpushable",
            result["id"],
            trigger,
            result["status"],
            result["events"],
            result["total_value"],
            self.unit.name,
            len(result["failures"]),
            len(result["unpushable"]),
        )
        return result

    async def _run(self, run: _Run, holder: str, *, claim_new: bool) -> None:
        customers, unmapped = await self.db.read(self._customers_sync, claim_new)
        for u in unmapped:
            created = await self._maybe_create_stripe_customer(run, u)
            if created is not None:
                customers.append(created)
            elif u.pending_base:
                run.skipped.append(
                    {
                        "customer_id": u.ref.id,
                        "external_id": u.ref.external_id,
                        "reason": "no_stripe_customer_id",
                        "pending_value": self.unit.split(u.pending_base)[0],
                        "pending": self.unit.exact(u.pending_base),
                    }
                )
        customers.sort(key=lambda c: c.id)
        for c in customers:
            try:
                await self._sync_customer(run, c, claim_new=claim_new)
            except Exception as exc:
                # One customer's surprise must not starve the others; its batches stay
                # claimed (and flagged if they may have been sent) for the next run.
                log.exception("Stripe sync of customer %s failed", c.id)
                failure = StripeFailure("transient", "internal_error", f"{type(exc).__name__}")
                run.fail(c, failure, None, retryable=True)
            if run.error is not None:
                break
            if not await self.db.write(self._renew_lease_sync, holder):
                # Someone took the lease over (we were too slow): stop before overlapping.
                run.error = {
                    "code": "lease_lost",
                    "message": "The sync lease expired; the run stopped early.",
                }
                break

    # ------------------------------------------------------------------ per customer
    async def _sync_customer(self, run: _Run, c: CustomerRef, *, claim_new: bool) -> None:
        outstanding = await self.db.read(self._outstanding_sync, c.id, claim_new)
        for batch in outstanding:
            if batch.state == "uncertain":
                run.fail(c, _uncertain_failure(batch), batch, retryable=False)
                return
            if not await self._deliver(run, c, batch):
                return
        if not claim_new:
            return
        try:
            batches = await self.db.write(self._claim_sync, c.id, run.id)
        except Exception as exc:
            log.exception("claiming Stripe usage for %s failed", c.id)
            run.fail(c, StripeFailure("transient", "claim_failed", str(exc)), None, retryable=True)
            return
        for batch in batches:
            if batch.state == "unpushable":
                run.add_unpushable(c, batch)
                continue
            if not await self._deliver(run, c, batch):
                return

    async def _deliver(self, run: _Run, c: CustomerRef, batch: StripeBatch) -> bool:
        """Send one batch until Stripe has it. False stops this customer for this run."""
        assert self.api is not None
        run.touched = True
        now = self.clock()
        now_s = int(now.timestamp())
        too_old = batch.timestamp < now_s - WINDOW_S + WINDOW_MARGIN_S
        if batch.uncertain_since_ms is not None and (
            too_old or to_ms(now) - batch.uncertain_since_ms > DEDUPE_SAFE_MS
        ):
            # Stripe may hold it and would no longer say so: a resend could bill twice,
            # calling it unpushable could get it billed twice by hand. Ask the operator.
            failure = _uncertain_failure(batch)
            await self.db.write(self._mark_uncertain_sync, batch.id, failure, to_ms(now))
            run.fail(c, failure, batch, retryable=False)
            return False
        if too_old:
            await self.db.write(self._mark_unpushable_sync, batch.id, to_ms(now))
            batch.state = "unpushable"
            run.add_unpushable(c, batch)
            return True
        # A batch Stripe may already hold keeps the customer it was sent for; one that
        # certainly never arrived follows the current mapping (e.g. a corrected id).
        stripe_id = (
            batch.stripe_customer_id
            if batch.uncertain_since_ms is not None and batch.stripe_customer_id
            else c.stripe_customer_id
        )
        assert stripe_id
        duplicate = False
        for attempt in range(max(self.retry.attempts, 1)):
            previous = await self.db.write(
                self._before_send_sync, batch.id, stripe_id, self.event_name, to_ms(self.clock())
            )
            try:
                await self.api.create_meter_event(
                    event_name=self.event_name,
                    stripe_customer_id=stripe_id,
                    value=batch.value,
                    identifier=batch.identifier,
                    timestamp=batch.timestamp,
                )
                break
            except StripeFailure as failure:
                if failure.kind == "duplicate":
                    duplicate = True
                    break
                certain_miss = not failure.maybe_received and previous is None
                last = attempt + 1 >= self.retry.attempts
                if failure.kind == "transient" and not last:
                    await self.db.write(
                        self._after_failure_sync, batch.id, failure, certain_miss, None
                    )
                    await self.sleep(self.retry.delay(attempt, failure.retry_after_s))
                    continue
                state = "claimed" if failure.kind == "transient" else "failed"
                await self.db.write(
                    self._after_failure_sync, batch.id, failure, certain_miss, state, c.id
                )
                run.fail(c, failure, batch, retryable=failure.kind == "transient")
                if failure.kind == "global":
                    run.error = {"code": failure.code, "message": failure.message}
                return False
        try:
            marked = await self.db.write(self._mark_pushed_sync, batch.id, duplicate, run.id)
        except Exception as exc:
            # Stripe has the event; the next run resends the same identifier and Stripe's
            # duplicate answer completes the mark.
            log.exception("marking Stripe batch %s pushed failed", batch.id)
            run.fail(
                c,
                StripeFailure("transient", "mark_failed", f"{type(exc).__name__}: {exc}"),
                batch,
                retryable=True,
            )
            return False
        if not marked:
            return True
        outcome = run.outcome(c)
        outcome.stripe_customer_id = stripe_id
        outcome.events += 1
        outcome.value += batch.value
        outcome.identifiers.append(batch.identifier)
        return True

    async def _maybe_create_stripe_customer(self, run: _Run, c: _Unmapped) -> CustomerRef | None:
        if not (self.create_customers and c.pending_base and c.ref.status != "archived"):
            return None
        try:
            stripe_id = await self.create_stripe_customer(c.ref)
        except StripeFailure as failure:
            run.fail(c.ref, failure, None, retryable=failure.kind == "transient")
            await self.db.write(self._set_customer_error_sync, c.ref.id, failure, None)
            return None
        run.created_customers.append({"customer_id": c.ref.id, "stripe_customer_id": stripe_id})
        return CustomerRef(
            c.ref.id, c.ref.external_id, c.ref.name, c.ref.email, c.ref.status, stripe_id
        )

    async def create_stripe_customer(self, c: CustomerRef) -> str:
        """Create the Stripe customer for `c` and store its id. Safe to repeat for 24 h."""
        if self.api is None:
            raise StripeNotConfigured()
        stripe_id = await self.api.create_customer(
            name=c.name,
            email=c.email,
            metadata={"ringside_customer_id": c.id, "ringside_external_id": c.external_id},
            idempotency_key=f"ringside-customer-{c.id}",
        )
        if self.store_stripe_id is not None:
            await self.store_stripe_id(c.id, stripe_id)
        else:
            await self.db.write(self._store_stripe_id_sync, c.id, stripe_id)
        return stripe_id

    # ------------------------------------------------------------------ reads
    def _customers_sync(self, claim_new: bool) -> tuple[list[CustomerRef], list[_Unmapped]]:
        fields = (
            Customer.id,
            Customer.external_id,
            Customer.name,
            Customer.email,
            Customer.status,
            Customer.stripe_customer_id,
        )
        if not claim_new:
            ids = {
                r[0]
                for r in tuples(
                    StripeBatch.select(StripeBatch.customer_id)
                    .where(StripeBatch.state == "claimed")
                    .distinct()
                )
            }
            if not ids:
                return [], []
            rows = Customer.select(*fields).where(Customer.id.in_(sorted(ids)))
            return [_ref(r) for r in rows if r.stripe_customer_id], []
        mapped = [
            _ref(r)
            for r in Customer.select(*fields).where(
                Customer.stripe_customer_id.is_null(False), Customer.stripe_customer_id != ""
            )
        ]
        pending = pending_by_customer(self.unit.measure)
        mapped_ids = {c.id for c in mapped}
        unmapped_ids = sorted(
            cid for cid, base in pending.items() if cid not in mapped_ids and base
        )
        unmapped = [
            _Unmapped(_ref(r), pending.get(r.id, 0))
            for r in Customer.select(*fields).where(Customer.id.in_(unmapped_ids))
        ]
        return mapped, unmapped

    def _has_claimed_sync(self) -> bool:
        return bool(StripeBatch.select().where(StripeBatch.state == "claimed").exists())

    def _outstanding_sync(self, customer_id: str, include_failed: bool) -> list[StripeBatch]:
        states = OUTSTANDING_STATES if include_failed else ("claimed",)
        return list(
            StripeBatch.select()
            .where(StripeBatch.customer_id == customer_id, StripeBatch.state.in_(states))
            .order_by(StripeBatch.day, StripeBatch.seq)
        )

    # ------------------------------------------------------------------ claim
    def _claim_sync(self, customer_id: str, run_id: str) -> list[StripeBatch]:
        now = self.clock()
        now_ms = to_ms(now)
        now_s = int(now.timestamp())
        unit = self.unit
        carry_field = _MEASURE_FIELDS[unit.measure]
        created: list[StripeBatch] = []
        with self.db.tx():
            state = self._state_row(customer_id, now_ms, lock=True)
            # Re-checked under the customer's lock: a claim never runs beside unsent batches.
            if (
                StripeBatch.select()
                .where(
                    StripeBatch.customer_id == customer_id,
                    StripeBatch.state.in_(OUTSTANDING_STATES),
                )
                .exists()
            ):
                return []
            rollups = rollups_by_day(customer_id)
            marks = {
                m.day: m
                for m in StripeUsageMark.select().where(StripeUsageMark.customer_id == customer_id)
            }
            carry = getattr(state, carry_field)
            for day in sorted(rollups):
                mark = marks.get(day)
                taken = Usage(mark.price_nanos, mark.cost_nanos, mark.tokens) if mark else Usage()
                delta = rollups[day] - taken
                if delta.zero:
                    continue
                seq = mark.next_seq if mark else 1
                base = delta.of(unit.measure)
                ts = min(now_s, day_end_s(day))
                if ts < now_s - WINDOW_S + WINDOW_MARGIN_S:
                    batch = self._new_batch(
                        customer_id,
                        day,
                        seq,
                        unit.split(base)[0] if base > 0 else 0,
                        ts,
                        delta,
                        0,
                        0,
                        "unpushable",
                        run_id,
                        now_ms,
                    )
                    created.append(batch)
                    seq += 1
                else:
                    value, new_carry = unit.split(carry + base)
                    if value > 0:
                        batch = self._new_batch(
                            customer_id,
                            day,
                            seq,
                            value,
                            ts,
                            delta,
                            carry,
                            new_carry,
                            "claimed",
                            run_id,
                            now_ms,
                        )
                        created.append(batch)
                        seq += 1
                    carry = new_carry
                # Marks hold the totals read above (not "current"), so usage settled while
                # this runs stays pending for the next batch instead of being skipped.
                total = rollups[day]
                StripeUsageMark.insert(
                    customer_id=customer_id,
                    day=day,
                    price_nanos=total.price,
                    cost_nanos=total.cost,
                    tokens=total.tokens,
                    next_seq=seq,
                    updated_ms=now_ms,
                ).on_conflict(
                    conflict_target=[StripeUsageMark.customer_id, StripeUsageMark.day],
                    update={
                        StripeUsageMark.price_nanos: total.price,
                        StripeUsageMark.cost_nanos: total.cost,
                        StripeUsageMark.tokens: total.tokens,
                        StripeUsageMark.next_seq: seq,
                        StripeUsageMark.updated_ms: now_ms,
                    },
                ).execute()
            StripeCustomerState.update(
                {getattr(StripeCustomerState, carry_field): carry, "updated_ms": now_ms}
            ).where(StripeCustomerState.customer_id == customer_id).execute()
        return created

    def _new_batch(
        self,
        customer_id: str,
        day: str,
        seq: int,
        value: int,
        ts: int,
        delta: Usage,
        carry_in: int,
        carry_out: int,
        state: str,
        run_id: str,
        now_ms: int,
    ) -> StripeBatch:
        return StripeBatch.create(
            id=new_id("sbat"),
            customer_id=customer_id,
            day=day,
            seq=seq,
            identifier=identifier_for(customer_id, day, seq),
            event_name=self.event_name,
            unit=self.unit.name,
            value=value,
            timestamp=ts,
            price_nanos=delta.price,
            cost_nanos=delta.cost,
            tokens=delta.tokens,
            carry_in=carry_in,
            carry_out=carry_out,
            state=state,
            run_id=run_id,
            created_ms=now_ms,
        )

    def _state_row(self, customer_id: str, now_ms: int, *, lock: bool) -> StripeCustomerState:
        StripeCustomerState.insert(
            customer_id=customer_id, updated_ms=now_ms
        ).on_conflict_ignore().execute()
        q = StripeCustomerState.select().where(StripeCustomerState.customer_id == customer_id)
        if lock and not self.db.is_sqlite:
            q = q.for_update()
        return q.get()

    # ------------------------------------------------------------------ batch transitions
    def _before_send_sync(
        self, batch_id: str, stripe_id: str, event_name: str, now_ms: int
    ) -> int | None:
        """Flag the batch as possibly received before the request leaves; returns the flag
        as it was, so a certain miss can put it back."""
        with self.db.tx():
            batch = StripeBatch.get_by_id(batch_id)
            previous = batch.uncertain_since_ms
            StripeBatch.update(
                attempts=StripeBatch.attempts + 1,
                last_attempt_ms=now_ms,
                stripe_customer_id=stripe_id,
                event_name=event_name,
                uncertain_since_ms=previous if previous is not None else now_ms,
            ).where(StripeBatch.id == batch_id).execute()
        return previous

    def _after_failure_sync(
        self,
        batch_id: str,
        failure: StripeFailure,
        certain_miss: bool,
        state: str | None,
        customer_id: str | None = None,
    ) -> None:
        now_ms = to_ms(self.clock())
        with self.db.tx():
            changes: dict[Any, Any] = {
                StripeBatch.last_error_code: failure.code,
                StripeBatch.last_error_message: failure.message[:2000],
            }
            if certain_miss:
                changes[StripeBatch.uncertain_since_ms] = None
            if state is not None:
                changes[StripeBatch.state] = state
            StripeBatch.update(changes).where(StripeBatch.id == batch_id).execute()
            if customer_id is not None:
                self._set_error(customer_id, failure, batch_id, now_ms)

    def _mark_pushed_sync(self, batch_id: str, duplicate: bool, run_id: str) -> bool:
        """Mark the batch pushed; False if another run already had (it is counted there)."""
        now_ms = to_ms(self.clock())
        with self.db.tx():
            batch = StripeBatch.get_by_id(batch_id)
            changed = (
                StripeBatch.update(
                    state="pushed",
                    duplicate=duplicate,
                    pushed_ms=now_ms,
                    pushed_run_id=run_id,
                    last_error_code=None,
                    last_error_message=None,
                )
                .where(StripeBatch.id == batch_id, StripeBatch.state.in_(OUTSTANDING_STATES))
                .execute()
            )
            if not changed:
                return False
            self._state_row(batch.customer_id, now_ms, lock=True)
            S = StripeCustomerState
            S.update(
                last_pushed_day=pw.Case(
                    None,
                    [((S.last_pushed_day.is_null()) | (S.last_pushed_day < batch.day), batch.day)],
                    S.last_pushed_day,
                ),
                last_pushed_ms=now_ms,
                last_error_code=None,
                last_error_message=None,
                last_error_ms=None,
                last_error_batch_id=None,
                updated_ms=now_ms,
            ).where(S.customer_id == batch.customer_id).execute()
        return True

    def _mark_unpushable_sync(self, batch_id: str, now_ms: int) -> None:
        with self.db.tx():
            StripeBatch.update(
                state="unpushable",
                last_error_code="stripe_window_passed",
                last_error_message="The usage is older than Stripe's 35-day window.",
            ).where(StripeBatch.id == batch_id).execute()

    def _mark_uncertain_sync(self, batch_id: str, failure: StripeFailure, now_ms: int) -> None:
        with self.db.tx():
            batch = StripeBatch.get_by_id(batch_id)
            StripeBatch.update(
                state="uncertain",
                last_error_code=failure.code,
                last_error_message=failure.message,
            ).where(StripeBatch.id == batch_id).execute()
            self._set_error(batch.customer_id, failure, batch_id, now_ms)

    def _set_customer_error_sync(
        self, customer_id: str, failure: StripeFailure, batch_id: str | None
    ) -> None:
        with self.db.tx():
            self._set_error(customer_id, failure, batch_id, to_ms(self.clock()))

    def _set_error(
        self, customer_id: str, failure: StripeFailure, batch_id: str | None, now_ms: int
    ) -> None:
        self._state_row(customer_id, now_ms, lock=False)
        StripeCustomerState.update(
            last_error_code=failure.code,
            last_error_message=failure.message[:2000],
            last_error_ms=now_ms,
            last_error_batch_id=batch_id,
            updated_ms=now_ms,
        ).where(StripeCustomerState.customer_id == customer_id).execute()

    def _store_stripe_id_sync(self, customer_id: str, stripe_id: str) -> None:
        with self.db.tx():
            Customer.update(stripe_customer_id=stripe_id, updated_ms=to_ms(self.clock())).where(
                Customer.id == customer_id,
                Customer.stripe_customer_id.is_null() | (Customer.stripe_customer_id == ""),
            ).execute()

    def _record_run_sync(
        self, result: dict[str, Any], started_ms: int, finished_ms: int, actor: Actor
    ) -> None:
        with self.db.tx():
            record(
                actor,
                "stripe.sync",
                finished_ms,
                target_id=result["id"],
                changes={
                    "status": [None, result["status"]],
                    "events": [None, result["events"]],
                    "customers_pushed": [None, result["customers_pushed"]],
                },
            )
            StripeSyncRun.create(
                id=result["id"],
                trigger=result["trigger"],
                status=result["status"],
                unit=result["unit"],
                event_name=result["event_name"],
                customers_pushed=result["customers_pushed"],
                events=result["events"],
                total_value=result["total_value"],
                failures=len(result["failures"]),
                error_code=(result["error"] or {}).get("code"),
                result=encode(result).decode(),
                started_ms=started_ms,
                finished_ms=finished_ms,
            )

    # ------------------------------------------------------------------ lease
    # The wall clock, not the business clock: the lease is about live processes.
    def _acquire_lease_sync(self, holder: str) -> bool:
        now = to_ms(self.wall_clock())
        with self.db.tx():
            taken = (
                Lease.update(holder=holder, expires_ms=now + LEASE_TTL_MS)
                .where(Lease.name == LEASE_NAME, Lease.expires_ms < now)
                .execute()
            )
            if taken:
                return True
            inserted = (
                Lease.insert(name=LEASE_NAME, holder=holder, expires_ms=now + LEASE_TTL_MS)
                .on_conflict_ignore()
                .execute()
            )
            if not inserted:
                return False
            # Inserted rows report their rowid/None; confirm the row is ours.
            row = Lease.get_or_none(Lease.name == LEASE_NAME)
            return row is not None and row.holder == holder

    def _renew_lease_sync(self, holder: str) -> bool:
        now = to_ms(self.wall_clock())
        with self.db.tx():
            return (
                Lease.update(expires_ms=now + LEASE_TTL_MS)
                .where(Lease.name == LEASE_NAME, Lease.holder == holder)
                .execute()
                == 1
            )

    def _release_lease_sync(self, holder: str) -> None:
        with self.db.tx():
            Lease.delete().where(Lease.name == LEASE_NAME, Lease.holder == holder).execute()


@dataclass(frozen=True)
class _Unmapped:
    ref: CustomerRef
    pending_base: int


def _ref(r: Customer) -> CustomerRef:
    return CustomerRef(r.id, r.external_id, r.name, r.email, r.status, r.stripe_customer_id or None)


def _uncertain_failure(batch: StripeBatch) -> StripeFailure:
    return StripeFailure(
        "permanent",
        "stripe_outcome_unknown",
        f"Batch {batch.id} (identifier {batch.identifier}) may have reached Stripe, which "
        "would no longer refuse a resend as a duplicate; check the meter's events in Stripe, "
        "then resolve the batch as pushed or resend.",
    )


# ---------------------------------------------------------------------- shared reads


def rollups_by_day(customer_id: str) -> dict[str, Usage]:
    U = UsageDaily
    rows = tuples(
        U.select(
            U.day,
            pw.fn.SUM(U.price_nanos),
            pw.fn.SUM(U.cost_nanos),
            pw.fn.SUM(U.input_tokens + U.output_tokens),
        )
        .where(U.customer_id == customer_id)
        .group_by(U.day)
    )
    return {day: Usage(int(p or 0), int(c or 0), int(t or 0)) for day, p, c, t in rows}


def pending_by_customer(measure: Measure) -> dict[str, int]:
    """Per customer: rollup usage in `measure` not yet taken into any batch, plus carry."""
    U = UsageDaily
    column = {
        "price": U.price_nanos,
        "cost": U.cost_nanos,
        "tokens": U.input_tokens + U.output_tokens,
    }[measure]
    totals: dict[str, int] = defaultdict(int)
    for cid, total in tuples(
        U.select(U.customer_id, pw.fn.SUM(column))
        .where(U.customer_id != "")
        .group_by(U.customer_id)
    ):
        totals[cid] += int(total or 0)
    M = StripeUsageMark
    mark_column = {"price": M.price_nanos, "cost": M.cost_nanos, "tokens": M.tokens}[measure]
    for cid, total in tuples(
        M.select(M.customer_id, pw.fn.SUM(mark_column)).group_by(M.customer_id)
    ):
        totals[cid] -= int(total or 0)
    S = StripeCustomerState
    carry_column = getattr(S, _MEASURE_FIELDS[measure])
    for cid, carry in tuples(S.select(S.customer_id, carry_column)):
        totals[cid] += int(carry or 0)
    return dict(totals)
