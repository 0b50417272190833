"""Reserve: before a call is forwarded, hold its worst case against the customer's limits.

One write transaction resolves the customer and its effective terms (its own settings
over its plan's), checks the model allow-list, admits the call against its rate limits
(`gateway.limits`), chooses the output bound the limits can pay for, and takes the hold
with guarded UPDATEs (`... WHERE spent + held + :x <= cap`): the statement itself is the
check, so concurrent reservations can never overspend, on SQLite or on PostgreSQL shared
by many instances. A customer without any limit needs no write.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from gateway.clock import Clock, month_of, to_ms
from gateway.db.database import Database
from gateway.db.models import Customer
from gateway.errors import ApiError, CustomerArchived, CustomerSuspended
from gateway.event_types import EventType
from gateway.ids import new_id
from gateway.ledger.accounts import Accounts
from gateway.ledger.crossings import Crossings
from gateway.ledger.events import EventRecorder, Payloads, RateLimited
from gateway.ledger.refusals import (
    Refusal,
    budget_error,
    log_refusal,
    model_not_allowed,
    rate_limited_error,
    wallet_error,
)
from gateway.ledger.sql import HotSql
from gateway.ledger.types import CallEstimate, PeriodState, Reservation, WalletState
from gateway.limits import Admission, Limiter, Subject, Throttled
from gateway.terms import Terms, model_allowed


@dataclass(frozen=True)
class HoldPlan:
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
        limiter: Limiter,
        recorder: EventRecorder,
        clock: Clock,
        *,
        hold_ttl_ms: int,
        min_output_tokens: int,
    ) -> None:
        self.db = db
        self.sql = sql
        self.accounts = accounts
        self.crossings = crossings
        self.limiter = limiter
        self.recorder = recorder
        self.clock = clock
        self.hold_ttl_ms = hold_ttl_ms
        self.min_output = min_output_tokens

    def reserve_sync(
        self, customer_ref: str | None, est: CallEstimate, key: Subject | None = None
    ) -> tuple[Reservation | ApiError, Payloads]:
        """The reservation, or the 402/403/429 refusing the call (with the events it
        recorded). Checks in order: customer status, model allow-list, rate limits (the
        app key's, then the customer's), money."""
        now = self.clock()
        now_ms = to_ms(now)
        period = month_of(now)
        request_id = new_id("req")
        subjects = [key] if key is not None and key.limits.any else []
        if customer_ref is None:
            if not subjects:
                return _unlimited(request_id, None, period, now_ms, est), []
            return self._reserve_limited(None, None, subjects, request_id, period, now_ms, est)

        customer, terms = self.accounts.customer_on_terms(customer_ref)
        if customer.status == "archived":
            raise CustomerArchived(
                f"Customer '{customer.id}' is archived.", customer_id=customer.id
            )
        if customer.status == "suspended":
            raise CustomerSuspended(
                f"Customer '{customer.id}' is suspended.", customer_id=customer.id
            )
        if not model_allowed(terms.allowed_models, est.provider, est.model):
            err = model_not_allowed(customer, terms, est)
            with self.db.tx():
                log_refusal(request_id, customer.id, est, err, now_ms)
            err.headers["FC-Request-Id"] = request_id
            return err, []
        if terms.limits.any:
            subjects.append(Subject(customer.id, "customer", terms.limits))
        if not subjects and customer.monthly_budget_nanos is None and not customer.prepaid:
            return _unlimited(request_id, customer, period, now_ms, est), []
        return self._reserve_limited(customer, terms, subjects, request_id, period, now_ms, est)

    def _reserve_limited(
        self,
        customer: Customer | None,
        terms: Terms | None,
        subjects: list[Subject],
        request_id: str,
        period: str,
        now_ms: int,
        est: CallEstimate,
    ) -> tuple[Reservation | ApiError, Payloads]:
        """One write transaction: rate limits, then the budget and wallet holds."""
        with self.db.tx():
            admission: Admission | None = None
            if subjects:
                admitted = self._admit(subjects, now_ms, est)
                if isinstance(admitted, Throttled):
                    return self._throttled(admitted, customer, terms, request_id, now_ms, est)
                admission = admitted
            if customer is None or (customer.monthly_budget_nanos is None and not customer.prepaid):
                return self._rate_limited_only(
                    customer, admission, request_id, period, now_ms, est
                ), []
            result, events = self._hold_money(customer, admission, request_id, period, now_ms, est)
            if isinstance(result, ApiError) and admission is not None:
                # Refused for money: the call counted toward its rate limits, but it is not
                # in flight.
                self.limiter.release(admission.slots)
                result.headers.update(admission.headers)
            return result, events

    def _admit(
        self, subjects: list[Subject], now_ms: int, est: CallEstimate
    ) -> Admission | Throttled:
        embeddings = est.endpoint == "embeddings"
        return self.limiter.admit(
            subjects,
            now_ms,
            input_tokens=est.input_tokens_bound,
            requested_output=0 if embeddings else est.requested_output_tokens,
            max_output=0 if embeddings else est.rates.max_output_tokens * est.output_multiplier,
            min_output=0 if embeddings else self.min_output * est.output_multiplier,
        )

    def _throttled(
        self,
        refused: Throttled,
        customer: Customer | None,
        terms: Terms | None,
        request_id: str,
        now_ms: int,
        est: CallEstimate,
    ) -> tuple[ApiError, Payloads]:
        err = rate_limited_error(refused, terms)
        events: Payloads = []
        if refused.notify and customer is not None:
            facts = RateLimited(
                refused.limit,
                refused.value,
                refused.retry_after_s,
                terms.plan_id if terms else None,
            )
            events.append(
                self.recorder.record(EventType.CUSTOMER_RATE_LIMITED, customer, facts, now_ms)
            )
        log_refusal(request_id, customer.id if customer else None, est, err, now_ms)
        err.headers["FC-Request-Id"] = request_id
        return err, events

    def _rate_limited_only(
        self,
        customer: Customer | None,
        admission: Admission | None,
        request_id: str,
        period: str,
        now_ms: int,
        est: CallEstimate,
    ) -> Reservation:
        """No money limit, but rate limits: a hold only if the call holds a concurrency slot
        (the hold's expiry gives the slot back if this instance dies)."""
        reservation = _unlimited(request_id, customer, period, now_ms, est)
        if admission is None:
            return reservation
        hold_id = None
        if admission.slots:
            hold_id = new_id("hold")
            self.sql.execute(
                "hold_insert",
                hold_id,
                request_id,
                customer.id if customer else None,
                period,
                0,
                0,
                now_ms,
                now_ms + self.hold_ttl_ms,
                " ".join(admission.slots),
            )
        reservation.hold_id = hold_id
        if admission.output_cap is not None and est.requested_output_tokens is None:
            reservation.max_output_tokens = max(admission.output_cap // est.output_multiplier, 1)
        _with_admission(reservation, admission)
        return reservation

    def _hold_money(
        self,
        customer: Customer,
        admission: Admission | None,
        request_id: str,
        period: str,
        now_ms: int,
        est: CallEstimate,
    ) -> tuple[Reservation | ApiError, Payloads]:
        cap = customer.monthly_budget_nanos
        markup = Decimal(customer.markup) if customer.markup is not None else est.rates.markup
        events: Payloads = []
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

        output_cap = admission.output_cap if admission is not None else None
        plan = plan_hold(est, markup, budget_left, wallet_left, self.min_output, output_cap)
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
                if cap is not None:  # give back the budget hold taken above
                    self.sql.execute("period_unhold", plan.cost_nanos, customer.id, period)
                return self._wallet_error(customer, wallet, plan.price_nanos), events
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
            " ".join(admission.slots) if admission is not None and admission.slots else None,
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
        if admission is not None:
            _with_admission(reservation, admission)
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
    output_cap: int | None = None,
) -> HoldPlan | Refusal:
    """Choose the output bound and the amounts to hold, or the limit that refuses the call.
    `output_cap` is what a token rate limit leaves for the output (all choices)."""
    rates = est.rates
    if est.endpoint == "embeddings":
        out = 0
    elif est.requested_output_tokens is not None:
        out = est.requested_output_tokens
    else:
        out = rates.max_output_tokens * est.output_multiplier
        if output_cap is not None:
            out = min(out, output_cap)
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
            return HoldPlan(per_choice, cost, price)
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


def _with_admission(reservation: Reservation, admission: Admission) -> None:
    reservation.rate_headers = admission.headers
    reservation.rate_second = admission.second
    reservation.rate_tokens = admission.tokens
    reservation.token_subjects = admission.token_subjects
    reservation.slots = admission.slots
