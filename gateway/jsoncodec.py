"""JSON in and out: Decimal for every JSON float (no binary floats near money)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from gateway.errors import InvalidJson

_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(float_hook=Decimal)


def encode(data: Any) -> bytes:
    return _encoder.encode(data)


def decode(raw: bytes) -> Any:
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        raise InvalidJson() from None
