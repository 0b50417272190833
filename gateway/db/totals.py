"""What a ledger adds up to, asked the same way of SQLite and PostgreSQL.

`summarize` gives the totals `ringside backup` and `ringside restore` print. `CHECKS` are
the questions `ringside migrate` asks of both databases before it reports success: every
answer must be equal, to the nano-dollar. Plain DB-API connections (sqlite3 or psycopg),
plain SQL that both dialects run unchanged, no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


class Rows(Protocol):
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """sqlite3.Connection or psycopg.Connection: both answer `execute(sql)`."""

    def execute(self, sql: str, /) -> Rows: ...


def plain(value: Any) -> Any:
    """One value as both databases agree on it: PostgreSQL answers sums as numeric and
    booleans as bool, SQLite as integers."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


@dataclass(frozen=True)
class Check:
    name: str
    table: str
    sql: str
    keys: int = 0  # leading columns naming a row; 0: one row of totals

    def run(self, conn: Connection) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        answer: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for row in conn.execute(self.sql).fetchall():
            values = tuple(plain(v) for v in row)
            answer[values[: self.keys]] = values[self.keys :]
        return answer


_TOKENS = "input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens"
_TOKEN_SUMS = ", ".join(f"coalesce(sum({c}), 0)" for c in _TOKENS.split(", "))
_MONEY_SUMS = "coalesce(sum(cost_nanos), 0), coalesce(sum(price_nanos), 0)"

CHECKS: list[Check] = [
    Check("customers", "customer", "SELECT count(*) FROM customer"),
    Check(
        "customers by status and prepaid",
        "customer",
        "SELECT status, prepaid, count(*) FROM customer GROUP BY status, prepaid",
        2,
    ),
    Check(
        "customer budgets",
        "customer",
        "SELECT id, monthly_budget_nanos, low_balance_threshold_nanos, markup FROM customer",
        1,
    ),
    Check(
        "customer plans and limits",
        "customer",
        "SELECT id, plan_id, prepaid_own, limits, allowed_models FROM customer",
        1,
    ),
    Check(
        "plans",
        "plan",
        "SELECT id, monthly_budget_nanos, prepaid, low_balance_threshold_nanos, markup, limits,"
        " allowed_models FROM plan",
        1,
    ),
    Check(
        "wallet balances",
        "wallet",
        "SELECT customer_id, balance_nanos, held_nanos FROM wallet",
        1,
    ),
    Check(
        "wallet transactions",
        "wallet_transaction",
        "SELECT customer_id, type, count(*), sum(amount_nanos) FROM wallet_transaction"
        " GROUP BY customer_id, type",
        2,
    ),
    Check(
        "budget periods",
        "budget_period",
        "SELECT customer_id, period, spent_nanos, held_nanos FROM budget_period",
        2,
    ),
    Check(
        "month spend",
        "budget_period",
        "SELECT period, sum(spent_nanos), sum(held_nanos) FROM budget_period GROUP BY period",
        1,
    ),
    Check(
        "holds",
        "hold",
        "SELECT status, count(*), sum(budget_nanos), sum(wallet_nanos) FROM hold GROUP BY status",
        1,
    ),
    Check(
        "request log",
        "request_log",
        f"SELECT count(*), {_MONEY_SUMS}, {_TOKEN_SUMS} FROM request_log",
    ),
    Check(
        "request log by customer and status",
        "request_log",
        f"SELECT coalesce(customer_id, ''), status, count(*), {_MONEY_SUMS}, {_TOKEN_SUMS}"
        " FROM request_log GROUP BY coalesce(customer_id, ''), status",
        2,
    ),
    Check(
        "usage rollups",
        "usage_daily",
        f"SELECT coalesce(sum(requests), 0), {_MONEY_SUMS}, {_TOKEN_SUMS} FROM usage_daily",
    ),
    Check(
        "usage rollups by day and customer",
        "usage_daily",
        f"SELECT day, customer_id, sum(requests), {_MONEY_SUMS}, {_TOKEN_SUMS}"
        " FROM usage_daily GROUP BY day, customer_id",
        2,
    ),
    Check("events", "event", "SELECT type, count(*) FROM event GROUP BY type", 1),
    Check(
        "webhook endpoints",
        "webhook_endpoint",
        "SELECT id, enabled, deleted_ms FROM webhook_endpoint",
        1,
    ),
    Check(
        "webhook outbox",
        "webhook_delivery",
        "SELECT status, count(*), sum(attempts), min(next_attempt_ms) FROM webhook_delivery"
        " GROUP BY status",
        1,
    ),
    Check(
        "stripe sync state",
        "stripe_customer_state",
        "SELECT customer_id, carry_price_nanos, carry_cost_nanos, carry_tokens,"
        " last_pushed_day, last_pushed_ms FROM stripe_customer_state",
        1,
    ),
    Check(
        "stripe batches",
        "stripe_batch",
        "SELECT state, count(*), sum(value), sum(price_nanos), sum(cost_nanos), sum(tokens)"
        " FROM stripe_batch GROUP BY state",
        1,
    ),
    Check(
        "stripe usage marks",
        "stripe_usage_mark",
        "SELECT customer_id, day, price_nanos, cost_nanos, tokens, next_seq FROM stripe_usage_mark",
        2,
    ),
    Check("api keys", "api_key", "SELECT count(*), count(revoked_ms) FROM api_key"),
]


def compare(
    check: Check, a_name: str, a: Connection, b_name: str, b: Connection, *, limit: int = 10
) -> list[str]:
    """The differences between two databases' answers to one check, one line each."""
    left, right = check.run(a), check.run(b)
    problems: list[str] = []
    for key in sorted(left.keys() | right.keys(), key=repr):
        if left.get(key) != right.get(key):
            where = f" {_show(key)}" if key else ""
            problems.append(
                f"{check.name}{where}: {a_name} {_show(left.get(key))},"
                f" {b_name} {_show(right.get(key))}"
            )
    if len(problems) > limit:
        problems[limit:] = [f"{check.name}: ... and {len(problems) - limit} more"]
    return problems


def _show(values: Sequence[Any] | None) -> str:
    if values is None:
        return "(missing)"
    return ", ".join("null" if v is None else str(v) for v in values)


# ---------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    """The totals an operator recognises a ledger by (money in integer nano-USD)."""

    customers: int
    request_log_rows: int
    request_log_cost_nanos: int
    request_log_price_nanos: int
    usage_requests: int
    usage_cost_nanos: int
    usage_price_nanos: int
    wallets: int
    wallet_balance_nanos: int
    wallet_held_nanos: int
    wallet_transactions: int


_SUMMARY = [
    "SELECT count(*) FROM customer",
    f"SELECT count(*), {_MONEY_SUMS} FROM request_log",
    f"SELECT coalesce(sum(requests), 0), {_MONEY_SUMS} FROM usage_daily",
    "SELECT count(*), coalesce(sum(balance_nanos), 0), coalesce(sum(held_nanos), 0) FROM wallet",
    "SELECT count(*) FROM wallet_transaction",
]


def summarize(conn: Connection) -> Summary:
    values: list[int] = []
    for sql in _SUMMARY:
        values.extend(int(plain(v)) for v in conn.execute(sql).fetchall()[0])
    return Summary(*values)
