"""The ledger: every money movement in Ringside goes through this one narrow entry object.

Two-phase, like TigerBeetle's pending transfers:
  reserve()  one write transaction: resolve the customer, take a hold for the call's
             worst-case cost (budget) and price (wallet) with guarded UPDATEs.
  settle()   one write transaction: close the hold, add the real cost to the month,
             debit the wallet at the real price, log the request, roll up usage,
             record threshold crossings.
Holds carry an expiry that in-flight calls renew; the sweeper releases lapsed ones.

`Ledger` wires the parts and runs them off the event loop; each part has one job:
`reserve.py`, `settle.py`, `crossings.py` (threshold events and their flags),
`wallets.py`, `expiry.py` (hold renewal and sweeping), `accounts.py` (the rows money is
held against), `refusals.py` (the 402s), `events.py` (recording events for the outbox).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from gateway.clock import Clock, month_of, to_ms, utcnow
from gateway.config import Settings
from gateway.db.database import UNAVAILABLE_ERRORS, Database
from gateway.db.models import Customer, WalletTransaction
from gateway.errors import ApiError, LedgerUnavailable
from gateway.events import EventBus
from gateway.ledger.accounts import Accounts
from gateway.ledger.crossings import Crossings
from gateway.ledger.events import EventOutbox, EventRecorder, Payloads
from gateway.ledger.expiry import HoldExpiry
from gateway.ledger.reserve import Reserver
from gateway.ledger.settle import Settler
from gateway.ledger.spool import SettlementSpool, SettleRecord
from gateway.ledger.sql import HotSql
from gateway.ledger.types import CallEstimate, Outcome, Reservation, Settlement, WalletView
from gateway.ledger.wallets import Wallets
from gateway.limits import Limiter, Subject
from gateway.limits.limiter import Usage
from gateway.terms import Terms

log = logging.getLogger("ringside.ledger")

T = TypeVar("T")


class Ledger:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        bus: EventBus | None = None,
        clock: Clock = utcnow,
        *,
        outbox: EventOutbox,
    ) -> None:
        """`outbox` receives every event the ledger records, inside the money transaction
        (the webhooks package's `Outbox`, which queues the deliveries)."""
        self.db = db
        self.bus = bus or EventBus()
        self.clock = clock
        self.hold_ttl_ms = int(settings.billing.hold_ttl_s * 1000)
        self.spool = SettlementSpool(settings.server.data_dir / settings.server.spool_name)
        sql = HotSql(db)
        self.accounts = Accounts(sql)
        recorder = EventRecorder(outbox)
        self.crossings = Crossings(
            sql, self.accounts, recorder, settings.billing.budget_warning_share
        )
        self.limiter = Limiter(db)
        self.reserver = Reserver(
            db,
            sql,
            self.accounts,
            self.crossings,
            self.limiter,
            recorder,
            clock,
            hold_ttl_ms=self.hold_ttl_ms,
            min_output_tokens=settings.billing.min_output_tokens,
        )
        self.settler = Settler(db, sql, self.crossings, self.limiter, self.spool, self.bus, clock)
        self.expiry = HoldExpiry(db, self.limiter, self.bus, clock, hold_ttl_ms=self.hold_ttl_ms)
        self.wallets = Wallets(db, self.accounts, recorder, clock)

    # ------------------------------------------------------------------ customers
    def resolve_customer(self, ref: str) -> Customer:
        """By `cus_` id or by external id. Raises CustomerNotFound."""
        return self.accounts.customer(ref)

    def customer_on_terms(self, ref: str) -> tuple[Customer, Terms]:
        """The customer (carrying its effective money terms, never to be saved) and its
        effective terms. Raises CustomerNotFound."""
        return self.accounts.customer_on_terms(ref)

    def rate_usage_sync(self, subject_id: str) -> Usage:
        """A rate-limit subject's current minute (requests, tokens, calls in flight)."""
        return self.limiter.usage(subject_id, to_ms(self.clock()))

    # ------------------------------------------------------------------ reserve / settle
    async def reserve(
        self, customer_ref: str | None, estimate: CallEstimate, key: Subject | None = None
    ) -> Reservation:
        """Hold the call's worst case; raises the ApiError refusing it (402, 403, 429).
        `key` is the calling app key, with its own rate limits."""
        result, events = await self._guarded(self.reserve_sync, customer_ref, estimate, key)
        self._publish(events)
        if isinstance(result, ApiError):
            if result.status in (402, 403, 429):
                self.bus.publish(
                    "request.refused",
                    customer_id=result.extra.get("customer_id"),
                    code=result.code,
                    model=f"{estimate.provider}/{estimate.model}",
                )
            raise result
        return result

    def reserve_sync(
        self, customer_ref: str | None, estimate: CallEstimate, key: Subject | None = None
    ) -> tuple[Reservation | ApiError, Payloads]:
        """In the writer thread: the reservation, or the error refusing the call."""
        return self.reserver.reserve_sync(customer_ref, estimate, key)

    async def settle(self, reservation: Reservation, outcome: Outcome) -> Settlement:
        """Record the real amount and release the rest. Called exactly once per reservation;
        never loses the charge (retries, then the spool)."""
        return await self.settler.settle(reservation, outcome)

    def settle_record(self, reservation: Reservation, outcome: Outcome) -> SettleRecord:
        return self.settler.record(reservation, outcome)

    def settle_sync(self, record: SettleRecord) -> tuple[Settlement, Payloads, dict[str, Any]]:
        return self.settler.settle_sync(record)

    async def replay_spool(self) -> int:
        return await self.settler.replay_spool()

    # ------------------------------------------------------------------ holds
    async def renew(self, hold_ids: list[str]) -> int:
        if not hold_ids:
            return 0
        return await self.db.write(self.expiry.renew_sync, hold_ids)

    async def sweep_expired_holds(self) -> int:
        return await self.db.write(self.expiry.sweep_sync)

    def sweep_expired_holds_sync(self) -> int:
        return self.expiry.sweep_sync()

    # ------------------------------------------------------------------ wallets, budgets
    def topup_sync(
        self, customer_ref: str, nanos: int, description: str | None
    ) -> tuple[tuple[int, WalletTransaction], Payloads]:
        """Inside the caller's write transaction (the idempotency key's): credit the wallet.
        Publish the returned events once that transaction has committed."""
        return self.wallets.topup_sync(customer_ref, nanos, description)

    async def wallet(self, customer_ref: str, limit: int = 100) -> WalletView:
        return await self.db.read(self.wallets.view_sync, customer_ref, limit)

    def wallet_state_sync(self, customer_ids: list[str]) -> dict[str, tuple[int, int]]:
        return self.wallets.state_sync(customer_ids)

    def month_state_sync(self, customer_ids: list[str]) -> dict[str, tuple[str, int, int]]:
        return self.accounts.month_state(customer_ids, month_of(self.clock()))

    def rearm_budget_sync(self, customer_id: str, cap: int | None) -> None:
        """A changed cap re-arms this month's crossings that the new cap puts back ahead.

        Call inside the write transaction that changes the cap.
        """
        self.crossings.rearm_budget(customer_id, cap, month_of(self.clock()))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one of the ledger's `*_sync` reads off the event loop."""
        return await self.db.read(fn, *args)

    # ------------------------------------------------------------------ helpers
    def _publish(self, events: Iterable[dict[str, Any]]) -> None:
        for ev in events:
            self.bus.publish("event.recorded", event=ev)

    async def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write; a database that is down or locked means fail closed (503)."""
        try:
            return await self.db.write(fn, *args)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("ledger unavailable: %s", exc)
            raise LedgerUnavailable() from None
