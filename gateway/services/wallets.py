"""Wallet top-ups and views, shared by the HTTP API and the dashboard."""

from __future__ import annotations

from typing import Any

from gateway.audit import SYSTEM, Actor, record
from gateway.events import EventBus
from gateway.jsoncodec import encode
from gateway.ledger import Idempotency, Ledger, StoredResponse, nanos_to_json
from gateway.serializers import transaction_to_api
from gateway.services import validation as v


class WalletService:
    def __init__(self, ledger: Ledger, idempotency: Idempotency, bus: EventBus) -> None:
        self.ledger = ledger
        self.idempotency = idempotency
        self.bus = bus

    async def topup(
        self,
        customer_ref: str,
        body: Any,
        *,
        idempotency_key: str | None = None,
        raw_body: bytes | None = None,
        actor: Actor = SYSTEM,
    ) -> StoredResponse:
        body = v.require_object(body)
        v.reject_unknown(body, {"amount_usd", "description"})
        if "amount_usd" not in body:
            from gateway.errors import InvalidAmount

            raise InvalidAmount("Missing required parameter: amount_usd.", param="amount_usd")
        nanos = v.topup_amount(body["amount_usd"])
        description = v.string(body, "description", max_len=500)
        published: list[dict[str, Any]] = []

        def operation() -> tuple[int, bytes]:
            (balance, txn), events = self.ledger.topup_sync(customer_ref, nanos, description)
            published.extend(events)
            record(
                actor,
                "wallet.topup",
                txn.created_ms,
                target_id=txn.id,
                customer_id=txn.customer_id,
                changes={"balance_usd": [balance - nanos, balance]},
            )
            return 200, encode(
                {
                    "object": "wallet",
                    "customer_id": txn.customer_id,
                    "balance_usd": nanos_to_json(balance),
                    "transaction": transaction_to_api(txn),
                }
            )

        # Scope keys by the resolved customer, so the same key sent once with the `cus_` id
        # and once with the external id is still one top-up.
        customer_id = (await self.ledger.db.read(self.ledger.resolve_customer, customer_ref)).id
        scope = f"topup:{customer_id}"
        result = await self.idempotency.run(
            idempotency_key, scope, raw_body if raw_body is not None else encode(body), operation
        )
        for ev in published:
            self.bus.publish("event.recorded", event=ev)
        if not result.replayed:
            self.bus.publish("customer.changed", customer_id=customer_id)
        return result

    async def retrieve(self, customer_ref: str, limit: int = 100) -> dict[str, Any]:
        view = await self.ledger.wallet(customer_ref, limit)
        return {
            "object": "wallet",
            "customer_id": view.customer_id,
            "prepaid": view.prepaid,
            "balance_usd": nanos_to_json(view.balance_nanos),
            "held_usd": nanos_to_json(view.held_nanos),
            "available_usd": nanos_to_json(view.balance_nanos - view.held_nanos),
            "low_balance_threshold_usd": nanos_to_json(view.low_balance_threshold_nanos),
            "transactions": [transaction_to_api(t) for t in view.transactions],
        }
