"""Money: prices, holds, reserve/settle, wallets, budgets, idempotency.

This package is the only place amounts are computed or moved. Its narrow API is what this
module exports; the rest of Ringside imports from here, never from the submodules.
"""

from gateway.ledger.amounts import (
    NANOS_PER_USD,
    nanos_to_decimal,
    nanos_to_header,
    nanos_to_json,
    nanos_to_text,
    parse_usd,
    usd_to_nanos,
)
from gateway.ledger.bounds import chat_input_bound, embeddings_input_bound
from gateway.ledger.holds import HoldKeeper
from gateway.ledger.idempotency import Idempotency, StoredResponse
from gateway.ledger.ledger import (
    CallEstimate,
    Ledger,
    Outcome,
    Reservation,
    Settlement,
    WalletView,
    validate_topup_amount,
)
from gateway.ledger.prices import Charge, ModelRates, PriceBook

__all__ = [
    "NANOS_PER_USD",
    "CallEstimate",
    "Charge",
    "HoldKeeper",
    "Idempotency",
    "Ledger",
    "ModelRates",
    "Outcome",
    "PriceBook",
    "Reservation",
    "Settlement",
    "StoredResponse",
    "WalletView",
    "chat_input_bound",
    "embeddings_input_bound",
    "nanos_to_decimal",
    "nanos_to_header",
    "nanos_to_json",
    "nanos_to_text",
    "parse_usd",
    "usd_to_nanos",
    "validate_topup_amount",
]
