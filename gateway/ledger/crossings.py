"""Threshold crossings: budget.warning, budget_exceeded, wallet.low, wallet.empty.

Each crossing fires once: a flag on the budget row (`warned`, `exceeded`, per month) or
on the wallet (`low_armed`, `empty_armed`) is flipped by one guarded UPDATE, and only the
writer whose UPDATE changed the row records the event. Top-ups and cap changes re-arm
the crossings they put back ahead. All of it runs inside the money transaction.
`wallet.low` and `budget.warning` carry the customer's spend forecast (`forecast.py`),
read in that transaction only when the crossing fires.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from gateway.clock import day_of, from_ms
from gateway.db.models import BudgetPeriod, Customer, Wallet
from gateway.event_types import EventType
from gateway.ledger.accounts import Accounts
from gateway.ledger.events import BudgetCrossed, EventRecorder, Payloads, WalletCrossed
from gateway.ledger.forecast import Forecast, read_forecast
from gateway.ledger.refusals import Refusal
from gateway.ledger.spool import SettleRecord
from gateway.ledger.sql import HotSql
from gateway.ledger.types import PeriodState, WalletState


class Crossings:
    def __init__(
        self, sql: HotSql, accounts: Accounts, recorder: EventRecorder, warning_share: Decimal
    ) -> None:
        self.sql = sql
        self.accounts = accounts
        self.recorder = recorder
        self.warning_share = warning_share

    # ------------------------------------------------------------------ settlement
    def after_budget_spend(
        self, r: SettleRecord, before: PeriodState, spent: int, now_ms: int
    ) -> Payloads:
        """A settlement brought the month's spend to `spent`."""
        cap = r.budget_nanos
        if cap is None:
            return []
        warn = not before.warned and spent >= cap * self.warning_share
        exceed = not before.exceeded and spent >= cap
        if not (warn or exceed):
            return []  # the common case: no crossing, no extra reads
        customer, _ = self.accounts.customer_on_terms(r.customer_id or "")  # effective terms
        events = []
        if warn and _claim_budget_flag(BudgetPeriod.warned, customer.id, before.period):
            facts = self._budget_facts(customer, before.period, spent, warning=True)
            facts = replace(facts, forecast=_forecast(r, customer.id, now_ms))
            events.append(self.recorder.record(EventType.BUDGET_WARNING, customer, facts, now_ms))
        if exceed and _claim_budget_flag(BudgetPeriod.exceeded, customer.id, before.period):
            events.append(
                self.recorder.record(
                    EventType.BUDGET_EXCEEDED,
                    customer,
                    self._budget_facts(customer, before.period, spent),
                    now_ms,
                )
            )
        return events

    def after_wallet_debit(
        self, r: SettleRecord, wallet: WalletState, after: int, now_ms: int
    ) -> Payloads:
        """A settlement debited the wallet from `wallet.balance_nanos` to `after`."""
        before = wallet.balance_nanos
        threshold = r.low_balance_threshold_nanos
        low = threshold is not None and wallet.low_armed and before >= threshold > after
        empty = wallet.empty_armed and after <= 0 < before
        if not (low or empty):
            return []
        customer, _ = self.accounts.customer_on_terms(r.customer_id or "")  # effective terms
        events = []
        updates: dict[Any, Any] = {}
        if low:
            updates[Wallet.low_armed] = False
            facts = replace(
                _wallet_facts(customer, after), forecast=_forecast(r, customer.id, now_ms)
            )
            events.append(self.recorder.record(EventType.WALLET_LOW, customer, facts, now_ms))
        if empty:
            updates[Wallet.empty_armed] = False
            events.append(
                self.recorder.record(
                    EventType.WALLET_EMPTY, customer, _wallet_facts(customer, after), now_ms
                )
            )
        if updates:
            Wallet.update(updates).where(Wallet.customer_id == customer.id).execute()
        return events

    # ------------------------------------------------------------------ refusal
    def on_refusal(
        self,
        refusal: Refusal,
        customer: Customer,
        period_row: PeriodState | None,
        wallet: WalletState | None,
        now_ms: int,
    ) -> Payloads:
        """The limit that stops this customer now: tell the operator once (per month for
        the budget, until the next top-up for the wallet)."""
        if refusal.limit == "budget":
            assert period_row is not None
            if period_row.exceeded or not _claim_budget_flag(
                BudgetPeriod.exceeded, customer.id, period_row.period
            ):
                return []
            spent = period_row.spent_nanos
            budget = self._budget_facts(customer, period_row.period, spent)
            return [self.recorder.record(EventType.BUDGET_EXCEEDED, customer, budget, now_ms)]
        if wallet is None or not wallet.empty_armed:
            return []
        changed = (
            Wallet.update(empty_armed=False)
            .where(
                Wallet.customer_id == customer.id,
                Wallet.empty_armed == True,  # noqa: E712 - a SQL expression
            )
            .execute()
        )
        if not changed:
            return []
        empty = _wallet_facts(customer, wallet.balance_nanos)
        return [self.recorder.record(EventType.WALLET_EMPTY, customer, empty, now_ms)]

    # ------------------------------------------------------------------ re-arming
    def rearm_budget(self, customer_id: str, cap: int | None, period: str) -> None:
        """A changed cap re-arms the month's crossings that the new cap puts back ahead.

        Call inside the write transaction that changes the cap.
        """
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

    # ------------------------------------------------------------------ facts
    def _budget_facts(
        self, customer: Customer, period: str, spent: int, *, warning: bool = False
    ) -> BudgetCrossed:
        return BudgetCrossed(
            period=period,
            budget_nanos=customer.monthly_budget_nanos or 0,
            spent_nanos=spent,
            warning_share=self.warning_share if warning else None,
        )


def armed_after_topup(
    wallet: WalletState, threshold: int | None, balance: int
) -> tuple[bool, bool]:
    """(low_armed, empty_armed) once a top-up brought the balance to `balance`: a crossing
    re-arms once the balance is back above it."""
    return (
        wallet.low_armed or threshold is None or balance >= threshold,
        wallet.empty_armed or balance > 0,
    )


def _forecast(r: SettleRecord, customer_id: str, now_ms: int) -> Forecast:
    """The customer's spend forecast as this settlement leaves it (its cost and price are
    not in the daily rollups yet: settlement rolls them up after the crossings). Only a
    crossing reads it, so a call that crosses nothing pays nothing for it."""
    pending = None
    if r.usage is not None:
        pending = (day_of(from_ms(r.started_ms)), r.cost_nanos, r.price_nanos)
    return read_forecast(
        customer_id,
        now_ms,
        budget_nanos=r.budget_nanos,
        prepaid=r.prepaid or r.wallet_hold_nanos > 0,
        pending=pending,
    )


def _wallet_facts(customer: Customer, balance: int) -> WalletCrossed:
    return WalletCrossed(
        balance_nanos=balance, low_balance_threshold_nanos=customer.low_balance_threshold_nanos
    )


def _claim_budget_flag(flag: Any, customer_id: str, period: str) -> bool:
    """Set a once-per-month crossing flag; only the writer that flips it fires the event."""
    return bool(
        BudgetPeriod.update({flag: True})
        .where(
            BudgetPeriod.customer_id == customer_id,
            BudgetPeriod.period == period,
            flag == False,  # noqa: E712 - a SQL expression
        )
        .execute()
        == 1
    )
