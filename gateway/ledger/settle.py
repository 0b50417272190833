"""Settle: once a call is over, record what it really cost and release the rest of its hold.

One write transaction logs the request (its id is the primary key, so a settlement is
applied once), closes the hold, adds the real cost to the month of the reservation,
debits the wallet at the real price, rolls usage up by day and records threshold
crossings. A database that stays unavailable sends the settlement to the fsynced spool,
replayed later: a served call's charge is never lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import peewee as pw

from gateway.clock import Clock, day_of, from_ms, to_ms
from gateway.db.database import UNAVAILABLE_ERRORS, Database
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.ledger.crossings import Crossings
from gateway.ledger.events import Payloads
from gateway.ledger.spool import SettlementSpool, SettleRecord
from gateway.ledger.sql import HotSql
from gateway.ledger.types import Outcome, PeriodState, Reservation, Settlement, WalletState
from gateway.limits import Limiter
from gateway.tokens import TokenUsage

log = logging.getLogger("ringside.ledger")

# Waits between settlement attempts while the database is unavailable, before spooling.
SETTLE_RETRY_DELAYS_S = (0.05, 0.25, 1.0)


def wallet_debit(price: int, balance: int, held: int, release: int) -> int:
    """What a settlement takes from a wallet: its price, but never more than the wallet has
    beyond other calls' holds. A call whose hold lapsed (or that the provider ran past its
    hold) can find less there than its price; the wallet never goes below zero, and the
    shortfall stays visible as the difference between the log's price and the debit."""
    return min(price, max(0, balance - (held - release)))


class Settler:
    def __init__(
        self,
        db: Database,
        sql: HotSql,
        crossings: Crossings,
        limiter: Limiter,
        spool: SettlementSpool,
        bus: EventBus,
        clock: Clock,
    ) -> None:
        self.db = db
        self.sql = sql
        self.crossings = crossings
        self.limiter = limiter
        self.spool = spool
        self.bus = bus
        self.clock = clock

    async def settle(self, reservation: Reservation, outcome: Outcome) -> Settlement:
        """Record the real amount and release the rest. Called exactly once per reservation.

        A database that is briefly unavailable is retried; if it stays down, the settlement
        goes to the spool (fsynced) and is replayed later, so a served call is never lost.
        """
        if reservation.settled:
            raise RuntimeError("reservation already settled")
        reservation.settled = True
        record = self.record(reservation, outcome)
        for delay in SETTLE_RETRY_DELAYS_S:
            try:
                settlement, events, row = await self.db.write(self.settle_sync, record)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("settling %s failed (%s); retrying", record.request_id, exc)
                await asyncio.sleep(delay)
                continue
            for ev in events:
                self.bus.publish("event.recorded", event=ev)
            self.bus.publish("request.metered", request=row)
            return settlement
        await asyncio.to_thread(self.spool.append, record)
        log.error("ledger unavailable: settlement of %s spooled for replay", record.request_id)
        return Settlement(
            record.cost_nanos,
            record.price_nanos,
            reservation.budget_remaining_nanos,
            reservation.wallet_available_nanos,
            record.over_hold,
        )

    def record(self, r: Reservation, outcome: Outcome) -> SettleRecord:
        """Everything settlement needs, as plain values (so it can be spooled and replayed)."""
        est = r.estimate
        assert est is not None
        usage = outcome.usage
        charge = est.rates.charge(usage, r.customer_markup) if usage is not None else None
        cost = charge.cost_nanos if charge else 0
        price = charge.price_nanos if charge else 0
        over_hold = r.hold_id is not None and bool(
            (r.budget_hold_nanos and cost > r.budget_hold_nanos)
            or (r.wallet_hold_nanos and price > r.wallet_hold_nanos)
        )
        return SettleRecord(
            request_id=r.request_id,
            hold_id=r.hold_id,
            customer_id=r.customer_id,
            period=r.period,
            budget_hold_nanos=r.budget_hold_nanos,
            wallet_hold_nanos=r.wallet_hold_nanos,
            budget_nanos=r.budget_nanos,
            prepaid=r.prepaid,
            low_balance_threshold_nanos=r.low_balance_threshold_nanos,
            started_ms=r.started_ms,
            provider=est.provider,
            model=est.model,
            endpoint=est.endpoint,
            stream=est.stream,
            status=outcome.status,
            http_status=outcome.http_status,
            error_code=outcome.error_code,
            latency_ms=outcome.latency_ms,
            usage=None if usage is None else dataclasses.astuple(usage),
            cost_nanos=cost,
            price_nanos=price,
            over_hold=over_hold,
            settled_ms=to_ms(self.clock()),
            rate_second=r.rate_second,
            rate_tokens=r.rate_tokens,
            token_subjects=r.token_subjects,
            slots=r.slots,
        )

    async def replay_spool(self) -> int:
        """Apply spooled settlements; each is applied once (the request id is the key)."""
        return await asyncio.to_thread(self.spool.replay, self._replay_one)

    def _replay_one(self, record: SettleRecord) -> None:
        try:
            self.db.run_sync(self.settle_sync, record)
        except pw.IntegrityError:
            pass  # already recorded: the first attempt committed before its error surfaced

    def settle_sync(self, r: SettleRecord) -> tuple[Settlement, Payloads, dict[str, Any]]:
        now_ms = r.settled_ms
        usage = TokenUsage(*r.usage) if r.usage is not None else None
        cost, price, over_hold = r.cost_nanos, r.price_nanos, r.over_hold
        events: Payloads = []
        budget_remaining: int | None = None
        wallet_balance: int | None = None
        row: dict[str, Any] = {
            "id": r.request_id,
            "customer_id": r.customer_id,
            "provider": r.provider,
            "model": r.model,
            "endpoint": r.endpoint,
            "stream": r.stream,
            "status": r.status,
            "http_status": r.http_status,
            "error_code": r.error_code,
            "input_tokens": usage.input_tokens if usage else 0,
            "cached_tokens": usage.cached_tokens if usage else 0,
            "cache_write_tokens": usage.cache_write_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0,
            "cost_nanos": cost,
            "price_nanos": price,
            "held_nanos": max(r.budget_hold_nanos, r.wallet_hold_nanos),
            "over_hold": bool(over_hold),
            "latency_ms": r.latency_ms,
            "created_ms": r.started_ms,
        }
        with self.db.tx():
            # First: the request id is the primary key, so a replayed settlement stops here.
            self.sql.execute("request_insert", *row.values())
            hold_live = r.hold_id is not None and self.sql.rowcount("hold_settle", r.hold_id) == 1
            # Rate limits before money: rows are locked in the order reserve takes them.
            if r.slots or r.token_subjects:
                used = usage.input_tokens + usage.output_tokens if usage is not None else 0
                self.limiter.settle(
                    r.slots if hold_live else (),  # a lapsed hold's slots were swept already
                    r.token_subjects,
                    r.rate_second,
                    used - r.rate_tokens,
                    now_ms,
                )
            if r.customer_id is not None:
                # The month of the reservation owns the spend, even across midnight UTC.
                release_budget = r.budget_hold_nanos if hold_live else 0
                returned = self.sql.one(
                    "period_settle", cost, release_budget, r.customer_id, r.period
                )
                if returned is None:  # first call of the month for an unlimited customer
                    self.sql.execute("period_insert", r.customer_id, r.period, False, False)
                    returned = self.sql.one(
                        "period_settle", cost, release_budget, r.customer_id, r.period
                    )
                assert returned is not None
                spent_after, held_after = int(returned[0]), int(returned[1])
                period_before = PeriodState(
                    r.period,
                    spent_after - cost,
                    held_after + release_budget,
                    bool(returned[2]),
                    bool(returned[3]),
                )
                cap = r.budget_nanos
                if cap is not None:
                    budget_remaining = max(cap - spent_after - held_after, 0)
                    events += self.crossings.after_budget_spend(
                        r, period_before, spent_after, now_ms
                    )
                if r.prepaid or r.wallet_hold_nanos:
                    release_wallet = r.wallet_hold_nanos if hold_live else 0
                    current = self.sql.one("wallet_select", r.customer_id)  # locked (PostgreSQL)
                    if current is None:
                        self.sql.execute("wallet_insert", r.customer_id, True, True, now_ms)
                        current = (0, 0)
                    debit = wallet_debit(price, int(current[0]), int(current[1]), release_wallet)
                    w = self.sql.one("wallet_settle", debit, release_wallet, now_ms, r.customer_id)
                    assert w is not None
                    wallet_balance = int(w[0])
                    if debit:
                        self.sql.execute(
                            "txn_insert",
                            new_id("txn"),
                            r.customer_id,
                            -debit,
                            wallet_balance,
                            r.request_id,
                            f"{r.provider}/{r.model}",
                            now_ms,
                        )
                    if debit < price:
                        log.warning(
                            "request %s: the wallet of %s paid %d of %d nanos (its hold had "
                            "lapsed or was exceeded); the request log keeps the full price",
                            r.request_id,
                            r.customer_id,
                            debit,
                            price,
                        )
                    wallet_before = WalletState(
                        wallet_balance + debit, int(w[1]) + release_wallet, bool(w[2]), bool(w[3])
                    )
                    events += self.crossings.after_wallet_debit(
                        r, wallet_before, wallet_balance, now_ms
                    )
            if usage is not None:
                self.sql.execute(
                    "rollup_upsert",
                    day_of(from_ms(r.started_ms)),
                    r.customer_id or "",
                    f"{r.provider}/{r.model}",
                    usage.input_tokens,
                    usage.cached_tokens,
                    usage.cache_write_tokens,
                    usage.output_tokens,
                    usage.reasoning_tokens,
                    cost,
                    price,
                )
        if over_hold:
            log.warning(
                "request %s cost %d nanos above its hold %d (provider ignored max_tokens?)",
                r.request_id,
                cost,
                r.budget_hold_nanos,
            )
        return (
            Settlement(cost, price, budget_remaining, wallet_balance, bool(over_hold)),
            events,
            row,
        )
