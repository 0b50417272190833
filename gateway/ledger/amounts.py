"""Money at the edges: USD (JSON numbers) <-> integer nano-USD. Never floats inside."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import msgspec

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal("0.000000001")


def usd_to_nanos(value: Decimal | int | str) -> int:
    """Exact conversion; rejects amounts with more than 9 decimals by rounding half-even."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    return int((d * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def decimal_to_nanos(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_decimal(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS_PER_USD).quantize(_NANO)


def nanos_to_json(nanos: int | None) -> msgspec.Raw | None:
    """A JSON number with at most 9 decimals and no exponent, written exactly as computed."""
    if nanos is None:
        return None
    return msgspec.Raw(nanos_to_text(nanos).encode())


def nanos_to_text(nanos: int) -> str:
    text = format(nanos_to_decimal(nanos), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nanos_to_header(nanos: int) -> str:
    return nanos_to_text(nanos)


def nanos_to_dollars(nanos: int) -> str:
    """For sentences: at least two decimals, as many as needed beyond ("1.50", "0.000125")."""
    text = nanos_to_text(nanos)
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def parse_usd(value: Any) -> Decimal | None:
    """A JSON number (int or Decimal, as decoded) as a finite Decimal, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    try:
        d = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None
