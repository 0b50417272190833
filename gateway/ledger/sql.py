"""The ledger's hot-path statements as plain parameterised SQL.

Every proxied call runs these. Building them through Peewee's query builder cost more
than the database work itself (measured: ~60% of the writer thread's time), so they are
written once here, in SQL that SQLite (>= 3.35, for RETURNING) and PostgreSQL share.
"""

from __future__ import annotations

import sqlite3

from gateway.db.database import Database
from gateway.db.models import Customer, Plan
from gateway.db.statements import Statements

_CUSTOMER_COLUMNS = ", ".join(f'"{f.column_name}"' for f in Customer._meta.sorted_fields)
_PLAN_COLUMNS = ", ".join(f'"{f.column_name}"' for f in Plan._meta.sorted_fields)

STATEMENTS = {
    "customer_by_id": f"SELECT {_CUSTOMER_COLUMNS} FROM customer WHERE id = ?",
    "customer_by_external_id": f"SELECT {_CUSTOMER_COLUMNS} FROM customer WHERE external_id = ?",
    "plan_by_id": f"SELECT {_PLAN_COLUMNS} FROM plan WHERE id = ?",
    "period_insert": (
        "INSERT INTO budget_period (customer_id, period, spent_nanos, held_nanos, warned, "
        "exceeded) VALUES (?, ?, 0, 0, ?, ?) ON CONFLICT DO NOTHING"
    ),
    "period_select": (
        "SELECT spent_nanos, held_nanos, warned, exceeded FROM budget_period "
        "WHERE customer_id = ? AND period = ?"
    ),
    "period_hold": (
        "UPDATE budget_period SET held_nanos = held_nanos + ? "
        "WHERE customer_id = ? AND period = ? AND spent_nanos + held_nanos + ? <= ?"
    ),
    "period_unhold": (
        "UPDATE budget_period SET held_nanos = held_nanos - ? WHERE customer_id = ? AND period = ?"
    ),
    "period_settle": (
        "UPDATE budget_period SET spent_nanos = spent_nanos + ?, held_nanos = held_nanos - ? "
        "WHERE customer_id = ? AND period = ? "
        "RETURNING spent_nanos, held_nanos, warned, exceeded"
    ),
    "wallet_insert": (
        "INSERT INTO wallet (customer_id, balance_nanos, held_nanos, low_armed, empty_armed, "
        "updated_ms) VALUES (?, 0, 0, ?, ?, ?) ON CONFLICT DO NOTHING"
    ),
    "wallet_select": (
        "SELECT balance_nanos, held_nanos, low_armed, empty_armed FROM wallet WHERE customer_id = ?"
    ),
    "wallet_hold": (
        "UPDATE wallet SET held_nanos = held_nanos + ? "
        "WHERE customer_id = ? AND balance_nanos - held_nanos - ? >= 0"
    ),
    "wallet_settle": (
        "UPDATE wallet SET balance_nanos = balance_nanos - ?, held_nanos = held_nanos - ?, "
        "updated_ms = ? WHERE customer_id = ? "
        "RETURNING balance_nanos, held_nanos, low_armed, empty_armed"
    ),
    "hold_insert": (
        "INSERT INTO hold (id, request_id, customer_id, period, budget_nanos, wallet_nanos, "
        "status, created_ms, expires_ms, slots) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)"
    ),
    "hold_settle": "UPDATE hold SET status = 'settled' WHERE id = ? AND status = 'active'",
    "wallet_spent_since": (
        "SELECT COALESCE(SUM(-amount_nanos), 0) FROM wallet_transaction "
        "WHERE customer_id = ? AND type = 'usage' AND created_ms >= ?"
    ),
    "txn_insert": (
        "INSERT INTO wallet_transaction (id, customer_id, type, amount_nanos, "
        "balance_after_nanos, request_id, description, created_ms) "
        "VALUES (?, ?, 'usage', ?, ?, ?, ?, ?)"
    ),
    "request_insert": (
        "INSERT INTO request_log (id, customer_id, provider, model, endpoint, stream, status, "
        "http_status, error_code, input_tokens, cached_tokens, cache_write_tokens, "
        "output_tokens, reasoning_tokens, cost_nanos, price_nanos, held_nanos, over_hold, "
        "latency_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?)"
    ),
    "rollup_upsert": (
        "INSERT INTO usage_daily (day, customer_id, model, requests, input_tokens, "
        "cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_nanos, "
        "price_nanos) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (day, customer_id, model) DO UPDATE SET "
        "requests = usage_daily.requests + 1, "
        "input_tokens = usage_daily.input_tokens + excluded.input_tokens, "
        "cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens, "
        "cache_write_tokens = usage_daily.cache_write_tokens + excluded.cache_write_tokens, "
        "output_tokens = usage_daily.output_tokens + excluded.output_tokens, "
        "reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens, "
        "cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos, "
        "price_nanos = usage_daily.price_nanos + excluded.price_nanos"
    ),
}

# Row locks for the read-then-guarded-update sequences (PostgreSQL).
_LOCKED = ("period_select", "wallet_select")


class HotSql(Statements):
    def __init__(self, db: Database) -> None:
        if db.is_sqlite and sqlite3.sqlite_version_info < (3, 35, 0):
            raise RuntimeError(
                f"Ringside needs SQLite 3.35 or newer (this Python has {sqlite3.sqlite_version})"
            )
        super().__init__(db, STATEMENTS, _LOCKED)

    def customer(self, ref: str) -> Customer | None:
        """By `cus_` id first, then by external id, as FC-Customer allows either."""
        row = None
        if ref.startswith("cus_"):
            row = self.one("customer_by_id", ref)
        if row is None:
            row = self.one("customer_by_external_id", ref)
        if row is None:
            return None
        fields = Customer._meta.sorted_fields
        return Customer(**{f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)})

    def plan(self, plan_id: str) -> Plan | None:
        row = self.one("plan_by_id", plan_id)
        if row is None:
            return None
        fields = Plan._meta.sorted_fields
        return Plan(**{f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)})
