"""Prepaid wallets: top-ups (which make a customer prepaid and re-arm its crossings) and
the wallet as the API shows it. Usage debits happen in settlement (`settle.py`)."""

from __future__ import annotations

from gateway.clock import Clock, to_ms
from gateway.db.database import Database
from gateway.db.models import Customer, Wallet, WalletTransaction
from gateway.errors import CustomerArchived
from gateway.event_types import EventType
from gateway.ids import new_id
from gateway.ledger.accounts import Accounts
from gateway.ledger.crossings import armed_after_topup
from gateway.ledger.events import EventRecorder, Payloads, WalletToppedUp
from gateway.ledger.types import WalletView


class Wallets:
    def __init__(
        self, db: Database, accounts: Accounts, recorder: EventRecorder, clock: Clock
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.recorder = recorder
        self.clock = clock

    def topup_sync(
        self, customer_ref: str, nanos: int, description: str | None
    ) -> tuple[tuple[int, WalletTransaction], Payloads]:
        """Credit `nanos` (already validated, > 0). Returns ((balance, transaction), events)."""
        now_ms = to_ms(self.clock())
        with self.db.tx():
            customer = self.accounts.customer(customer_ref)
            if customer.status == "archived":
                raise CustomerArchived(f"Customer '{customer.id}' is archived.")
            customer, _ = self.accounts.customer_on_terms(customer.id)
            if not customer.prepaid:  # a top-up makes the customer prepaid, whatever its plan
                Customer.update(prepaid=True, prepaid_own=True, updated_ms=now_ms).where(
                    Customer.id == customer.id
                ).execute()
                customer.prepaid = True
            wallet = self.accounts.wallet(customer.id, now_ms)
            balance = wallet.balance_nanos + nanos
            low_armed, empty_armed = armed_after_topup(
                wallet, customer.low_balance_threshold_nanos, balance
            )
            Wallet.update(
                balance_nanos=Wallet.balance_nanos + nanos,
                updated_ms=now_ms,
                low_armed=low_armed,
                empty_armed=empty_armed,
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
            event = self.recorder.record(
                EventType.WALLET_TOPPED_UP,
                customer,
                WalletToppedUp(amount_nanos=nanos, balance_nanos=balance, transaction_id=txn.id),
                now_ms,
            )
        return (balance, txn), [event]

    def view_sync(self, customer_ref: str, limit: int) -> WalletView:
        customer, _ = self.accounts.customer_on_terms(customer_ref)
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

    @staticmethod
    def state_sync(customer_ids: list[str]) -> dict[str, tuple[int, int]]:
        """(balance, held) nanos of the customers that have a wallet."""
        rows = Wallet.select().where(Wallet.customer_id.in_(customer_ids))
        return {r.customer_id: (r.balance_nanos, r.held_nanos) for r in rows}
