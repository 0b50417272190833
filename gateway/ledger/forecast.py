"""Spend forecast: when a customer's budget and wallet run out at its recent burn, and what
its month will end at.

`spend_forecast` is pure arithmetic over plain numbers (integer nano-USD and epoch
milliseconds, exact rationals in between, never floats); `read_forecast` reads those
numbers for one customer (four small indexed reads) and runs it. The customers service
answers it on `GET /v1/customers/{id}`, the crossings put it in `wallet.low` and
`budget.warning` (inside the money transaction), the dashboard shows it on the customer
detail.

**The burn rate.** The last 7 UTC days - today so far and the 6 days before it - from the
daily usage rollups. Each day contributes its cost and price and the time the customer
was observed in it (its *exposure*: 24 h, today's hours so far, less on the day of the
first call). Days are weighted by age with a decay of 0.7 per day: today 1, yesterday
0.7, then 0.49, 0.343, ... (a half-life of about 1.94 days), and

    rate = sum(weight x amount) / sum(weight x exposure)

So a steady burn reads exactly as itself, a partial day counts only for the hours it
covers (today at 00:05 barely moves the rate), days before the first call are not read
as zero spend, and a customer whose traffic doubled two days ago is forecast at close to
the new level rather than the weekly mean. Why a half-life of two days: a week of equal
weights answers a change of traffic days late (the wallet that now drains in 2 days
still reads "5 days"); one day alone swings with every quiet night and weekend. 0.7 is
the round decay closest to a two-day half-life, and keeps every weight an exact decimal
(0.7^k, held here as integers in millionths).

**When it is null.** Every field is null while the customer has less than one day of
traffic (its first logged call less than 24 h ago): a new customer gets no guess. Then:

- `budget_exhausted_ms`: when this month's spent + held cost reaches the effective
  monthly budget at the cost rate. Null without a budget, at a zero rate, or when it
  would not happen before the month ends (the budget resets on the 1st, UTC). A budget
  already used up answers the current time.
- `wallet_empty_ms`: when the available balance (balance - held) reaches 0 at the price
  rate. Null when the customer is not prepaid, at a zero rate, or beyond a year. A wallet
  already empty answers the current time.
- `month_end_cost_nanos` / `month_end_price_nanos`: this month's cost and price so far
  (the rollups, as `/v1/usage` sums them) plus the rate times the time left in the month.

Times are rounded up to the whole second (the current time, down).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import peewee as pw

from gateway.clock import day_of, from_ms, month_of, to_ms
from gateway.db.models import BudgetPeriod, RequestLog, UsageDaily, Wallet

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WINDOW_DAYS = 7
# 0.7 ** age in days, in millionths: exact integers.
WEIGHTS_PPM = (1_000_000, 700_000, 490_000, 343_000, 240_100, 168_070, 117_649)
MIN_HISTORY_MS = DAY_MS  # less traffic than this: no forecast
HORIZON_MS = 365 * DAY_MS  # a wallet lasting longer than this: null


@dataclass(frozen=True)
class Forecast:
    """A customer's spend forecast as of `now_ms`. The four answered fields are null as
    the module docstring says; the rates (nano-USD per hour, rounded) are for display."""

    now_ms: int
    budget_exhausted_ms: int | None = None
    wallet_empty_ms: int | None = None
    month_end_cost_nanos: int | None = None
    month_end_price_nanos: int | None = None
    cost_nanos_per_hour: int | None = None
    price_nanos_per_hour: int | None = None

    @property
    def known(self) -> bool:
        """False while the customer has too little history for a forecast."""
        return self.month_end_cost_nanos is not None


def next_month_ms(now_ms: int) -> int:
    """The start of the next calendar month (UTC) after `now_ms`."""
    now = from_ms(now_ms)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return to_ms(datetime(year, month, 1, tzinfo=UTC))


def _midnight_ms(now_ms: int) -> int:
    return now_ms - now_ms % DAY_MS


def _up_to_second(ms: int) -> int:
    return -(-ms // 1000) * 1000


def _when(now_ms: int, remaining: int, rate: Fraction) -> int | None:
    """When `remaining` nanos are used up at `rate` nanos per ms (None at rate 0)."""
    if remaining <= 0:
        return now_ms - now_ms % 1000
    if rate <= 0:
        return None
    ms = Fraction(remaining) / rate
    return _up_to_second(now_ms + -(-ms.numerator // ms.denominator))


def burn_rates(
    now_ms: int, first_call_ms: int, days: Mapping[str, tuple[int, int]]
) -> tuple[Fraction, Fraction]:
    """(cost, price) in nano-USD per millisecond: the age-weighted, exposure-weighted
    mean of the last 7 UTC days (see the module docstring). `days` maps "YYYY-MM-DD"
    to (cost, price) nanos; days outside the window are ignored."""
    midnight = _midnight_ms(now_ms)
    observed_from = max(first_call_ms, midnight - (WINDOW_DAYS - 1) * DAY_MS)
    cost = price = exposure = 0
    for age, weight in enumerate(WEIGHTS_PPM):
        start = midnight - age * DAY_MS
        seen = min(start + DAY_MS, now_ms) - max(start, observed_from)
        if seen <= 0:
            continue
        day_cost, day_price = days.get(day_of(from_ms(start)), (0, 0))
        cost += weight * day_cost
        price += weight * day_price
        exposure += weight * seen
    if exposure <= 0:
        return Fraction(0), Fraction(0)
    return Fraction(cost, exposure), Fraction(price, exposure)


def spend_forecast(
    *,
    now_ms: int,
    first_call_ms: int | None,
    days: Mapping[str, tuple[int, int]],
    budget_nanos: int | None,
    budget_used_nanos: int,
    wallet_available_nanos: int | None,
) -> Forecast:
    """The forecast from plain numbers.

    `days`: (cost, price) nanos per UTC day "YYYY-MM-DD", covering this month and the
    last 7 days (more is ignored); `budget_nanos`: the effective monthly budget (None:
    none); `budget_used_nanos`: this month's spent + held cost; `wallet_available_nanos`:
    balance - held, None when the customer is not prepaid.
    """
    if first_call_ms is None or now_ms - first_call_ms < MIN_HISTORY_MS:
        return Forecast(now_ms)
    cost_rate, price_rate = burn_rates(now_ms, first_call_ms, days)
    month_end = next_month_ms(now_ms)
    left_ms = month_end - now_ms
    month = month_of(from_ms(now_ms))
    today = day_of(from_ms(now_ms))
    spent_cost = spent_price = 0
    for day, (day_cost, day_price) in days.items():
        if day.startswith(month) and day <= today:
            spent_cost += day_cost
            spent_price += day_price

    budget_at = None
    if budget_nanos is not None:
        budget_at = _when(now_ms, budget_nanos - budget_used_nanos, cost_rate)
        if budget_at is not None and budget_at >= month_end:
            budget_at = None  # not this month: the budget resets first
    wallet_at = None
    if wallet_available_nanos is not None:
        wallet_at = _when(now_ms, wallet_available_nanos, price_rate)
        if wallet_at is not None and wallet_at - now_ms > HORIZON_MS:
            wallet_at = None
    return Forecast(
        now_ms=now_ms,
        budget_exhausted_ms=budget_at,
        wallet_empty_ms=wallet_at,
        month_end_cost_nanos=spent_cost + round(cost_rate * left_ms),
        month_end_price_nanos=spent_price + round(price_rate * left_ms),
        cost_nanos_per_hour=round(cost_rate * HOUR_MS),
        price_nanos_per_hour=round(price_rate * HOUR_MS),
    )


def read_forecast(
    customer_id: str,
    now_ms: int,
    *,
    budget_nanos: int | None,
    prepaid: bool,
    pending: tuple[str, int, int] | None = None,
) -> Forecast:
    """Read one customer's numbers and forecast; call on a reader thread or inside an
    open write transaction (it sees that transaction's own writes).

    `budget_nanos` and `prepaid` are the effective terms. `pending` is a settlement's
    (day, cost, price) not yet in the rollups of the transaction it runs in.
    """
    first = (
        RequestLog.select(pw.fn.MIN(RequestLog.created_ms))
        .where(RequestLog.customer_id == customer_id)
        .scalar()
    )
    first_ms = None if first is None else int(first)
    if first_ms is None or now_ms - first_ms < MIN_HISTORY_MS:
        return Forecast(now_ms)
    now = from_ms(now_ms)
    window_start = day_of(now - timedelta(days=WINDOW_DAYS - 1))
    since = min(window_start, now.strftime("%Y-%m-01"))
    U = UsageDaily
    rows: Any = (
        U.select(U.day, pw.fn.SUM(U.cost_nanos), pw.fn.SUM(U.price_nanos))
        .where(U.customer_id == customer_id, U.day >= since)
        .group_by(U.day)
        .tuples()
    )
    days: dict[str, tuple[int, int]] = {
        str(day): (int(cost or 0), int(price or 0)) for day, cost, price in rows
    }
    if pending is not None:
        day, cost, price = pending
        before = days.get(day, (0, 0))
        days[day] = (before[0] + cost, before[1] + price)
    used = 0
    if budget_nanos is not None:
        period = (
            BudgetPeriod.select(BudgetPeriod.spent_nanos, BudgetPeriod.held_nanos)
            .where(BudgetPeriod.customer_id == customer_id, BudgetPeriod.period == month_of(now))
            .tuples()
            .first()
        )
        used = 0 if period is None else int(period[0]) + int(period[1])
    available = None
    if prepaid:
        wallet = (
            Wallet.select(Wallet.balance_nanos, Wallet.held_nanos)
            .where(Wallet.customer_id == customer_id)
            .tuples()
            .first()
        )
        available = 0 if wallet is None else int(wallet[0]) - int(wallet[1])
    return spend_forecast(
        now_ms=now_ms,
        first_call_ms=first_ms,
        days=days,
        budget_nanos=budget_nanos,
        budget_used_nanos=used,
        wallet_available_nanos=available,
    )
