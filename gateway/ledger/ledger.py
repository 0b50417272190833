"""The ledger: every money movement in Ringside goes through this one narrow API.

Two-phase, like TigerBeetle's pending transfers:
  reserve()  one write transaction: resolve the customer, take a hold for the call's
             worst-case cost (budget) and price (wallet) with guarded UPDATEs.
  settle()   one write transaction: close the hold, add the real cost to the month,
             debit the wallet at the real price, log the request, roll up usage,
             record threshold crossings.
Holds carry an expiry that in-flight calls renew; the sweeper releases lapsed ones.

The guards are single statements (`... WHERE spent + held + :x <= cap`), never
read-check-write in Python, so concurrent reservations can never overspend on SQLite
or on PostgreSQL shared by many instances.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import peewee as pw

from gateway.clock import Clock, day_of, from_ms, month_of, to_ms, utcnow
from gateway.config import Settings
from gateway.db.database import UNAVAILABLE_ERRORS, Database
from gateway.db.models import (
    BudgetPeriod,
    Customer,
    Hold,
    RequestLog,
    Wallet,
    WalletTransaction,
)
from gateway.errors import (
    ApiError,
    CustomerArchived,
    CustomerBudgetExceeded,
    CustomerNotFound,
    CustomerSuspended,
    CustomerWalletEmpty,
    InvalidAmount,
    LedgerUnavailable,
)
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.ledger.amounts import NANOS_PER_USD, nanos_to_json
from gateway.ledger.events import record_event
from gateway.ledger.prices import ModelRates
from gateway.ledger.spool import SettlementSpool, SettleRecord
from gateway.ledger.sql import HotSql
from gateway.tokens import TokenUsage

log = logging.getLogger("ringside.ledger")

MAX_TOPUP_NANOS = 1_000_000 * NANOS_PER_USD
# Waits between settlement attempts while the database is unavailable, before spooling.
SETTLE_RETRY_DELAYS_S = (0.05, 0.25, 1.0)


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CallEstimate:
    """What the proxy knows before forwarding."""

    provider: str
    model: str
    endpoint: str  # "chat" | "embeddings"
    stream: bool
    rates: ModelRates
    input_tokens_bound: int
    requested_output_tokens: int | None  # the client's max_tokens x n, if it gave one
    output_multiplier: int = 1  # n choices


@dataclass
class Reservation:
    request_id: str
    hold_id: str | None
    customer_id: str | None
    customer_markup: Decimal | None
    period: str
    budget_hold_nanos: int
    wallet_hold_nanos: int
    # Set when the client gave no max_tokens and a limit applies: the proxy injects it.
    max_output_tokens: int | None
    budget_nanos: int | None
    budget_remaining_nanos: int | None  # after this hold
    prepaid: bool
    wallet_available_nanos: int | None  # after this hold
    started_ms: int
    low_balance_threshold_nanos: int | None = None
    estimate: CallEstimate | None = None
    settled: bool = field(default=False)


@dataclass(frozen=True)
class Outcome:
    """What happened upstream. `usage` None means nothing is charged."""

    status: str  # ok | error | cut
    http_status: int
    usage: TokenUsage | None = None
    error_code: str | None = None
    latency_ms: int = 0


@dataclass(frozen=True)
class Settlement:
    cost_nanos: int
    price_nanos: int
    budget_remaining_nanos: int | None
    wallet_balance_nanos: int | None
    over_hold: bool


@dataclass(frozen=True)
class PeriodState:
    period: str
    spent_nanos: int
    held_nanos: int
    warned: bool
    exceeded: bool


@dataclass(frozen=True)
class WalletState:
    balance_nanos: int
    held_nanos: int
    low_armed: bool
    empty_armed: bool


@dataclass(frozen=True)
class WalletView:
    customer_id: str
    balance_nanos: int
    held_nanos: int
    prepaid: bool
    low_balance_threshold_nanos: int | None
    transactions: list[WalletTransaction]


# ---------------------------------------------------------------------------- ledger


class Ledger:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        bus: EventBus | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.bus = bus or EventBus()
        self.clock = clock
        self.hold_ttl_ms = int(settings.billing.hold_ttl_s * 1000)
        self.warning_share = settings.billing.budget_warning_share
        self.min_output = settings.billing.min_output_tokens
        self.sql = HotSql(db)
        self.spool = SettlementSpool(settings.server.data_dir / "unsettled.jsonl")

    # ------------------------------------------------------------------ helpers
    def _publish(self, events: Iterable[dict[str, Any]]) -> None:
        for ev in events:
            self.bus.publish("event.recorded", event=ev)

    async def _guarded(self, fn: Any, *args: Any) -> Any:
        """Run a write; a database that is down or locked means fail closed (503)."""
        try:
            return await self.db.write(fn, *args)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("ledger unavailable: %s", exc)
            raise LedgerUnavailable() from None

    # ------------------------------------------------------------------ customers
    def resolve_customer(self, ref: str) -> Customer:
        """By `cus_` id or by external id. Raises CustomerNotFound."""
        row = self.sql.customer(ref)
        if row is None:
            raise CustomerNotFound(
                f"No customer with id or external_id '{ref}'.", param="FC-Customer"
            )
        return row

    # ------------------------------------------------------------------ reserve
    async def reserve(self, customer_ref: str | None, estimate: CallEstimate) -> Reservation:
        result, events = await self._guarded(self._reserve_sync, customer_ref, estimate)
        self._publish(events)
        if isinstance(result, ApiError):
            if result.status == 402:
                self.bus.publish(
                    "request.refused",
                    customer_id=result.extra.get("customer_id"),
                    code=result.code,
                    model=f"{estimate.provider}/{estimate.model}",
                )
            raise result
        return result

    def _reserve_sync(
        self, customer_ref: str | None, est: CallEstimate
    ) -> tuple[Reservation | ApiError, list[dict[str, Any]]]:
        now = self.clock()
        now_ms = to_ms(now)
        period = month_of(now)
        request_id = new_id("req")
        if customer_ref is None:
            return self._unlimited(request_id, None, None, period, now_ms, est), []

        customer = self.resolve_customer(customer_ref)
        if customer.status == "archived":
            raise CustomerArchived(
                f"Customer '{customer.id}' is archived.", customer_id=customer.id
            )
        if customer.status == "suspended":
            raise CustomerSuspended(
                f"Customer '{customer.id}' is suspended.", customer_id=customer.id
            )
        markup = Decimal(customer.markup) if customer.markup is not None else est.rates.markup
        cap = customer.monthly_budget_nanos
        if cap is None and not customer.prepaid:
            return self._unlimited(request_id, customer, markup, period, now_ms, est), []

        try:
            return self._reserve_limited(customer, markup, request_id, period, now_ms, est)
        except _Rollback as rollback:
            return rollback.error, []

    def _reserve_limited(
        self,
        customer: Customer,
        markup: Decimal,
        request_id: str,
        period: str,
        now_ms: int,
        est: CallEstimate,
    ) -> tuple[Reservation | ApiError, list[dict[str, Any]]]:
        cap = customer.monthly_budget_nanos
        events: list[dict[str, Any]] = []
        with self.db.tx():
            budget_left: int | None = None
            period_row: BudgetPeriod | None = None
            if cap is not None:
                period_row = self._period_row(customer.id, period, lock=True)
                budget_left = cap - period_row.spent_nanos - period_row.held_nanos
            wallet_left: int | None = None
            wallet: Wallet | None = None
            if customer.prepaid:
                wallet = self._wallet_row(customer.id, now_ms, lock=True)
                wallet_left = wallet.balance_nanos - wallet.held_nanos

            plan = self._plan(est, markup, budget_left, wallet_left)
            if isinstance(plan, _Refusal):
                err, events = self._on_refusal(plan, customer, period_row, wallet, now_ms)
                self._log_refusal(request_id, customer.id, est, err, now_ms)
                err.headers["FC-Request-Id"] = request_id
                return err, events
            out_tokens, cost_hold, price_hold = plan

            if cap is not None:
                # The guard is the statement itself: it cannot overspend whatever ran before.
                changed = self.sql.rowcount(
                    "period_hold", cost_hold, customer.id, period, cost_hold, cap
                )
                if changed != 1:
                    err = self._budget_error(customer, cap, period_row)
                    return err, events
            if customer.prepaid:
                changed = self.sql.rowcount("wallet_hold", price_hold, customer.id, price_hold)
                if changed != 1:
                    # Roll back the budget hold taken above with the whole transaction.
                    raise _Rollback(self._wallet_error(customer, wallet, price_hold))
            hold_id = new_id("hold")
            self.sql.execute(
                "hold_insert",
                hold_id,
                request_id,
                customer.id,
                period,
                cost_hold if cap is not None else 0,
                price_hold if customer.prepaid else 0,
                now_ms,
                now_ms + self.hold_ttl_ms,
            )
        reservation = Reservation(
            request_id=request_id,
            hold_id=hold_id,
            customer_id=customer.id,
            customer_markup=Decimal(customer.markup) if customer.markup is not None else None,
            period=period,
            budget_hold_nanos=cost_hold if cap is not None else 0,
            wallet_hold_nanos=price_hold if customer.prepaid else 0,
            max_output_tokens=out_tokens if est.requested_output_tokens is None else None,
            budget_nanos=cap,
            budget_remaining_nanos=(budget_left - cost_hold) if budget_left is not None else None,
            prepaid=bool(customer.prepaid),
            wallet_available_nanos=(wallet_left - price_hold) if wallet_left is not None else None,
            started_ms=now_ms,
            low_balance_threshold_nanos=customer.low_balance_threshold_nanos,
            estimate=est,
        )
        return reservation, events

    def _unlimited(
        self,
        request_id: str,
        customer: Customer | None,
        markup: Decimal | None,
        period: str,
        now_ms: int,
        est: CallEstimate,
    ) -> Reservation:
        # No limit applies: nothing to hold, so no write is needed before forwarding.
        return Reservation(
            request_id=request_id,
            hold_id=None,
            customer_id=customer.id if customer else None,
            customer_markup=Decimal(customer.markup)
            if customer is not None and customer.markup is not None
            else None,
            period=period,
            budget_hold_nanos=0,
            wallet_hold_nanos=0,
            max_output_tokens=None,
            budget_nanos=None,
            budget_remaining_nanos=None,
            prepaid=False,
            wallet_available_nanos=None,
            started_ms=now_ms,
            estimate=est,
        )

    def _plan(
        self,
        est: CallEstimate,
        markup: Decimal,
        budget_left: int | None,
        wallet_left: int | None,
    ) -> tuple[int, int, int] | _Refusal:
        """Choose the output bound and the amounts to hold: (out_tokens, cost, price)."""
        rates = est.rates
        if est.endpoint == "embeddings":
            out = 0
        elif est.requested_output_tokens is not None:
            out = est.requested_output_tokens
        else:
            out = rates.max_output_tokens * est.output_multiplier
            if budget_left is not None:
                out = min(out, rates.affordable_output_tokens(est.input_tokens_bound, budget_left))
            if wallet_left is not None and markup > 0:
                cost_room = int((Decimal(wallet_left) / markup).to_integral_value(ROUND_FLOOR))
                out = min(out, rates.affordable_output_tokens(est.input_tokens_bound, cost_room))
            # Spread over n choices: the provider applies max_tokens to each.
            out = (out // est.output_multiplier) * est.output_multiplier
            if out < self.min_output * est.output_multiplier:
                return self._refusal(est, markup, budget_left, wallet_left)
        for _ in range(4):
            exact = (
                est.input_tokens_bound * rates.bound_input_nanos + out * rates.bound_output_nanos
            )
            cost = int(exact.to_integral_value(ROUND_CEILING))
            price = int((exact * markup).to_integral_value(ROUND_CEILING))
            fits_budget = budget_left is None or cost <= budget_left
            fits_wallet = wallet_left is None or price <= wallet_left
            if fits_budget and fits_wallet:
                return (
                    out // est.output_multiplier if est.output_multiplier > 1 else out,
                    cost,
                    price,
                )
            if est.requested_output_tokens is not None or est.endpoint == "embeddings":
                break
            # Rounding up can push the last nano over; shave a token and retry.
            out -= est.output_multiplier
            if out < self.min_output * est.output_multiplier:
                break
        return self._refusal(est, markup, budget_left, wallet_left, out=out)

    def _refusal(
        self,
        est: CallEstimate,
        markup: Decimal,
        budget_left: int | None,
        wallet_left: int | None,
        out: int | None = None,
    ) -> _Refusal:
        out = max(out if out is not None else self.min_output, 0)
        need = est.rates.bound_nanos(est.input_tokens_bound, out)
        if budget_left is not None and need > budget_left:
            return _Refusal("budget", need)
        price_need = int((Decimal(need) * markup).to_integral_value(ROUND_CEILING))
        return _Refusal("wallet", price_need)

    def _on_refusal(
        self,
        refusal: _Refusal,
        customer: Customer,
        period_row: BudgetPeriod | None,
        wallet: Wallet | None,
        now_ms: int,
    ) -> tuple[ApiError, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        if refusal.limit == "budget":
            assert period_row is not None
            cap = customer.monthly_budget_nanos or 0
            err = self._budget_error(customer, cap, period_row, refusal.need)
            # The cap is what stops this customer now: tell the operator once per month.
            if not period_row.exceeded:
                changed = (
                    BudgetPeriod.update(exceeded=True)
                    .where(
                        BudgetPeriod.customer_id == customer.id,
                        BudgetPeriod.period == period_row.period,
                        BudgetPeriod.exceeded == False,  # noqa: E712
                    )
                    .execute()
                )
                if changed:
                    events.append(
                        record_event(
                            "budget_exceeded",
                            customer,
                            self._budget_data(customer, period_row.period, period_row.spent_nanos),
                            now_ms=now_ms,
                        )
                    )
            return err, events
        err = self._wallet_error(customer, wallet, refusal.need)
        if wallet is not None and wallet.empty_armed:
            changed = (
                Wallet.update(empty_armed=False)
                .where(
                    Wallet.customer_id == customer.id,
                    Wallet.empty_armed == True,  # noqa: E712
                )
                .execute()
            )
            if changed:
                events.append(
                    record_event(
                        "wallet.empty",
                        customer,
                        self._wallet_data(customer, wallet.balance_nanos),
                        now_ms=now_ms,
                    )
                )
        return err, events

    def _log_refusal(
        self, request_id: str, customer_id: str, est: CallEstimate, err: ApiError, now_ms: int
    ) -> None:
        RequestLog.insert(
            id=request_id,
            customer_id=customer_id,
            provider=est.provider,
            model=est.model,
            endpoint=est.endpoint,
            stream=est.stream,
            status="refused",
            http_status=err.status,
            error_code=err.code,
            created_ms=now_ms,
        ).execute()

    def _budget_error(
        self, customer: Customer, cap: int, period_row: BudgetPeriod | None, need: int = 0
    ) -> ApiError:
        spent = period_row.spent_nanos if period_row else 0
        held = period_row.held_nanos if period_row else 0
        return CustomerBudgetExceeded(
            f"Customer '{customer.id}' has reached its monthly budget: "
            f"${_usd(spent)} spent (${_usd(held)} held by calls in flight) "
            f"of ${_usd(cap)} this month.",
            customer_id=customer.id,
            external_id=customer.external_id,
            monthly_budget_usd=nanos_to_json(cap),
            spent_usd=nanos_to_json(spent),
            held_usd=nanos_to_json(held),
            remaining_usd=nanos_to_json(max(cap - spent - held, 0)),
            required_usd=nanos_to_json(need) if need else None,
            period=period_row.period if period_row else None,
        )

    def _wallet_error(self, customer: Customer, wallet: Any, need: int = 0) -> ApiError:
        balance = wallet.balance_nanos if wallet else 0
        held = wallet.held_nanos if wallet else 0
        now = self.clock()
        month_start = to_ms(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        spent = self.sql.one("wallet_spent_since", customer.id, month_start)
        spent_nanos = int(spent[0]) if spent else 0
        return CustomerWalletEmpty(
            f"Customer '{customer.id}' cannot pay for this call from its wallet: "
            f"balance ${_usd(balance)} (${_usd(held)} held by calls in flight); "
            f"${_usd(spent_nanos)} spent from it this month.",
            customer_id=customer.id,
            external_id=customer.external_id,
            balance_usd=nanos_to_json(balance),
            spent_usd=nanos_to_json(spent_nanos),
            period=month_of(now),
            held_usd=nanos_to_json(held),
            available_usd=nanos_to_json(max(balance - held, 0)),
            required_usd=nanos_to_json(need) if need else None,
        )

    def _period_row(self, customer_id: str, period: str, *, lock: bool) -> PeriodState:
        """The month's row, created on first use (locked FOR UPDATE on PostgreSQL)."""
        row = self.sql.one("period_select", customer_id, period)
        if row is None:
            self.sql.execute("period_insert", customer_id, period, False, False)
            row = self.sql.one("period_select", customer_id, period)
        assert row is not None
        return PeriodState(period, row[0], row[1], bool(row[2]), bool(row[3]))

    def _wallet_row(self, customer_id: str, now_ms: int, *, lock: bool) -> WalletState:
        row = self.sql.one("wallet_select", customer_id)
        if row is None:
            self.sql.execute("wallet_insert", customer_id, True, True, now_ms)
            row = self.sql.one("wallet_select", customer_id)
        assert row is not None
        return WalletState(row[0], row[1], bool(row[2]), bool(row[3]))

    # ------------------------------------------------------------------ settle
    async def settle(self, reservation: Reservation, outcome: Outcome) -> Settlement:
        """Record the real amount and release the rest. Called exactly once per reservation.

        A database that is briefly unavailable is retried; if it stays down, the settlement
        goes to the spool (fsynced) and is replayed later, so a served call is never lost.
        """
        if reservation.settled:
            raise RuntimeError("reservation already settled")
        reservation.settled = True
        record = self.settle_record(reservation, outcome)
        for delay in SETTLE_RETRY_DELAYS_S:
            try:
                settlement, events, row = await self.db.write(self.settle_sync, record)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("settling %s failed (%s); retrying", record.request_id, exc)
                await asyncio.sleep(delay)
                continue
            self._publish(events)
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

    def settle_record(self, r: Reservation, outcome: Outcome) -> SettleRecord:
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
        )

    async def replay_spool(self) -> int:
        """Apply spooled settlements; each is applied once (the request id is the key)."""
        return await asyncio.to_thread(self.spool.replay, self._replay_one)

    def _replay_one(self, record: SettleRecord) -> None:
        try:
            self.db.run_sync(self.settle_sync, record)
        except pw.IntegrityError:
            pass  # already recorded: the first attempt committed before its error surfaced

    def settle_sync(
        self, r: SettleRecord
    ) -> tuple[Settlement, list[dict[str, Any]], dict[str, Any]]:
        now_ms = r.settled_ms
        usage = TokenUsage(*r.usage) if r.usage is not None else None
        cost, price, over_hold = r.cost_nanos, r.price_nanos, r.over_hold
        events: list[dict[str, Any]] = []
        budget_remaining: int | None = None
        wallet_balance: int | None = None
        row = {
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
                spent_after, held_after = returned[0], returned[1]
                period_state = PeriodState(
                    r.period,
                    spent_after - cost,
                    held_after + release_budget,
                    bool(returned[2]),
                    bool(returned[3]),
                )
                cap = r.budget_nanos
                if cap is not None:
                    budget_remaining = max(cap - spent_after - held_after, 0)
                    events += self._budget_crossings(r, period_state, spent_after, now_ms)
                if r.prepaid or r.wallet_hold_nanos:
                    release_wallet = r.wallet_hold_nanos if hold_live else 0
                    if self.sql.one("wallet_select", r.customer_id) is None:
                        self.sql.execute("wallet_insert", r.customer_id, True, True, now_ms)
                    w = self.sql.one("wallet_settle", price, release_wallet, now_ms, r.customer_id)
                    assert w is not None
                    wallet_balance = w[0]
                    if price:
                        self.sql.execute(
                            "txn_insert",
                            new_id("txn"),
                            r.customer_id,
                            -price,
                            wallet_balance,
                            r.request_id,
                            f"{r.provider}/{r.model}",
                            now_ms,
                        )
                    before = WalletState(
                        wallet_balance + price, w[1] + release_wallet, bool(w[2]), bool(w[3])
                    )
                    events += self._wallet_crossings(
                        r, before, before.balance_nanos, wallet_balance, now_ms
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

    # ------------------------------------------------------------------ crossings
    def _budget_data(self, customer: Customer, period: str, spent: int) -> dict[str, Any]:
        cap = customer.monthly_budget_nanos or 0
        return {
            "period": period,
            "monthly_budget_usd": _f(cap),
            "spent_usd": _f(spent),
            "share": float(Decimal(spent) / Decimal(cap)) if cap else None,
        }

    def _wallet_data(self, customer: Customer, balance: int) -> dict[str, Any]:
        return {
            "balance_usd": _f(balance),
            "low_balance_threshold_usd": _f(customer.low_balance_threshold_nanos),
        }

    def _budget_crossings(
        self, r: SettleRecord, period_row: PeriodState, spent: int, now_ms: int
    ) -> list[dict[str, Any]]:
        cap = r.budget_nanos
        if cap is None:
            return []
        warn = not period_row.warned and spent >= cap * self.warning_share
        exceed = not period_row.exceeded and spent >= cap
        if not (warn or exceed):
            return []  # the common case: no crossing, no extra reads
        customer = self.resolve_customer(r.customer_id or "")
        events = []
        if warn and self._claim_flag(BudgetPeriod.warned, customer.id, period_row.period):
            data = self._budget_data(customer, period_row.period, spent)
            data["warning_share"] = float(self.warning_share)
            events.append(record_event("budget.warning", customer, data, now_ms=now_ms))
        if exceed and self._claim_flag(BudgetPeriod.exceeded, customer.id, period_row.period):
            events.append(
                record_event(
                    "budget_exceeded",
                    customer,
                    self._budget_data(customer, period_row.period, spent),
                    now_ms=now_ms,
                )
            )
        return events

    @staticmethod
    def _claim_flag(flag: Any, customer_id: str, period: str) -> bool:
        """Set a once-per-month crossing flag; only the writer that flips it fires the event."""
        return (
            BudgetPeriod.update({flag: True})
            .where(
                BudgetPeriod.customer_id == customer_id,
                BudgetPeriod.period == period,
                flag == False,  # noqa: E712 - a SQL expression
            )
            .execute()
            == 1
        )

    def _wallet_crossings(
        self, r: SettleRecord, wallet: WalletState, before: int, after: int, now_ms: int
    ) -> list[dict[str, Any]]:
        threshold = r.low_balance_threshold_nanos
        low = threshold is not None and wallet.low_armed and before >= threshold > after
        empty = wallet.empty_armed and after <= 0 < before
        if not (low or empty):
            return []
        customer = self.resolve_customer(r.customer_id or "")
        events = []
        updates: dict[Any, Any] = {}
        if low:
            updates[Wallet.low_armed] = False
            events.append(
                record_event(
                    "wallet.low", customer, self._wallet_data(customer, after), now_ms=now_ms
                )
            )
        if empty:
            updates[Wallet.empty_armed] = False
            events.append(
                record_event(
                    "wallet.empty", customer, self._wallet_data(customer, after), now_ms=now_ms
                )
            )
        if updates:
            Wallet.update(updates).where(Wallet.customer_id == customer.id).execute()
        return events

    # ------------------------------------------------------------------ holds
    async def renew(self, hold_ids: list[str]) -> int:
        if not hold_ids:
            return 0
        return await self.db.write(self._renew_sync, hold_ids)

    def _renew_sync(self, hold_ids: list[str]) -> int:
        expires = to_ms(self.clock()) + self.hold_ttl_ms
        with self.db.tx():
            return (
                Hold.update(expires_ms=expires)
                .where(Hold.id.in_(hold_ids), Hold.status == "active")
                .execute()
            )

    async def sweep_expired_holds(self) -> int:
        return await self.db.write(self.sweep_expired_holds_sync)

    def sweep_expired_holds_sync(self) -> int:
        """Release holds whose request stopped renewing them (a crash, a lost instance)."""
        now_ms = to_ms(self.clock())
        released = 0
        lapsed = list(
            Hold.select().where(Hold.status == "active", Hold.expires_ms < now_ms).limit(500)
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

    # ------------------------------------------------------------------ wallets
    def topup_sync(
        self, customer_ref: str, nanos: int, description: str | None
    ) -> tuple[tuple[int, WalletTransaction], list[dict[str, Any]]]:
        now_ms = to_ms(self.clock())
        with self.db.tx():
            customer = self.resolve_customer(customer_ref)
            if customer.status == "archived":
                raise CustomerArchived(f"Customer '{customer.id}' is archived.")
            if not customer.prepaid:
                Customer.update(prepaid=True, updated_ms=now_ms).where(
                    Customer.id == customer.id
                ).execute()
                customer.prepaid = True
            wallet = self._wallet_row(customer.id, now_ms, lock=True)
            balance = wallet.balance_nanos + nanos
            threshold = customer.low_balance_threshold_nanos
            Wallet.update(
                balance_nanos=Wallet.balance_nanos + nanos,
                updated_ms=now_ms,
                # A top-up re-arms the crossings once the balance is back above them.
                low_armed=wallet.low_armed or threshold is None or balance >= threshold,
                empty_armed=wallet.empty_armed or balance > 0,
            ).where(Wallet.customer_id == customer.id).execute()
            txn = WalletTransaction.create(
                id=new_id("txn"),
                customer_id=customer.id,
                type="topup",
                amount_nanos=nanos,
                balance_after_nanos=balance,
                description=description,
                created_ms=now_ms,
            )
            event = record_event(
                "wallet.topped_up",
                customer,
                {"amount_usd": _f(nanos), "balance_usd": _f(balance), "transaction_id": txn.id},
                now_ms=now_ms,
            )
        return (balance, txn), [event]

    async def wallet(self, customer_ref: str, limit: int = 100) -> WalletView:
        return await self.db.read(self._wallet_view_sync, customer_ref, limit)

    def _wallet_view_sync(self, customer_ref: str, limit: int) -> WalletView:
        customer = self.resolve_customer(customer_ref)
        wallet = Wallet.get_or_none(Wallet.customer_id == customer.id)
        txns = list(
            WalletTransaction.select()
            .where(WalletTransaction.customer_id == customer.id)
            .order_by(WalletTransaction.created_ms.desc(), WalletTransaction.id.desc())
            .limit(limit)
        )
        return WalletView(
            customer_id=customer.id,
            balance_nanos=wallet.balance_nanos if wallet else 0,
            held_nanos=wallet.held_nanos if wallet else 0,
            prepaid=bool(customer.prepaid),
            low_balance_threshold_nanos=customer.low_balance_threshold_nanos,
            transactions=txns,
        )

    def rearm_budget_sync(self, customer_id: str, cap: int | None) -> None:
        """A changed cap re-arms this month's crossings that the new cap puts back ahead.

        Call inside the write transaction that changes the cap.
        """
        period = month_of(self.clock())
        row = self.sql.one("period_select", customer_id, period)
        if row is None:
            return
        spent = row[0]
        updates: dict[Any, Any] = {}
        if cap is None or spent < cap * self.warning_share:
            updates[BudgetPeriod.warned] = False
        if cap is None or spent < cap:
            updates[BudgetPeriod.exceeded] = False
        if updates:
            BudgetPeriod.update(updates).where(
                BudgetPeriod.customer_id == customer_id, BudgetPeriod.period == period
            ).execute()

    # ------------------------------------------------------------------ reads
    def month_state_sync(self, customer_ids: list[str]) -> dict[str, tuple[str, int, int]]:
        period = month_of(self.clock())
        rows = BudgetPeriod.select().where(
            BudgetPeriod.customer_id.in_(customer_ids), BudgetPeriod.period == period
        )
        found = {r.customer_id: (period, r.spent_nanos, r.held_nanos) for r in rows}
        return {cid: found.get(cid, (period, 0, 0)) for cid in customer_ids}

    def wallet_state_sync(self, customer_ids: list[str]) -> dict[str, tuple[int, int]]:
        rows = Wallet.select().where(Wallet.customer_id.in_(customer_ids))
        return {r.customer_id: (r.balance_nanos, r.held_nanos) for r in rows}


# ---------------------------------------------------------------------------- internals


class _Rollback(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class _Refusal:
    limit: str  # "budget" | "wallet"
    need: int


def _usd(nanos: int) -> str:
    from gateway.ledger.amounts import nanos_to_text

    text = nanos_to_text(nanos)
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _f(nanos: int | None) -> float | None:
    return None if nanos is None else float(Decimal(nanos) / NANOS_PER_USD)


def validate_topup_amount(amount: Any) -> int:
    """Amount in USD as decoded from JSON -> nanos; 400 invalid_amount for anything odd."""
    from gateway.ledger.amounts import parse_usd, usd_to_nanos

    d = parse_usd(amount)
    if d is None:
        raise InvalidAmount("amount_usd must be a finite number.", param="amount_usd")
    if d <= 0:
        raise InvalidAmount("amount_usd must be greater than 0.", param="amount_usd")
    if d > MAX_TOPUP_NANOS / NANOS_PER_USD:
        raise InvalidAmount("amount_usd must be at most 1000000 per top-up.", param="amount_usd")
    if d.as_tuple().exponent < -9:  # type: ignore[operator]
        raise InvalidAmount("amount_usd may have at most 9 decimals.", param="amount_usd")
    return usd_to_nanos(d)
