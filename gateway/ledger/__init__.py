"""Money: prices, holds, reserve/settle, wallets, budgets, idempotency.

This package is the only place amounts are computed or moved. Its narrow API is what this
module exports; the rest of Ringside imports from here, never from the submodules.

Layout: `ledger.py` (the `Ledger` entry object, wiring the parts below), `types.py` (the
data), `reserve.py`, `settle.py`, `crossings.py` (threshold events and their flags),
`wallets.py`, `expiry.py` (hold renewal and sweeping), `accounts.py` (customer, budget and
wallet rows), `refusals.py` (the 402s), `events.py` (recording events for the outbox),
`sql.py` (the hot-path statements), `spool.py`, `holds.py` (`HoldKeeper`),
`idempotency.py`, `prices.py`, `bounds.py`, `amounts.py`, `forecast.py` (the spend
forecast).
"""

from gateway.ledger.amounts import (
    NANOS_PER_USD,
    nanos_to_decimal,
    nanos_to_dollars,
    nanos_to_header,
    nanos_to_json,
    nanos_to_text,
    parse_usd,
    usd_to_nanos,
)
from gateway.ledger.bounds import chat_input_bound, embeddings_input_bound
from gateway.ledger.events import (
    BudgetCrossed,
    EventFacts,
    EventOutbox,
    RateLimited,
    WalletCrossed,
    WalletToppedUp,
)
from gateway.ledger.forecast import Forecast, read_forecast, spend_forecast
from gateway.ledger.holds import HoldKeeper
from gateway.ledger.idempotency import Idempotency, StoredResponse
from gateway.ledger.ledger import Ledger
from gateway.ledger.prices import Charge, ModelRates, PriceBook
from gateway.ledger.types import (
    CallEstimate,
    Endpoint,
    Outcome,
    OutcomeStatus,
    Reservation,
    Settlement,
    WalletView,
)

__all__ = [
    "NANOS_PER_USD",
    "BudgetCrossed",
    "CallEstimate",
    "Charge",
    "Endpoint",
    "EventFacts",
    "EventOutbox",
    "Forecast",
    "HoldKeeper",
    "Idempotency",
    "Ledger",
    "ModelRates",
    "Outcome",
    "OutcomeStatus",
    "PriceBook",
    "RateLimited",
    "Reservation",
    "Settlement",
    "StoredResponse",
    "WalletCrossed",
    "WalletToppedUp",
    "WalletView",
    "chat_input_bound",
    "embeddings_input_bound",
    "nanos_to_decimal",
    "nanos_to_dollars",
    "nanos_to_header",
    "nanos_to_json",
    "nanos_to_text",
    "parse_usd",
    "read_forecast",
    "spend_forecast",
    "usd_to_nanos",
]
