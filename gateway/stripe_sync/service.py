"""The Stripe sync as a service: what the HTTP API, the scheduler and the dashboard call."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import peewee as pw

from gateway.audit import SYSTEM, Actor, record
from gateway.clock import Clock, iso_ms, to_ms, utcnow
from gateway.config import StripeSettings
from gateway.db.database import Database, tuples
from gateway.db.models import Customer, UsageDaily
from gateway.errors import InvalidRequest
from gateway.events import EventBus
from gateway.jsoncodec import decode
from gateway.services.pagination import Page, cut
from gateway.stripe_sync.client import StripeApi, StripeFailure
from gateway.stripe_sync.engine import (
    WINDOW_MARGIN_S,
    WINDOW_S,
    CustomerRef,
    RetryPolicy,
    SyncEngine,
    Usage,
    day_end_s,
)
from gateway.stripe_sync.errors import (
    StripeBatchNotFound,
    StripeBatchNotResolvable,
    StripeNotConfigured,
    StripeSyncInProgress,
    StripeSyncRunNotFound,
)
from gateway.stripe_sync.models import (
    BATCH_STATES,
    OUTSTANDING_STATES,
    StripeBatch,
    StripeCustomerState,
    StripeSyncRun,
    StripeUsageMark,
)
from gateway.stripe_sync.units import Unit
from gateway.tasks import BackgroundTasks

log = logging.getLogger("ringside.stripe")

RESOLUTIONS = ("pushed", "resend")


class StripeSyncService:
    def __init__(
        self,
        settings: StripeSettings,
        *,
        db: Database,
        clock: Clock,
        wall_clock: Clock = utcnow,
        bus: EventBus,
        tasks: BackgroundTasks,
        resolve_customer: Callable[[str], Customer],
        store_stripe_id: Callable[[str, str], Awaitable[Any]],
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self._resolve_customer = resolve_customer
        self._store_stripe_id_fn = store_stripe_id
        # The gateway's tasks that shutdown waits for.
        self.background = tasks
        self.creating: set[asyncio.Task[Any]] = set()  # Stripe customers being created
        self.api = StripeApi(settings.api_key, settings.api_base) if settings.api_key else None
        self.engine = SyncEngine(
            db=db,
            clock=clock,
            wall_clock=wall_clock,
            bus=bus,
            unit=settings.value,
            event_name=settings.meter_event_name,
            api=self.api,
            create_customers=settings.create_customers,
            retry=retry,
            store_stripe_id=self._store_stripe_id,
        )

    @property
    def configured(self) -> bool:
        return self.api is not None

    @property
    def unit(self) -> Unit:
        return self.engine.unit

    # ------------------------------------------------------------------ running
    async def sync_now(self, trigger: str = "manual", actor: Actor = SYSTEM) -> dict[str, Any]:
        """Run a sync now and answer its result. Raises StripeSyncInProgress when busy."""
        result = await self.engine.run(trigger, actor=actor)
        assert result is not None
        return result

    async def run_scheduled(self) -> None:
        try:
            await self.engine.run("schedule")
        except StripeSyncInProgress:
            log.info("scheduled Stripe sync skipped: another run holds the lease")
        except StripeNotConfigured:
            pass
        except Exception:
            log.exception("scheduled Stripe sync failed")

    async def run_recovery(self) -> None:
        """Resend claimed batches soon after a crash or an outage, while Stripe still
        de-duplicates their identifiers, instead of waiting for the nightly run."""
        try:
            await self.engine.run("recovery", claim_new=False)
        except (StripeSyncInProgress, StripeNotConfigured):
            pass
        except Exception:
            log.exception("Stripe sync recovery failed")

    async def on_customer_created(self, customer: dict[str, Any]) -> None:
        """customers.on_created hook: create the Stripe customer when configured to.

        Runs in the background so creating a customer never waits on (or fails with)
        Stripe; a failure is recorded on the customer and the next sync tries again.
        """
        if not self.configured or customer.get("stripe_customer_id"):
            return
        ref = CustomerRef(
            customer["id"],
            customer["external_id"],
            customer["name"],
            customer.get("email"),
            customer.get("status", "active"),
            None,
        )
        task = self.background.spawn(self._create_stripe_customer(ref))
        self.creating.add(task)
        task.add_done_callback(self.creating.discard)

    async def _create_stripe_customer(self, ref: CustomerRef) -> None:
        try:
            await self.engine.create_stripe_customer(ref)
        except StripeFailure as failure:
            log.warning("creating the Stripe customer for %s failed: %s", ref.id, failure)
            await self.db.write(self.engine._set_customer_error_sync, ref.id, failure, None)
        except Exception:
            log.exception("creating the Stripe customer for %s failed", ref.id)

    async def _store_stripe_id(self, customer_id: str, stripe_id: str) -> None:
        await self._store_stripe_id_fn(customer_id, stripe_id)

    async def aclose(self) -> None:
        if self.api is not None:
            await self.api.aclose()

    # ------------------------------------------------------------------ history
    async def runs(
        self, limit: int = 20, starting_after: str | None = None
    ) -> list[dict[str, Any]]:
        """Sync runs, newest first."""
        return await self.db.read(self._runs_sync, limit, starting_after)

    async def runs_page(
        self, limit: int = 20, starting_after: str | None = None
    ) -> Page[dict[str, Any]]:
        return cut(await self.runs(limit + 1, starting_after), limit)

    async def customer_states_page(
        self, limit: int = 20, starting_after: str | None = None
    ) -> Page[dict[str, Any]]:
        return cut(await self.customer_states(limit + 1, starting_after), limit)

    async def batches_page(
        self,
        *,
        customer_id: str | None = None,
        state: str | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> Page[dict[str, Any]]:
        rows = await self.batches(
            customer_id=customer_id, state=state, limit=limit + 1, starting_after=starting_after
        )
        return cut(rows, limit)

    async def sync_run(self, run_id: str) -> dict[str, Any]:
        return await self.db.read(self._run_sync, run_id)

    def _runs_sync(self, limit: int, starting_after: str | None) -> list[dict[str, Any]]:
        R = StripeSyncRun
        q = R.select()
        if starting_after:
            after = R.get_or_none(R.id == starting_after)
            if after is None:
                raise InvalidRequest(
                    f"starting_after '{starting_after}' is not a sync run id.",
                    param="starting_after",
                )
            q = q.where(
                (R.started_ms < after.started_ms)
                | ((R.started_ms == after.started_ms) & (R.id < after.id))
            )
        rows = q.order_by(R.started_ms.desc(), R.id.desc()).limit(limit)
        return [decode(r.result.encode()) for r in rows]

    def _run_sync(self, run_id: str) -> dict[str, Any]:
        row = StripeSyncRun.get_or_none(StripeSyncRun.id == run_id)
        if row is None:
            raise StripeSyncRunNotFound(f"No Stripe sync run '{run_id}'.")
        return decode(row.result.encode())

    # ------------------------------------------------------------------ per-customer state
    async def customer_states(
        self, limit: int | None = None, starting_after: str | None = None
    ) -> list[dict[str, Any]]:
        """Per customer (newest first): last pushed period, pending amount, last error."""
        return await self.db.read(self._states_page_sync, limit, starting_after)

    async def customer_state(self, ref: str) -> dict[str, Any]:
        return await self.db.read(self._state_one_sync, ref)

    def _states_page_sync(
        self, limit: int | None, starting_after: str | None
    ) -> list[dict[str, Any]]:
        q = Customer.select()
        if starting_after:
            if Customer.get_or_none(Customer.id == starting_after) is None:
                raise InvalidRequest(
                    f"starting_after '{starting_after}' is not a customer id.",
                    param="starting_after",
                )
            q = q.where(Customer.id < starting_after)
        q = q.order_by(Customer.id.desc())
        if limit is not None:
            q = q.limit(limit)
        return self._states_sync(list(q))

    def _state_one_sync(self, ref: str) -> dict[str, Any]:
        return self._states_sync([self._resolve_customer(ref)])[0]

    def _states_sync(self, customers: list[Customer]) -> list[dict[str, Any]]:
        if not customers:
            return []
        unit = self.unit
        ids = [c.id for c in customers]
        now_s = int(self.clock().timestamp())
        oldest_pushable = now_s - WINDOW_S + WINDOW_MARGIN_S
        states = {
            s.customer_id: s
            for s in StripeCustomerState.select().where(StripeCustomerState.customer_id.in_(ids))
        }
        rollups: dict[tuple[str, str], Usage] = {}
        U = UsageDaily
        for cid, day, p, c, t in tuples(
            U.select(
                U.customer_id,
                U.day,
                pw.fn.SUM(U.price_nanos),
                pw.fn.SUM(U.cost_nanos),
                pw.fn.SUM(U.input_tokens + U.output_tokens),
            )
            .where(U.customer_id.in_(ids))
            .group_by(U.customer_id, U.day)
        ):
            rollups[(cid, day)] = Usage(int(p or 0), int(c or 0), int(t or 0))
        M = StripeUsageMark
        marks = {
            (m.customer_id, m.day): Usage(m.price_nanos, m.cost_nanos, m.tokens)
            for m in M.select().where(M.customer_id.in_(ids))
        }
        new_base: dict[str, int] = defaultdict(int)
        old_base: dict[str, int] = defaultdict(int)
        for (cid, day), total in rollups.items():
            delta = (total - marks.get((cid, day), Usage())).of(unit.measure)
            if day_end_s(day) < oldest_pushable:
                old_base[cid] += delta
            else:
                new_base[cid] += delta
        B = StripeBatch
        agg: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for cid, state, batch_unit, n, total in tuples(
            B.select(B.customer_id, B.state, B.unit, pw.fn.COUNT(B.id), pw.fn.SUM(B.value))
            .where(B.customer_id.in_(ids))
            .group_by(B.customer_id, B.state, B.unit)
        ):
            a = agg[cid]
            if state in OUTSTANDING_STATES:
                a["outstanding"] += int(n)
                a["outstanding_value"] += int(total or 0)
                if state == "uncertain":
                    a["uncertain"] += int(n)
            elif batch_unit == unit.name and state == "pushed":
                a["pushed_events"] += int(n)
                a["pushed_value"] += int(total or 0)
            elif batch_unit == unit.name and state == "unpushable":
                a["unpushable_value"] += int(total or 0)
        out = []
        for c in customers:
            st = states.get(c.id)
            a = agg[c.id]
            carry = int(getattr(st, _carry_field(unit), 0) or 0) if st else 0
            fresh = carry + new_base[c.id]
            pending_value = a["outstanding_value"] + unit.split(fresh)[0]
            error = None
            if st is not None and st.last_error_code:
                error = {
                    "code": st.last_error_code,
                    "message": st.last_error_message,
                    "at": iso_ms(st.last_error_ms),
                    "batch_id": st.last_error_batch_id,
                }
            if not c.stripe_customer_id:
                status = "unmapped"
            elif a["uncertain"]:
                status = "action_required"
            elif error is not None:
                status = "error"
            elif pending_value > 0 or a["outstanding"]:
                status = "pending"
            else:
                status = "synced"
            out.append(
                {
                    "object": "stripe_customer_state",
                    "customer_id": c.id,
                    "external_id": c.external_id,
                    "name": c.name,
                    "customer_status": c.status,
                    "stripe_customer_id": c.stripe_customer_id or None,
                    "status": status,
                    "unit": unit.name,
                    "last_pushed_day": st.last_pushed_day if st else None,
                    "last_pushed_at": iso_ms(st.last_pushed_ms) if st else None,
                    "pushed_events": a["pushed_events"],
                    "pushed_value": a["pushed_value"],
                    "pending_value": pending_value,
                    "pending": unit.exact(a["outstanding_value"] * unit.divisor + fresh),
                    "carry": unit.exact(carry),
                    "outstanding_batches": a["outstanding"],
                    "unpushable_value": a["unpushable_value"] + unit.split(old_base[c.id])[0],
                    "last_error": error,
                }
            )
        return out

    # ------------------------------------------------------------------ batches
    async def batches(
        self,
        *,
        customer_id: str | None = None,
        state: str | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self.db.read(self._batches_sync, customer_id, state, limit, starting_after)

    def _batches_sync(
        self, customer_ref: str | None, state: str | None, limit: int, starting_after: str | None
    ) -> list[dict[str, Any]]:
        B = StripeBatch
        q = B.select()
        if customer_ref:
            q = q.where(B.customer_id == self._resolve_customer(customer_ref).id)
        if state:
            if state not in BATCH_STATES:
                raise InvalidRequest(
                    f"state must be one of {', '.join(BATCH_STATES)}.", param="state"
                )
            q = q.where(B.state == state)
        if starting_after:
            q = q.where(B.id < starting_after)
        return [batch_to_api(b) for b in q.order_by(B.id.desc()).limit(limit)]

    async def resolve_batch(
        self, batch_id: str, body: Any, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """An operator's decision on a failed or uncertain batch: `pushed` (Stripe has it, or
        it was billed another way) or `resend` (Stripe certainly does not have it)."""
        return await self.db.write(self._resolve_sync, batch_id, body, actor)

    def _resolve_sync(self, batch_id: str, body: Any, actor: Actor) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("outcome") not in RESOLUTIONS:
            raise InvalidRequest('outcome must be "pushed" or "resend".', param="outcome")
        unknown = sorted(set(body) - {"outcome"})
        if unknown:
            raise InvalidRequest(f"Unknown parameter: {unknown[0]}.", param=unknown[0])
        now_ms = to_ms(self.clock())
        with self.db.tx():
            batch = StripeBatch.get_or_none(StripeBatch.id == batch_id)
            if batch is None:
                raise StripeBatchNotFound(f"No Stripe batch '{batch_id}'.")
            if batch.state not in ("failed", "uncertain"):
                raise StripeBatchNotResolvable(
                    f"Batch {batch_id} is {batch.state}; only failed or uncertain batches "
                    "can be resolved."
                )
            if body["outcome"] == "pushed":
                StripeBatch.update(state="pushed", pushed_ms=now_ms, resolved_by="operator").where(
                    StripeBatch.id == batch_id
                ).execute()
            else:
                StripeBatch.update(
                    state="claimed", uncertain_since_ms=None, resolved_by="operator"
                ).where(StripeBatch.id == batch_id).execute()
            StripeCustomerState.update(
                last_error_code=None,
                last_error_message=None,
                last_error_ms=None,
                last_error_batch_id=None,
                updated_ms=now_ms,
            ).where(
                StripeCustomerState.customer_id == batch.customer_id,
                StripeCustomerState.last_error_batch_id == batch_id,
            ).execute()
            after = StripeBatch.get_by_id(batch_id)
            record(
                actor,
                "stripe.batch_resolved",
                now_ms,
                target_id=batch_id,
                customer_id=batch.customer_id,
                changes={"state": [batch.state, after.state], "outcome": [None, body["outcome"]]},
            )
            return batch_to_api(after)


def _carry_field(unit: Unit) -> str:
    return {"price": "carry_price_nanos", "cost": "carry_cost_nanos", "tokens": "carry_tokens"}[
        unit.measure
    ]


def batch_to_api(b: StripeBatch) -> dict[str, Any]:
    return {
        "id": b.id,
        "object": "stripe_batch",
        "customer_id": b.customer_id,
        "stripe_customer_id": b.stripe_customer_id,
        "day": b.day,
        "identifier": b.identifier,
        "event_name": b.event_name,
        "unit": b.unit,
        "value": b.value,
        "timestamp": b.timestamp,
        "state": b.state,
        "attempts": b.attempts,
        "duplicate": bool(b.duplicate),
        "last_error": (
            {"code": b.last_error_code, "message": b.last_error_message}
            if b.last_error_code
            else None
        ),
        "created_at": iso_ms(b.created_ms),
        "pushed_at": iso_ms(b.pushed_ms),
        "resolved_by": b.resolved_by,
    }
