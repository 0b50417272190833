"""Read-only snapshots the operator's dashboard draws from.

Headless on purpose (no Textual, no Rich): every function here is synchronous Peewee
and runs on the database's reader threads through `gw.db.read(fn, ...)`, like the other
services. The dashboard only formats what comes back.

The customers snapshot is built for 10,000+ customers refreshed every second: one
grouped query joins customers, their plan, this month's budget row and the wallet, and the
month-to-date usage comes from the daily rollups, where the closed days of the month
are summed once and cached per day (yesterday is re-read every minute for late
settlements, older days every ten, one per refresh) and only today's rows are summed on
each refresh. At 10M request-log rows every refresh stays under 50 ms on SQLite and
PostgreSQL (bench/RESULTS.md, "big ledger").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import peewee as pw

from gateway.clock import Clock, day_of, month_of, to_ms
from gateway.db.database import Database
from gateway.db.models import (
    ApiKey,
    BudgetPeriod,
    Customer,
    Plan,
    RequestLog,
    UsageDaily,
    Wallet,
    WalletTransaction,
)
from gateway.ledger import Forecast, read_forecast
from gateway.terms import RateLimits, Terms, resolve_terms

# Closed days are re-aggregated at most this often, so a settlement that lands just
# after midnight (a long stream started yesterday) still shows up within a minute.
CLOSED_DAYS_TTL_MS = 60_000
# The days before yesterday only change when a spooled settlement is replayed after an
# outage: each is re-read this often, one day per refresh.
OLDER_DAYS_TTL_MS = 600_000
SERIES_SECONDS = 60  # requests/s sparkline: the last minute, per second
SERIES_MINUTES = 30  # spend/min sparkline: the last half hour, per minute
TAIL_LIMIT = 200


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One customer with its month-to-date money, as the customers table shows it.

    `prepaid`, `budget_nanos`, `markup` and `threshold_nanos` are the effective terms
    (the customer's own value, else its plan's: `gateway.terms.resolve_terms`); the
    `own_*` fields are the customer's own settings, what an edit form starts from.
    """

    id: str
    external_id: str
    name: str
    email: str | None
    status: str  # active | suspended | archived
    prepaid: bool
    budget_nanos: int | None
    markup: str | None
    threshold_nanos: int | None
    spent_nanos: int  # cost counted against this month's budget
    held_nanos: int  # budget held by calls in flight
    budget_exceeded: bool  # the ledger refused a call on the cap this month
    wallet_nanos: int | None  # None: no wallet (postpaid)
    wallet_held_nanos: int
    wallet_empty_flag: bool  # the ledger refused a call on the balance since the last top-up
    mtd_requests: int
    mtd_cost_nanos: int
    mtd_price_nanos: int
    plan_id: str | None = None
    plan_name: str | None = None
    own_budget_nanos: int | None = None
    own_markup: str | None = None
    own_threshold_nanos: int | None = None
    own_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def margin_nanos(self) -> int:
        return self.mtd_price_nanos - self.mtd_cost_nanos

    @property
    def budget_share(self) -> float | None:
        """Share of the monthly budget spent (a ratio for display, not money)."""
        if not self.budget_nanos:
            return None
        return self.spent_nanos / self.budget_nanos

    def state(self, warning_share: Decimal = Decimal("0.8")) -> str:
        """The status badge: archived, suspended, over budget, wallet empty or active."""
        if self.status in ("archived", "suspended"):
            return self.status
        budget = self.budget_nanos
        if budget is not None and (
            self.spent_nanos >= budget
            # The ledger refuses before the cap is hit to the nano (it reserves a call's
            # worst case) and flags the month. The flag survives a raised budget, so it
            # only counts while the spend is still near the cap.
            or (self.budget_exceeded and self.spent_nanos * 2 >= budget)
        ):
            return "over budget"
        if self.wallet_nanos is not None and (
            self.wallet_nanos <= 0 or (self.prepaid and self.wallet_empty_flag)
        ):
            return "wallet empty"
        return "active"

    def risk(self, warning_share: Decimal = Decimal("0.8")) -> str | None:
        """Why an operator should look at this customer now, or None."""
        if self.status == "archived":
            return None
        state = self.state(warning_share)
        if state in ("over budget", "wallet empty"):
            return state
        budget = self.budget_nanos
        if budget:
            # Integer math: this runs for every customer on every overview refresh.
            num, den = _ratio(warning_share)
            if self.spent_nanos * den >= budget * num:
                return f"{self.spent_nanos * 100 // budget}% of budget"
        if (
            self.wallet_nanos is not None
            and self.threshold_nanos is not None
            and self.wallet_nanos < self.threshold_nanos
        ):
            return "wallet below threshold"
        return None


_RATIOS: dict[Decimal, tuple[int, int]] = {}


def _ratio(share: Decimal) -> tuple[int, int]:
    found = _RATIOS.get(share)
    if found is None:
        found = _RATIOS[share] = share.as_integer_ratio()
    return found


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    price_nanos: int = 0

    @property
    def margin_nanos(self) -> int:
        return self.price_nanos - self.cost_nanos

    @property
    def margin_pct(self) -> float | None:
        if not self.price_nanos:
            return None
        return self.margin_nanos * 100 / self.price_nanos

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_nanos + other.cost_nanos,
            self.price_nanos + other.price_nanos,
        )


@dataclass(frozen=True, slots=True)
class Series:
    """Recent activity from the request log: per second and per minute buckets."""

    requests_per_s: list[int]  # oldest first, SERIES_SECONDS values
    spend_per_min_nanos: list[int]  # price billed per minute, oldest first
    last_minute_requests: int
    last_minute_errors: int  # upstream errors and cut streams
    last_minute_refused: int  # refusals: 402 (money), 403 (model, status), 429 (rate limits)
    # The same refusals by HTTP status, ((status, count), ...) in status order.
    last_minute_refused_by_status: tuple[tuple[int, int], ...] = ()

    def refused_with(self, http_status: int) -> int:
        """Refusals with this HTTP status in the last minute."""
        return sum(n for status, n in self.last_minute_refused_by_status if status == http_status)


@dataclass(frozen=True, slots=True)
class RequestRow:
    id: str
    created_ms: int
    customer_id: str | None
    customer_name: str | None
    provider: str
    model: str
    status: str  # ok | error | refused | cut
    http_status: int
    error_code: str | None
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    price_nanos: int
    latency_ms: int

    @classmethod
    def from_event(cls, row: dict[str, Any], customer_name: str | None = None) -> RequestRow:
        """From the row the ledger publishes with `request.metered`."""
        return cls(
            id=row["id"],
            created_ms=int(row.get("created_ms") or 0),
            customer_id=row.get("customer_id"),
            customer_name=customer_name,
            provider=str(row.get("provider", "")),
            model=str(row.get("model", "")),
            status=str(row.get("status", "ok")),
            http_status=int(row.get("http_status") or 200),
            error_code=row.get("error_code"),
            input_tokens=int(row.get("input_tokens") or 0),
            output_tokens=int(row.get("output_tokens") or 0),
            cost_nanos=int(row.get("cost_nanos") or 0),
            price_nanos=int(row.get("price_nanos") or 0),
            latency_ms=int(row.get("latency_ms") or 0),
        )


@dataclass(frozen=True, slots=True)
class UsageLine:
    key: str  # a model ("mock/mock-fast") or a day ("2026-04-01")
    requests: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    price_nanos: int

    @property
    def margin_nanos(self) -> int:
        return self.price_nanos - self.cost_nanos


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: str
    created_ms: int
    type: str
    amount_nanos: int
    balance_after_nanos: int
    description: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    name: str
    prefix: str
    created_ms: int
    last_used_ms: int | None
    revoked_ms: int | None


@dataclass(frozen=True)
class Overview:
    now_ms: int
    period: str
    today: Totals
    month: Totals
    series: Series
    customers: list[CustomerRow]

    def top_by_cost(self, n: int = 8) -> list[CustomerRow]:
        spenders = [c for c in self.customers if c.mtd_cost_nanos > 0]
        # Ties by name, then id: the same data always ranks the same way.
        return sorted(spenders, key=lambda c: (-c.mtd_cost_nanos, c.name, c.id))[:n]

    def at_risk(
        self, warning_share: Decimal = Decimal("0.8"), n: int = 50
    ) -> list[tuple[CustomerRow, str]]:
        out = [(c, r) for c in self.customers if (r := c.risk(warning_share)) is not None]
        # Refused customers first, then the ones closest to their cap.
        out.sort(
            key=lambda cr: (
                cr[1] not in ("over budget", "wallet empty"),
                -(cr[0].budget_share or 0),
                cr[0].name,
                cr[0].id,
            )
        )
        return out[:n]


@dataclass(frozen=True)
class CustomerDetail:
    customer: CustomerRow
    created_ms: int
    stripe_customer_id: str | None
    by_model: list[UsageLine]
    by_day: list[UsageLine]
    requests: list[RequestRow]
    transactions: list[TransactionRow]
    terms: Terms | None = None  # the effective terms, with their sources and plan
    forecast: Forecast | None = None  # the spend forecast (`gateway.ledger.forecast`)


# ---------------------------------------------------------------------------- reader


def _month_start(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-01")


@dataclass(frozen=True)
class _Sums:
    """Usage summed per customer, (requests, cost, price), with the totals of the same rows."""

    per_customer: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)

    def __add__(self, other: _Sums) -> _Sums:
        return self._combine(other, 1)

    def __sub__(self, other: _Sums) -> _Sums:
        return self._combine(other, -1)

    def replace(self, old: _Sums, new: _Sums) -> _Sums:
        """`self - old + new`, in one copy."""
        return self._combine(old, -1, new)

    def _combine(self, other: _Sums, sign: int, then: _Sums | None = None) -> _Sums:
        per = dict(self.per_customer)
        t = self.totals
        for part, k in ((other, sign), (then, 1)):
            if part is None or not part.per_customer:
                continue
            for cid, (req, cost, price) in part.per_customer.items():
                a = per.get(cid, (0, 0, 0))
                per[cid] = (a[0] + k * req, a[1] + k * cost, a[2] + k * price)
            o = part.totals
            t = Totals(
                t.requests + k * o.requests,
                t.input_tokens + k * o.input_tokens,
                t.output_tokens + k * o.output_tokens,
                t.cost_nanos + k * o.cost_nanos,
                t.price_nanos + k * o.price_nanos,
            )
        return _Sums(per, t)


@dataclass(frozen=True)
class _ClosedDays:
    """The month's closed days (before today), summed per customer, cached per day.

    A refresh re-reads only what may have changed: yesterday, where late settlements (a
    stream started before midnight) still land, every CLOSED_DAYS_TTL_MS; each day before
    it, which changes only when a spooled settlement is replayed after an outage, once it
    is OLDER_DAYS_TTL_MS old, one day per refresh. A day that closes is read once.

    The first read sums the days before yesterday in one query (`base`): the cheapest way
    to a first answer. When the base goes stale its days are re-read one per refresh into
    `rebuild`, and replace it once they are all in; from then on every day is its own.
    """

    month: str = ""
    base_days: frozenset[str] = frozenset()
    base_ms: int = 0
    base: _Sums = field(default_factory=_Sums)
    rebuild: dict[str, tuple[int, _Sums]] = field(default_factory=dict)
    days: dict[str, tuple[int, _Sums]] = field(default_factory=dict)  # day -> (read at, sums)
    sums: _Sums = field(default_factory=_Sums)  # base + days


_NO_LIMITS = RateLimits()


def _limits(stored: str | None) -> RateLimits:
    """A customer's own rate limits from the raw JSON column (most customers have none)."""
    if stored is None:
        return _NO_LIMITS
    try:
        return RateLimits.from_json(json.loads(stored))
    except ValueError:
        return _NO_LIMITS


def _tuples(query: Any) -> list[tuple[Any, ...]]:
    """A Peewee query's rows as plain tuples (typed: Peewee's own hints are not)."""
    return list(query.tuples())


def _fetch(query: Any) -> list[tuple[Any, ...]]:
    """Raw rows of a Peewee query: skips per-value conversion (a third of the time at 10k
    rows). Callers convert the few fields that need it (booleans come back as 0/1 on
    SQLite)."""
    sql, params = query.sql()
    return list(query.model._meta.database.execute_sql(sql, params).fetchall())


def _usage_query(where: Any) -> Any:
    U = UsageDaily
    return (
        U.select(
            U.customer_id,
            pw.fn.SUM(U.requests),
            pw.fn.SUM(U.input_tokens),
            pw.fn.SUM(U.output_tokens),
            pw.fn.SUM(U.cost_nanos),
            pw.fn.SUM(U.price_nanos),
        )
        .where(where)
        .group_by(U.customer_id)
    )


def _sums(where: Any) -> _Sums:
    return _Sums(*_per_customer(_fetch(_usage_query(where))))


def _sums_by_day(days: list[str]) -> dict[str, _Sums]:
    """Each day's sums per customer, in one query grouped by (day, customer)."""
    U = UsageDaily
    query = (
        U.select(
            U.day,
            U.customer_id,
            pw.fn.SUM(U.requests),
            pw.fn.SUM(U.input_tokens),
            pw.fn.SUM(U.output_tokens),
            pw.fn.SUM(U.cost_nanos),
            pw.fn.SUM(U.price_nanos),
        )
        .where(U.day.in_(days))
        .group_by(U.day, U.customer_id)
    )
    rows: dict[str, list[tuple[Any, ...]]] = {day: [] for day in days}
    for day, *rest in _fetch(query):
        rows[day].append(tuple(rest))
    return {day: _Sums(*_per_customer(found)) for day, found in rows.items()}


def _per_customer(rows: list[tuple[Any, ...]]) -> tuple[dict[str, tuple[int, int, int]], Totals]:
    per: dict[str, tuple[int, int, int]] = {}
    req_t = tin_t = tout_t = cost_t = price_t = 0
    for cid, req, tin, tout, cost, price in rows:
        req, cost, price = int(req or 0), int(cost or 0), int(price or 0)
        per[cid] = (req, cost, price)
        req_t += req
        tin_t += int(tin or 0)
        tout_t += int(tout or 0)
        cost_t += cost
        price_t += price
    return per, Totals(req_t, tin_t, tout_t, cost_t, price_t)


class SnapshotReader:
    """Stateful only for caches; safe to call from any reader thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = _ClosedDays()

    # ------------------------------------------------------------------ customers
    def _closed_days(self, now: datetime, ids: list[str] | None = None) -> _Sums:
        """This month's days before today, summed per customer (see `_ClosedDays`).

        With `ids`, a cache that would need a read is left alone: those customers' days
        are summed directly (an index range each), so narrowing stays cheap.
        """
        now_ms = to_ms(now)
        month, first, today = month_of(now), _month_start(now), day_of(now)
        start = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC)
        closed = [
            (start + timedelta(days=i)).strftime("%Y-%m-%d")
            for i in range(now.astimezone(UTC).day - 1)
        ]
        with self._lock:
            c = self._closed
        reset = c.month != month or any(d >= today for d in (*c.base_days, *c.days))
        if reset:
            c = _ClosedDays(month)  # a new month (or the clock went back): start over
        known = c.base_days | c.days.keys()
        missing = [d for d in closed if d not in known]
        yesterday = closed[-1] if closed else None
        reread: list[str] = []
        if yesterday in c.days and now_ms - c.days[yesterday][0] >= CLOSED_DAYS_TTL_MS:
            reread.append(yesterday)
        rebuild_next = None
        if c.base_days and now_ms - c.base_ms >= OLDER_DAYS_TTL_MS:
            rebuild_next = min(c.base_days - c.rebuild.keys(), default=None)
        else:
            stale = [
                d
                for d, (read_ms, _) in c.days.items()
                if d != yesterday and now_ms - read_ms >= OLDER_DAYS_TTL_MS
            ]
            if stale:
                reread.append(min(stale, key=lambda d: c.days[d][0]))
        if not missing and not reread and rebuild_next is None and not reset:
            return c.sums
        U = UsageDaily
        if ids is not None:
            return _sums(U.customer_id.in_(ids) & (U.day >= first) & (U.day < today))
        base_days, base_ms, base, sums = c.base_days, c.base_ms, c.base, c.sums
        rebuild, days = dict(c.rebuild), dict(c.days)
        reads: dict[str, _Sums] = {}
        if not known and len(missing) > 1:  # cold: the days before yesterday in one query
            base_days, base_ms = frozenset(missing[:-1]), now_ms
            base = sums = _sums((U.day >= first) & (U.day < missing[-1]))
            missing = missing[-1:]
        wanted = [*missing, *reread, *([rebuild_next] if rebuild_next else [])]
        if len(wanted) == 1:  # the usual refresh: one day, read like today's
            reads[wanted[0]] = _sums(U.day == wanted[0])
        elif wanted:
            reads.update(_sums_by_day(wanted))
        for day, read in reads.items():
            if day == rebuild_next:
                rebuild[day] = (now_ms, read)
                continue
            sums = sums.replace(days[day][1], read) if day in days else sums + read
            days[day] = (now_ms, read)
        if base_days and rebuild.keys() >= base_days:  # every base day re-read: swap
            sums = sums - base
            for day, (read_ms, read) in rebuild.items():
                sums = sums + read
                days[day] = (read_ms, read)
            base_days, base, rebuild = frozenset(), _Sums(), {}
        fresh = _ClosedDays(month, base_days, base_ms, base, rebuild, days, sums)
        with self._lock:
            self._closed = fresh
        return sums

    def _today(
        self, now: datetime, ids: list[str] | None = None
    ) -> tuple[dict[str, tuple[int, int, int]], Totals]:
        U = UsageDaily
        where = U.day == day_of(now)
        if ids is not None:
            where = where & U.customer_id.in_(ids)
        return _per_customer(_fetch(_usage_query(where)))

    def totals(self, now: datetime) -> tuple[Totals, Totals]:
        """(today, month to date) over every customer: one single-row aggregate."""
        closed = self._closed_days(now)
        U = UsageDaily
        row = _fetch(
            U.select(
                pw.fn.SUM(U.requests),
                pw.fn.SUM(U.input_tokens),
                pw.fn.SUM(U.output_tokens),
                pw.fn.SUM(U.cost_nanos),
                pw.fn.SUM(U.price_nanos),
            ).where(U.day == day_of(now))
        )[0]
        today = Totals(*(int(v or 0) for v in row))
        return today, closed.totals + today

    def customers(
        self, now: datetime, ids: Iterable[str] | None = None
    ) -> tuple[list[CustomerRow], Totals, Totals]:
        """(customer rows, today's totals, month-to-date totals).

        `ids` narrows the rows (the dashboard re-reads only the customers the event bus
        named); the totals then cover those customers only.
        """
        wanted = list(ids) if ids is not None else None
        if wanted is not None and not wanted:
            return [], Totals(), Totals()
        closed = self._closed_days(now, wanted)
        today, today_totals = self._today(now, wanted)
        period = month_of(now)
        C, B, W, P = Customer, BudgetPeriod, Wallet, Plan
        query = (
            C.select(
                C.id,
                C.external_id,
                C.name,
                C.email,
                C.status,
                C.prepaid,
                C.prepaid_own,
                C.monthly_budget_nanos,
                C.markup,
                C.low_balance_threshold_nanos,
                C.limits,
                B.spent_nanos,
                B.held_nanos,
                B.exceeded,
                W.balance_nanos,
                W.held_nanos,
                W.empty_armed,
                P.id,
                P.name,
                P.prepaid,
                P.monthly_budget_nanos,
                P.markup,
                P.low_balance_threshold_nanos,
            )
            .join(B, pw.JOIN.LEFT_OUTER, on=((B.customer_id == C.id) & (B.period == period)))
            .switch(C)
            .join(W, pw.JOIN.LEFT_OUTER, on=(W.customer_id == C.id))
            .switch(C)
            .join(P, pw.JOIN.LEFT_OUTER, on=(P.id == C.plan_id))
            # A stable order, so equal sort keys in the dashboard never shuffle.
            .order_by(C.name, C.id)
        )
        if wanted is not None:
            query = query.where(C.id.in_(wanted))
        out: list[CustomerRow] = []
        zero = (0, 0, 0)
        closed_per = closed.per_customer
        month_totals = today_totals
        for (
            cid,
            ext,
            name,
            email,
            status,
            own_prepaid,
            prepaid_own,
            own_budget,
            own_markup,
            own_threshold,
            own_limits,
            spent,
            held,
            exceeded,
            balance,
            wheld,
            empty_armed,
            plan_id,
            plan_name,
            plan_prepaid,
            plan_budget,
            plan_markup,
            plan_threshold,
        ) in _fetch(query):
            a = closed_per.get(cid, zero)
            b = today.get(cid, zero)
            if wanted is not None and a is not zero:
                month_totals = month_totals + Totals(a[0], 0, 0, a[1], a[2])
            # The effective terms, by `resolve_terms`' rules (the customer's own value,
            # else its plan's), inline: this runs for every customer on each full read.
            prepaid = bool(own_prepaid) if prepaid_own else None
            if plan_id is None:
                budget, markup, threshold = own_budget, own_markup, own_threshold
            else:
                budget = own_budget if own_budget is not None else plan_budget
                markup = own_markup if own_markup is not None else plan_markup
                threshold = own_threshold if own_threshold is not None else plan_threshold
                if prepaid is None and plan_prepaid is not None:
                    prepaid = bool(plan_prepaid)
            prepaid = bool(prepaid)
            out.append(
                CustomerRow(
                    id=cid,
                    external_id=ext,
                    name=name,
                    email=email,
                    status=status,
                    prepaid=prepaid,
                    budget_nanos=budget,
                    markup=markup,
                    threshold_nanos=threshold,
                    spent_nanos=int(spent or 0),
                    held_nanos=int(held or 0),
                    budget_exceeded=bool(exceeded),
                    wallet_nanos=(int(balance or 0) if (balance is not None or prepaid) else None),
                    wallet_held_nanos=int(wheld or 0),
                    wallet_empty_flag=empty_armed is not None and not empty_armed,
                    mtd_requests=a[0] + b[0],
                    mtd_cost_nanos=a[1] + b[1],
                    mtd_price_nanos=a[2] + b[2],
                    plan_id=plan_id,
                    plan_name=plan_name,
                    own_budget_nanos=own_budget,
                    own_markup=own_markup,
                    own_threshold_nanos=own_threshold,
                    own_limits=_NO_LIMITS if own_limits is None else _limits(own_limits),
                )
            )
        if wanted is None:
            month_totals = closed.totals + today_totals
        return out, today_totals, month_totals

    # ------------------------------------------------------------------ activity
    def series(self, now: datetime) -> Series:
        """Per-second requests for the last minute and per-minute spend for the last half hour.

        One grouped query over the request log's `created_ms` index; the window is
        bounded (30 minutes) whatever the table size.
        """
        now_ms = to_ms(now)
        now_s = now_ms // 1000
        now_min = now_ms // 60_000
        since_ms = (now_min - SERIES_MINUTES + 1) * 60_000
        R = RequestLog
        # Integer division on both SQLite and PostgreSQL (bigint / int). The divisor is
        # written into the SQL: as a bound parameter ($1 in SELECT, $2 in GROUP BY)
        # PostgreSQL would not see the two expressions as the same one.
        second = R.created_ms / pw.SQL("1000")
        rows = (
            R.select(
                second.alias("s"),
                R.status,
                R.http_status,
                pw.fn.COUNT(R.id),
                pw.fn.SUM(R.price_nanos),
            )
            .where(R.created_ms >= since_ms)
            .group_by(second, R.status, R.http_status)
        )
        per_s = [0] * SERIES_SECONDS
        per_min = [0] * SERIES_MINUTES
        last_req = last_err = last_ref = 0
        refused_by: dict[int, int] = {}
        for s, status, http_status, count, price in _tuples(rows):
            s = int(s)
            count = int(count or 0)
            age_s = now_s - s
            if 0 <= age_s < SERIES_SECONDS:
                if status != "refused":
                    per_s[SERIES_SECONDS - 1 - age_s] += count
                if status == "refused":
                    last_ref += count
                    code = int(http_status or 0)
                    refused_by[code] = refused_by.get(code, 0) + count
                elif status in ("error", "cut"):
                    last_err += count
                    last_req += count
                else:
                    last_req += count
            age_m = now_min - s // 60
            if 0 <= age_m < SERIES_MINUTES:
                per_min[SERIES_MINUTES - 1 - age_m] += int(price or 0)
        return Series(
            per_s, per_min, last_req, last_err, last_ref, tuple(sorted(refused_by.items()))
        )

    def overview(self, now: datetime) -> Overview:
        customers, today, month = self.customers(now)
        return Overview(
            now_ms=to_ms(now),
            period=month_of(now),
            today=today,
            month=month,
            series=self.series(now),
            customers=customers,
        )

    # ------------------------------------------------------------------ requests
    @staticmethod
    def requests(
        limit: int = TAIL_LIMIT,
        customer_id: str | None = None,
        status: str | None = None,
        since_ms: int | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[RequestRow]:
        """The newest requests first, with the customer's name.

        `customer_ids` (an empty list matches nothing) serves the dashboard's filter,
        which resolves what the operator typed to ids first.
        """
        R, C = RequestLog, Customer
        q = (
            R.select(
                R.id,
                R.created_ms,
                R.customer_id,
                C.name,
                R.provider,
                R.model,
                R.status,
                R.http_status,
                R.error_code,
                R.input_tokens,
                R.output_tokens,
                R.cost_nanos,
                R.price_nanos,
                R.latency_ms,
            )
            .join(C, pw.JOIN.LEFT_OUTER, on=(C.id == R.customer_id))
            .order_by(R.created_ms.desc(), R.id.desc())
            .limit(limit)
        )
        if customer_id:
            q = q.where(R.customer_id == customer_id)
        if customer_ids is not None:
            if not customer_ids:
                return []
            q = q.where(R.customer_id.in_(list(customer_ids)))
        if status:
            q = q.where(R.status == status)
        if since_ms is not None:
            q = q.where(R.created_ms >= since_ms)
        return [RequestRow(*row) for row in _tuples(q)]

    # ------------------------------------------------------------------ one customer
    def customer_detail(self, customer_id: str, now: datetime, days: int = 30) -> CustomerDetail:
        rows, _, _ = self.customers(now, ids=[customer_id])
        if not rows:
            from gateway.errors import CustomerNotFound

            raise CustomerNotFound(f"No customer with id '{customer_id}'.", param="id")
        c = Customer.get_by_id(customer_id)
        plan = Plan.get_or_none(Plan.id == c.plan_id) if c.plan_id else None
        U = UsageDaily
        first_day = min(_month_start(now), (now - timedelta(days=days - 1)).strftime("%Y-%m-%d"))

        def usage(group: Any, where: Any) -> list[UsageLine]:
            q = (
                U.select(
                    group,
                    pw.fn.SUM(U.requests),
                    pw.fn.SUM(U.input_tokens),
                    pw.fn.SUM(U.output_tokens),
                    pw.fn.SUM(U.cost_nanos),
                    pw.fn.SUM(U.price_nanos),
                )
                .where(U.customer_id == customer_id, where)
                .group_by(group)
            )
            return [UsageLine(str(k), *(int(x or 0) for x in rest)) for k, *rest in _tuples(q)]

        by_model = usage(U.model, U.day >= _month_start(now))
        by_model.sort(key=lambda u: (-u.cost_nanos, u.key))
        by_day = usage(U.day, U.day >= first_day)
        by_day.sort(key=lambda u: u.key, reverse=True)
        T = WalletTransaction
        txns = [
            TransactionRow(*t)
            for t in _tuples(
                T.select(
                    T.id,
                    T.created_ms,
                    T.type,
                    T.amount_nanos,
                    T.balance_after_nanos,
                    T.description,
                    T.request_id,
                )
                .where(T.customer_id == customer_id)
                .order_by(T.created_ms.desc(), T.id.desc())
                .limit(50)
            )
        ]
        return CustomerDetail(
            customer=rows[0],
            created_ms=c.created_ms,
            stripe_customer_id=c.stripe_customer_id,
            by_model=by_model,
            by_day=by_day,
            requests=self.requests(50, customer_id=customer_id),
            transactions=txns,
            terms=resolve_terms(c, plan),
            forecast=read_forecast(
                customer_id,
                to_ms(now),
                budget_nanos=rows[0].budget_nanos,
                prepaid=rows[0].prepaid,
            ),
        )

    # ------------------------------------------------------------------ keys
    @staticmethod
    def keys(include_revoked: bool = False) -> list[KeyRow]:
        K = ApiKey
        q = K.select(K.id, K.name, K.prefix, K.created_ms, K.last_used_ms, K.revoked_ms).order_by(
            K.created_ms.desc()
        )
        if not include_revoked:
            q = q.where(K.revoked_ms.is_null())
        return [KeyRow(*row) for row in _tuples(q)]


def customer_names(ids: Iterable[str]) -> dict[str, str]:
    """Names for the customers the live request tail mentions (one query)."""
    wanted = list({i for i in ids if i})
    if not wanted:
        return {}
    q = Customer.select(Customer.id, Customer.name).where(Customer.id.in_(wanted))
    return {str(cid): str(name) for cid, name in _tuples(q)}


# ---------------------------------------------------------------------------- service


class SnapshotService:
    """The dashboard's reads, as awaitables on the gateway's loop (reader threads)."""

    def __init__(self, db: Database, clock: Clock, warning_share: Decimal) -> None:
        self._db = db
        self._clock = clock
        self._reader = SnapshotReader()
        self.warning_share = warning_share

    def now(self) -> datetime:
        return self._clock()

    async def overview(self) -> Overview:
        return await self._db.read(self._reader.overview, self.now())

    async def customers(
        self, ids: Iterable[str] | None = None
    ) -> tuple[list[CustomerRow], Totals, Totals]:
        """(customer rows, today's totals, month-to-date totals); `ids` narrows the rows."""
        return await self._db.read(self._reader.customers, self.now(), ids)

    async def overview_for(self, customers: Sequence[CustomerRow]) -> Overview:
        """The overview around customer rows the caller already holds (the dashboard keeps
        them current from the event bus): only the totals and the series are read."""
        now = self.now()
        today, month, series = await self._activity(now)
        return Overview(
            now_ms=to_ms(now),
            period=month_of(now),
            today=today,
            month=month,
            series=series,
            customers=list(customers),
        )

    async def activity(self) -> tuple[Totals, Totals, Series]:
        """(today, month to date, series): the overview's numbers beside the customers."""
        return await self._activity(self.now())

    async def _activity(self, now: datetime) -> tuple[Totals, Totals, Series]:
        reader = self._reader

        def read() -> tuple[Totals, Totals, Series]:
            today, month = reader.totals(now)
            return today, month, reader.series(now)

        return await self._db.read(read)

    async def requests(
        self,
        limit: int = TAIL_LIMIT,
        customer_ids: list[str] | None = None,
        status: str | None = None,
    ) -> list[RequestRow]:
        return await self._db.read(
            self._reader.requests, limit, customer_ids=customer_ids, status=status
        )

    async def customer_detail(self, customer_id: str) -> CustomerDetail:
        return await self._db.read(self._reader.customer_detail, customer_id, self.now())

    async def keys(self, include_revoked: bool = False) -> list[KeyRow]:
        return await self._db.read(SnapshotReader.keys, include_revoked)

    async def customer_names(self, ids: Iterable[str]) -> dict[str, str]:
        return await self._db.read(customer_names, list(ids))
