"""Reserve: before a call is forwarded, hold its worst case against the customer's limits.

One write transaction resolves the customer, chooses the output bound the limits can pay
for, and takes the hold with guarded UPDATEs (`... WHERE spent + held + :x <= cap`): the
statement itself is the check, so concurrent reservations can never overspend, on SQLite
or on PostgreSQL shared by many instances. A customer without a limit needs no write.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from gateway.clock import Clock, month_of, to_ms
from gateway.db.database import Database
from gateway.db.models import Customer
from gateway.errors import ApiError, CustomerArchived, CustomerSuspended
from gateway.ids import new_id
from gateway.ledger.accounts import Accounts
from gateway.ledger.crossings import Crossings
from gateway.ledger.events import Payloads
from gateway.ledger.refusals import Refusal, budget_error, log_refusal, wallet_error
from gateway.ledger.sql import HotSql
from gateway.ledger.types import CallEstimate, PeriodState, Reservation, WalletState


@dataclass(frozen=True)
class Plan:
    """What to hold for a call that fits: the output bound and the amounts."""

    output_tokens: int  # per choice; what the proxy injects as max_tokens when it must
    cost_nanos: int  # against the monthly budget
    price_nanos: int  # against the wallet


class Reserver:
    def __init__(
        self,
        db: Database,
        sql: HotSql,
        accounts: Accounts,
        crossings: Crossings,
        clock: Clock,
        *,
        hold_ttl_ms: int,
        min_output_tokens: int,
    ) -> None:
        self.db = db
        self.sql = sql
        self.accounts = accounts
        self.crossings = crossings
        self.clock = clock
        self.hold_ttl_ms = hold_ttl_ms
        self.min_output = min_output_tokens

    def reserve_sync(
        self, customer_ref: str | None, est: CallEstimate
    ) -> tuple[Reservation | ApiError, Payloads]:
        """The reservation, or the 402 refusing the call (with the events it recorded)."""
        now = self.clock()
        now_ms = to_ms(now)
        period = month_of(now)
        request_id = new_id("req")
        if customer_ref is None:
            return _unlimited(request_id, None, period, now_ms, est), []

        customer = self.accounts.customer(customer_ref)
        if customer.status == "archived":
            raise CustomerArchived(
                f"Customer '{customer.id}' is archived.", customer_id=customer.id
            )
        if customer.status == "suspended":
            raise CustomerSuspended(
                f"Customer '{customer.id}' is suspended.", customer_id=customer.id
            )
        markup = Decimal(customer.markup) if customer.markup is not None else est.rates.markup
        if customer.monthly_budget_nanos is None and not customer.prepaid:
            return _unlimited(request_id, customer, period, now_ms, est), []

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
    ) -> tuple[Reservation | ApiError, Payloads]:
        cap = customer.monthly_budget_nanos
        events: Payloads = []
        with self.db.tx():
            budget_left: int | None = None
            period_row: PeriodState | None = None
            if cap is not None:
                period_row = self.accounts.period(customer.id, period)
                budget_left = cap - period_row.spent_nanos - period_row.held_nanos
            wallet_left: int | None = None
            wallet: WalletState | None = None
            if customer.prepaid:
                wallet = self.accounts.wallet(customer.id, now_ms)
                wallet_left = wallet.balance_nanos - wallet.held_nanos

            plan = plan_hold(est, markup, budget_left, wallet_left, self.min_output)
            if isinstance(plan, Refusal):
                if plan.limit == "budget":
                    assert period_row is not None
                    err = budget_error(customer, cap or 0, period_row, plan.need)
                else:
                    err = self._wallet_error(customer, wallet, plan.need)
                events = self.crossings.on_refusal(plan, customer, period_row, wallet, now_ms)
                log_refusal(request_id, customer.id, est, err, now_ms)
                err.headers["FC-Request-Id"] = request_id
                return err, events

            if cap is not None:
                # The guard is the statement itself: it cannot overspend whatever ran before.
                changed = self.sql.rowcount(
                    "period_hold", plan.cost_nanos, customer.id, period, plan.cost_nanos, cap
                )
                if changed != 1:
                    return budget_error(customer, cap, period_row), events
            if customer.prepaid:
                changed = self.sql.rowcount(
                    "wallet_hold", plan.price_nanos, customer.id, plan.price_nanos
                )
                if changed != 1:
                    # Roll back the budget hold taken above with the whole transaction.
                    raise _Rollback(self._wallet_error(customer, wallet, plan.price_nanos))
            hold_id = new_id("hold")
            self.sql.execute(
                "hold_insert",
                hold_id,
                request_id,
                customer.id,
                period,
                plan.cost_nanos if cap is not None else 0,
                plan.price_nanos if customer.prepaid else 0,
                now_ms,
                now_ms + self.hold_ttl_ms,
            )
        reservation = Reservation(
            request_id=request_id,
            hold_id=hold_id,
            customer_id=customer.id,
            customer_markup=Decimal(customer.markup) if customer.markup is not None else None,
            period=period,
            budget_hold_nanos=plan.cost_nanos if cap is not None else 0,
            wallet_hold_nanos=plan.price_nanos if customer.prepaid else 0,
            max_output_tokens=plan.output_tokens if est.requested_output_tokens is None else None,
            budget_nanos=cap,
            budget_remaining_nanos=(
                budget_left - plan.cost_nanos if budget_left is not None else None
            ),
            prepaid=bool(customer.prepaid),
            wallet_available_nanos=(
                wallet_left - plan.price_nanos if wallet_left is not None else None
            ),
            started_ms=now_ms,
            low_balance_threshold_nanos=customer.low_balance_threshold_nanos,
            estimate=est,
        )
        return reservation, events

    def _wallet_error(self, customer: Customer, wallet: WalletState | None, need: int) -> ApiError:
        now = self.clock()
        month_start = to_ms(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        spent = self.sql.one("wallet_spent_since", customer.id, month_start)
        return wallet_error(
            customer,
            wallet,
            spent_this_month=int(spent[0]) if spent else 0,
            period=month_of(now),
            need=need,
        )


def plan_hold(
    est: CallEstimate,
    markup: Decimal,
    budget_left: int | None,
    wallet_left: int | None,
    min_output: int,
) -> Plan | Refusal:
    """Choose the output bound and the amounts to hold, or the limit that refuses the call."""
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
        if out < min_output * est.output_multiplier:
            return _refusal(est, markup, budget_left, min_output)
    for _ in range(4):
        exact = est.input_tokens_bound * rates.bound_input_nanos + out * rates.bound_output_nanos
        cost = int(exact.to_integral_value(ROUND_CEILING))
        price = int((exact * markup).to_integral_value(ROUND_CEILING))
        fits_budget = budget_left is None or cost <= budget_left
        fits_wallet = wallet_left is None or price <= wallet_left
        if fits_budget and fits_wallet:
            per_choice = out // est.output_multiplier if est.output_multiplier > 1 else out
            return Plan(per_choice, cost, price)
        if est.requested_output_tokens is not None or est.endpoint == "embeddings":
            break
        # Rounding up can push the last nano over; shave a token and retry.
        out -= est.output_multiplier
        if out < min_output * est.output_multiplier:
            break
    return _refusal(est, markup, budget_left, out)


def _refusal(est: CallEstimate, markup: Decimal, budget_left: int | None, out: int) -> Refusal:
    """The limit a call with `out` output tokens (at least 0) does not fit."""
    need = est.rates.bound_nanos(est.input_tokens_bound, max(out, 0))
    if budget_left is not None and need > budget_left:
        return Refusal("budget", need)
    price_need = int((Decimal(need) * markup).to_integral_value(ROUND_CEILING))
    return Refusal("wallet", price_need)


def _unlimited(
    request_id: str,
    customer: Customer | None,
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


class _Rollback(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error
