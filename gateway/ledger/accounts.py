"""The rows money is held against: the paying customer, its month's budget row, its wallet.

The budget and wallet rows are created on first use and read row-locked on PostgreSQL
(`FOR UPDATE`, see `sql.py`); SQLite's `BEGIN IMMEDIATE` already serialises writers.
"""

from __future__ import annotations

from gateway.db.models import BudgetPeriod, Customer
from gateway.errors import CustomerNotFound
from gateway.ledger.sql import HotSql
from gateway.ledger.types import PeriodState, WalletState
from gateway.terms import Terms, resolve_terms


class Accounts:
    def __init__(self, sql: HotSql) -> None:
        self.sql = sql

    def customer(self, ref: str) -> Customer:
        """By `cus_` id or by external id. Raises CustomerNotFound."""
        row = self.sql.customer(ref)
        if row is None:
            raise CustomerNotFound(
                f"No customer with id or external_id '{ref}'.", param="FC-Customer"
            )
        return row

    def customer_on_terms(self, ref: str) -> tuple[Customer, Terms]:
        """The customer with its effective terms (its own settings over its plan's): the
        returned row carries the effective budget, prepaid, markup and low-balance
        threshold, and is never saved."""
        row = self.customer(ref)
        plan = self.sql.plan(row.plan_id) if row.plan_id else None
        terms = resolve_terms(row, plan)
        if plan is None:
            return row, terms
        effective = Customer(
            **{
                **row.__data__,
                "monthly_budget_nanos": terms.monthly_budget_nanos,
                "prepaid": terms.prepaid,
                "markup": terms.markup,
                "low_balance_threshold_nanos": terms.low_balance_threshold_nanos,
            }
        )
        return effective, terms

    def period(self, customer_id: str, period: str) -> PeriodState:
        """The month's budget row, created on first use."""
        row = self.sql.one("period_select", customer_id, period)
        if row is None:
            self.sql.execute("period_insert", customer_id, period, False, False)
            row = self.sql.one("period_select", customer_id, period)
        assert row is not None
        return PeriodState(period, int(row[0]), int(row[1]), bool(row[2]), bool(row[3]))

    def wallet(self, customer_id: str, now_ms: int) -> WalletState:
        """The wallet row, created (empty, both crossings armed) on first use."""
        row = self.sql.one("wallet_select", customer_id)
        if row is None:
            self.sql.execute("wallet_insert", customer_id, True, True, now_ms)
            row = self.sql.one("wallet_select", customer_id)
        assert row is not None
        return WalletState(int(row[0]), int(row[1]), bool(row[2]), bool(row[3]))

    @staticmethod
    def month_state(customer_ids: list[str], period: str) -> dict[str, tuple[str, int, int]]:
        """(period, spent, held) nanos per customer; zeros for a month not yet used."""
        rows = BudgetPeriod.select().where(
            BudgetPeriod.customer_id.in_(customer_ids), BudgetPeriod.period == period
        )
        found = {r.customer_id: (period, r.spent_nanos, r.held_nanos) for r in rows}
        return {cid: found.get(cid, (period, 0, 0)) for cid in customer_ids}
