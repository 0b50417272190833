"""JSON in and out: Decimal for every JSON float (no binary floats near money)."""

from __future__ import annotations

import json
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


def decode_lenient(raw: bytes) -> Any:
    """Like decode(), but NaN and Infinity (which Python's json.dumps writes) come through
    as non-finite Decimals, so a management route can answer with the field's own error
    (invalid_amount) instead of invalid_json."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        pass
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise InvalidJson() from None
