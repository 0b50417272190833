"""The statement's typed models (`GET /v1/customers/{customer_ref}/statement`).

Money is USD as an exact JSON number (at most 9 decimals). A statement reconciles:
`closing_balance_usd` = `opening_balance_usd` + `topups_usd` + `adjustments_usd` -
`wallet_debits_usd`, to the nano-dollar; `usage` equals `/v1/usage` over the month.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from gateway.api.contract.models import Rfc3339, Usd

Month = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}$", description="A UTC month, YYYY-MM")]
Day = Annotated[str, Meta(description="A UTC day, YYYY-MM-DD")]


class StatementUsage(Struct, kw_only=True):
    """The month's usage: what `/v1/usage` answers for the same customer and month."""

    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_cost_usd: Usd
    total_price_usd: Usd
    margin_usd: Usd


class StatementModel(Struct, kw_only=True):
    """The month's usage of one model (`/v1/usage?group_by=model` over the month)."""

    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    total_cost_usd: Usd
    total_price_usd: Usd
    margin_usd: Usd


class StatementDay(Struct, kw_only=True):
    """One UTC day with usage or wallet movements: the usage of calls that started that
    day, and the wallet transactions dated that day with the balance around them."""

    day: Day
    requests: int
    input_tokens: int
    output_tokens: int
    total_cost_usd: Usd
    total_price_usd: Usd
    margin_usd: Usd
    opening_balance_usd: Usd
    topups_usd: Usd
    adjustments_usd: Usd
    wallet_debits_usd: Usd
    closing_balance_usd: Usd


class Statement(Struct, kw_only=True):
    object: Literal["statement"]
    customer_id: str
    month: Month
    since: Annotated[Rfc3339, Meta(description="The month's first instant (UTC)")]
    until: Annotated[Rfc3339, Meta(description="The next month's first instant (excluded)")]
    opening_balance_usd: Annotated[Usd, Meta(description="The wallet balance when the month began")]
    topups_usd: Annotated[Usd, Meta(description="The month's top-ups (manual and automatic)")]
    adjustments_usd: Annotated[Usd, Meta(description="The month's adjustments, signed")]
    wallet_debits_usd: Annotated[
        Usd, Meta(description="What the month's usage took from the wallet")
    ]
    wallet_transactions: Annotated[int, Meta(description="The month's wallet transactions")]
    usage: StatementUsage
    by_model: list[StatementModel]
    by_day: list[StatementDay]
    closing_balance_usd: Annotated[
        Usd, Meta(description="opening + topups + adjustments - wallet_debits")
    ]
