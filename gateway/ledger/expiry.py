"""Hold expiry: in-flight calls renew their holds; lapsed ones are released.

A hold carries an expiry that the instance serving the call keeps pushing forward (see
`HoldKeeper`). If that instance dies, renewals stop, and any instance's sweep releases
the hold's amounts from the budget row and the wallet, and its rate-limit concurrency
slots, once it lapses.
"""

from __future__ import annotations

import logging

from gateway.clock import Clock, to_ms
from gateway.db.database import Database
from gateway.db.models import BudgetPeriod, Hold, Wallet
from gateway.events import EventBus
from gateway.limits import Limiter

log = logging.getLogger("ringside.ledger")

SWEEP_BATCH = 500


class HoldExpiry:
    def __init__(
        self, db: Database, limiter: Limiter, bus: EventBus, clock: Clock, *, hold_ttl_ms: int
    ) -> None:
        self.db = db
        self.limiter = limiter
        self.bus = bus
        self.clock = clock
        self.hold_ttl_ms = hold_ttl_ms

    def renew_sync(self, hold_ids: list[str]) -> int:
        expires = to_ms(self.clock()) + self.hold_ttl_ms
        with self.db.tx():
            return int(
                Hold.update(expires_ms=expires)
                .where(Hold.id.in_(hold_ids), Hold.status == "active")
                .execute()
            )

    def sweep_sync(self) -> int:
        """Release holds whose request stopped renewing them (a crash, a lost instance)."""
        now_ms = to_ms(self.clock())
        released = 0
        lapsed = list(
            Hold.select()
            .where(Hold.status == "active", Hold.expires_ms < now_ms)
            .limit(SWEEP_BATCH)
        )
        for hold in lapsed:
            with self.db.tx():
                if (
                    Hold.update(status="expired")
                    .where(Hold.id == hold.id, Hold.status == "active")
                    .execute()
                    != 1
                ):
                    continue  # settled or swept by someone else meanwhile
                if hold.slots:  # the concurrency slots of a call nobody is serving any more
                    self.limiter.release(tuple(hold.slots.split()))
                if hold.budget_nanos:
                    BudgetPeriod.update(
                        held_nanos=BudgetPeriod.held_nanos - hold.budget_nanos
                    ).where(
                        BudgetPeriod.customer_id == hold.customer_id,
                        BudgetPeriod.period == hold.period,
                    ).execute()
                if hold.wallet_nanos:
                    Wallet.update(held_nanos=Wallet.held_nanos - hold.wallet_nanos).where(
                        Wallet.customer_id == hold.customer_id
                    ).execute()
                released += 1
        if released:
            log.warning("released %d lapsed hold(s)", released)
            self.bus.publish("holds.released", count=released)
        return released
