"""Monthly statements: one customer's wallet and usage over one UTC month, reconciled.

What a statement says, exactly (integer nano-USD throughout):

* `opening_balance_usd`: the wallet balance at the first instant of the month (UTC): the
  sum of every wallet transaction the customer has before it. A wallet starts at 0 and
  moves only by transactions, so this is the `balance_after` of the last transaction
  before the month (0 when there is none) - and it stays exact even where transactions
  were not recorded in time order (a settlement replayed from the spool after an outage
  carries the time it settled, not the time it committed).
* `topups_usd`: the month's `topup` transactions (manual top-ups and auto top-ups).
* `adjustments_usd`: the month's other credits and debits (type `adjustment`, signed).
* `wallet_debits_usd`: what the month's `usage` transactions took out of the wallet, as a
  positive amount.
* `closing_balance_usd` = opening + topups + adjustments - wallet_debits: the balance at
  the first instant of the next month, and the next month's opening balance.
* `usage`: the month's usage from the daily rollups, the source `/v1/usage` reads, so it
  equals `/v1/usage?customer_id=..&since=YYYY-MM-01&until=<last day>` field for field.
  A call counts in the month (and day) it started, as in `/v1/usage`.

The usage's price and the wallet debits are different numbers on purpose: a customer
that is not prepaid pays nothing from a wallet; a wallet debit never takes more than the
wallet holds (`ledger.settle.wallet_debit`); and a debit is dated when the call settled,
so a call that starts before midnight on the last day and ends after it counts as usage
in one month and as a debit in the next. The statement shows both.

Everything is read in one SQL statement, so the totals, the breakdowns and the balances
come from one consistent snapshot of the ledger.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.clock import Clock, iso, month_of
from gateway.db.database import Database
from gateway.errors import InvalidRequest
from gateway.ledger import Ledger, nanos_to_json, nanos_to_text

_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
MIN_YEAR, MAX_YEAR = 1970, 9998  # as /v1/usage's since/until
DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)

# One row per day, in order; the columns are the keys of `by_day`.
DAY_COLUMNS = (
    "day",
    "requests",
    "input_tokens",
    "output_tokens",
    "total_cost_usd",
    "total_price_usd",
    "margin_usd",
    "opening_balance_usd",
    "topups_usd",
    "adjustments_usd",
    "wallet_debits_usd",
    "closing_balance_usd",
)


@dataclass(frozen=True, slots=True)
class Month:
    """A UTC month: [start, end)."""

    label: str  # "2026-04"
    start: datetime
    end: datetime  # the first instant of the next month

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp()) * 1000

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp()) * 1000


def parse_month(value: str | None, now: datetime) -> Month:
    """`YYYY-MM` (1970-01 to 9998-12), or the month of `now` when absent."""
    text = month_of(now) if value is None or value == "" else value
    invalid = InvalidRequest(
        f"month must be a month as YYYY-MM (2026-04), from {MIN_YEAR}-01 to {MAX_YEAR}-12.",
        param="month",
    )
    if not _MONTH.fullmatch(text):
        raise invalid
    year, month = int(text[:4]), int(text[5:])
    if not (MIN_YEAR <= year <= MAX_YEAR and 1 <= month <= 12):
        raise invalid
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Month(text, start, end)


def statement_sql(customer_id: str, month: Month, param: str = "?") -> tuple[str, list[Any]]:
    """One statement, one snapshot: (part, day, key, day_number, *seven sums) rows.

    part 'u': a rollup row of the month (day, model; requests, input, output, cached,
    reasoning tokens, cost, price); 'w': the month's wallet transactions per UTC day
    (day_number: days since 1970-01-01) and type (count, signed amount); 'o': every
    transaction before the month (count, signed amount).
    """
    zeros = ", 0, 0, 0, 0, 0"
    sql = (
        "SELECT 'u' AS part, day, model AS k, 0 AS day_number, requests, input_tokens, "
        "output_tokens, cached_tokens, reasoning_tokens, cost_nanos, price_nanos "
        f"FROM usage_daily WHERE customer_id = {param} AND day >= {param} AND day < {param} "
        "UNION ALL "
        f"SELECT 'w', '', type, created_ms / {DAY_MS}, COUNT(*), SUM(amount_nanos){zeros} "
        f"FROM wallet_transaction WHERE customer_id = {param} AND created_ms >= {param} "
        f"AND created_ms < {param} GROUP BY type, created_ms / {DAY_MS} "
        "UNION ALL "
        f"SELECT 'o', '', '', 0, COUNT(*), COALESCE(SUM(amount_nanos), 0){zeros} "
        f"FROM wallet_transaction WHERE customer_id = {param} AND created_ms < {param}"
    )
    params: list[Any] = [
        customer_id,
        month.start.strftime("%Y-%m-%d"),
        month.end.strftime("%Y-%m-%d"),
        customer_id,
        month.start_ms,
        month.end_ms,
        customer_id,
        month.start_ms,
    ]
    return sql, params


def _money(cost: int, price: int) -> dict[str, Any]:
    return {
        "total_cost_usd": nanos_to_json(cost),
        "total_price_usd": nanos_to_json(price),
        "margin_usd": nanos_to_json(price - cost),
    }


@dataclass(slots=True)
class DayLine:
    """One day of a statement (nano-USD): usage that started that day, wallet movements
    dated that day, and the balance before and after them."""

    day: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0
    price: int = 0
    opening: int = 0
    topups: int = 0
    adjustments: int = 0
    debits: int = 0

    @property
    def closing(self) -> int:
        return self.opening + self.topups + self.adjustments - self.debits

    def cells(self) -> list[Any]:
        """The CSV row, in DAY_COLUMNS order; money as exact decimal text."""
        money = [self.cost, self.price, self.price - self.cost, self.opening, self.topups]
        money += [self.adjustments, self.debits, self.closing]
        return [
            self.day,
            self.requests,
            self.input_tokens,
            self.output_tokens,
            *(nanos_to_text(x) for x in money),
        ]

    def to_api(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            **_money(self.cost, self.price),
            "opening_balance_usd": nanos_to_json(self.opening),
            "topups_usd": nanos_to_json(self.topups),
            "adjustments_usd": nanos_to_json(self.adjustments),
            "wallet_debits_usd": nanos_to_json(self.debits),
            "closing_balance_usd": nanos_to_json(self.closing),
        }


@dataclass(slots=True)
class Statement:
    """A customer's month, in nano-USD. `closing` = opening + topups + adjustments - debits."""

    customer_id: str
    month: Month
    opening: int = 0
    topups: int = 0
    adjustments: int = 0
    debits: int = 0
    transactions: int = 0
    # requests, input, output, cached, reasoning tokens, cost, price
    usage: list[int] = field(default_factory=lambda: [0] * 7)
    # "fc:provider/model" -> requests, input, output tokens, cost, price
    models: dict[str, list[int]] = field(default_factory=dict)
    days: list[DayLine] = field(default_factory=list)

    @property
    def closing(self) -> int:
        return self.opening + self.topups + self.adjustments - self.debits

    def to_api(self) -> dict[str, Any]:
        requests, input_tokens, output_tokens, cached, reasoning, cost, price = self.usage
        return {
            "object": "statement",
            "customer_id": self.customer_id,
            "month": self.month.label,
            "since": iso(self.month.start),
            "until": iso(self.month.end),
            "opening_balance_usd": nanos_to_json(self.opening),
            "topups_usd": nanos_to_json(self.topups),
            "adjustments_usd": nanos_to_json(self.adjustments),
            "wallet_debits_usd": nanos_to_json(self.debits),
            "wallet_transactions": self.transactions,
            "usage": {
                "requests": requests,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_tokens": cached,
                "reasoning_tokens": reasoning,
                **_money(cost, price),
            },
            "by_model": [
                {
                    "model": name,
                    "requests": m[0],
                    "input_tokens": m[1],
                    "output_tokens": m[2],
                    **_money(m[3], m[4]),
                }
                for name, m in sorted(self.models.items())
            ],
            "by_day": [d.to_api() for d in self.days],
            "closing_balance_usd": nanos_to_json(self.closing),
        }


def build_statement(customer_id: str, month: Month, rows: list[tuple[Any, ...]]) -> Statement:
    """A statement from `statement_sql`'s rows."""
    out = Statement(customer_id, month)
    days: dict[str, DayLine] = {}
    for part, day, key, day_number, *sums in rows:
        values = [int(x or 0) for x in sums]
        if part == "u":
            requests, input_tokens, output_tokens, _, _, cost, price = values
            for i, x in enumerate(values):
                out.usage[i] += x
            model = out.models.setdefault(f"fc:{key}", [0] * 5)
            for i, x in enumerate((requests, input_tokens, output_tokens, cost, price)):
                model[i] += x
            d = days.setdefault(str(day), DayLine(str(day)))
            d.requests += requests
            d.input_tokens += input_tokens
            d.output_tokens += output_tokens
            d.cost += cost
            d.price += price
        elif part == "w":
            count, amount = values[0], values[1]
            out.transactions += count
            label = (_EPOCH + timedelta(days=int(day_number))).isoformat()
            d = days.setdefault(label, DayLine(label))
            if key == "topup":
                d.topups += amount
                out.topups += amount
            elif key == "usage":
                d.debits -= amount
                out.debits -= amount
            else:  # "adjustment", and any type added later: signed, as recorded
                d.adjustments += amount
                out.adjustments += amount
        else:
            out.opening = values[1]
    balance = out.opening
    for label in sorted(days):
        d = days[label]
        d.opening = balance
        balance = d.closing
        out.days.append(d)
    assert balance == out.closing
    return out


class StatementService:
    def __init__(self, db: Database, ledger: Ledger, clock: Clock) -> None:
        self.db = db
        self.ledger = ledger
        self.clock = clock

    async def statement(self, customer_ref: str, month: str | None) -> dict[str, Any]:
        """The statement as the API answers it; `month` is YYYY-MM or None (this month,
        by the business clock)."""
        return (await self.db.read(self.compute_sync, customer_ref, month)).to_api()

    async def csv(self, customer_ref: str, month: str | None) -> AsyncIterator[bytes]:
        """The statement's days as CSV: a header row (DAY_COLUMNS), then one row per day
        with usage or wallet movements. A bad month or an unknown customer raises here,
        before the first byte (a 400 or 404, not a broken download)."""
        statement = await self.db.read(self.compute_sync, customer_ref, month)

        async def lines() -> AsyncIterator[bytes]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(DAY_COLUMNS)
            for day in statement.days:
                writer.writerow(day.cells())
            yield buffer.getvalue().encode()

        return lines()

    def compute_sync(self, customer_ref: str, month_text: str | None) -> Statement:
        month = parse_month(month_text, self.clock())
        customer_id = self.ledger.resolve_customer(customer_ref).id
        sql, params = statement_sql(customer_id, month, self.db.peewee.param)
        execute_sql: Callable[[str, list[Any]], Any] = self.db.peewee.execute_sql  # untyped
        rows: list[tuple[Any, ...]] = execute_sql(sql, params).fetchall()
        return build_statement(customer_id, month, rows)
