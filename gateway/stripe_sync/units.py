"""Value units: which measure a meter event counts and how many base units make one.

Base measures are integers Ringside already stores: price or cost in nano-USD, tokens.
A batch pushes `floor((carry + usage) / divisor)` and carries the rest, so the sum of
everything pushed plus the carry always equals the usage exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Measure = Literal["price", "cost", "tokens"]

# Stripe refuses values with more than 15 significant digits.
MAX_EVENT_VALUE = 10**15 - 1


@dataclass(frozen=True)
class Unit:
    name: str
    measure: Measure
    divisor: int  # base units per unit

    def split(self, total: int) -> tuple[int, int]:
        """(value to push, carry) for `total` base units; nothing is pushed below zero."""
        if total <= 0:
            return 0, total
        value = min(total // self.divisor, MAX_EVENT_VALUE)
        return value, total - value * self.divisor

    def exact(self, base: int) -> Decimal:
        """`base` expressed in this unit, exactly (e.g. 12.3456789 cents)."""
        return exact_ratio(base, self.divisor)


def exact_ratio(numerator: int, divisor: int) -> Decimal:
    text = format(Decimal(numerator) / Decimal(divisor), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(text if text not in ("", "-0") else "0")


UNITS: dict[str, Unit] = {
    "price_cents": Unit("price_cents", "price", 10_000_000),
    "cost_cents": Unit("cost_cents", "cost", 10_000_000),
    "price_microusd": Unit("price_microusd", "price", 1_000),
    "tokens": Unit("tokens", "tokens", 1),
}
