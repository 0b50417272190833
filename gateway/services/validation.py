"""Field validation shared by the HTTP API and the dashboard's forms.

Every failure is a 400 naming the offending field in `param`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from gateway.errors import InvalidAmount, InvalidRequest
from gateway.ledger import parse_usd, usd_to_nanos
from gateway.terms import LIMIT_NAMES, valid_pattern

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_USD = Decimal(1_000_000_000)  # a sanity ceiling for budgets and thresholds
MAX_TOPUP_USD = Decimal(1_000_000)


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown parameter: {unknown[0]}.", param=unknown[0])


def string(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    max_len: int = 255,
    allow_none: bool = True,
) -> str | None:
    if name not in body or (body[name] is None and allow_none and not required):
        if required:
            raise InvalidRequest(f"Missing required parameter: {name}.", param=name)
        return None
    value = body[name]
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string.", param=name)
    value = value.strip()
    if required and not value:
        raise InvalidRequest(f"{name} must not be empty.", param=name)
    if len(value) > max_len:
        raise InvalidRequest(f"{name} must be at most {max_len} characters.", param=name)
    if "\x00" in value:
        raise InvalidRequest(f"{name} must not contain NUL characters.", param=name)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone UTF-16 surrogate such as "\ud800"
            raise InvalidRequest(f"{name} is not valid Unicode text.", param=name) from None
    return value


_EXTERNAL_ID = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")  # printable ASCII but "," and " "


def external_id(body: dict[str, Any], name: str = "external_id") -> str:
    """Your own id for the customer. It travels in the `FC-Customer` header and in URLs,
    so it is printable ASCII without spaces, ',' (a header list separator) or '/'. (That it
    is not another customer's `cus_` id is checked where customers are written.)"""
    value = string(body, name, required=True)
    assert value is not None
    if "/" in value:
        raise InvalidRequest(f"{name} may not contain '/'.", param=name)
    if not _EXTERNAL_ID.match(value):
        raise InvalidRequest(
            f"{name} must be printable ASCII without spaces or commas: it is sent in the "
            "FC-Customer header.",
            param=name,
        )
    return value


def email(body: dict[str, Any], name: str = "email") -> str | None:
    value = string(body, name, max_len=320)
    if value and not _EMAIL.match(value):
        raise InvalidRequest(f"{name} is not a valid email address.", param=name)
    return value or None


def _decimals(d: Decimal) -> int:
    """Digits after the point of a finite Decimal."""
    exponent = d.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def usd_nanos(body: dict[str, Any], name: str, *, allow_zero: bool = True) -> int | None:
    """A non-negative USD amount as nanos; None when absent or null."""
    if body.get(name) is None:
        return None
    d = parse_usd(body[name])
    if d is None:
        raise InvalidRequest(f"{name} must be a finite number (USD).", param=name)
    if d < 0 or (d == 0 and not allow_zero):
        raise InvalidRequest(f"{name} must be {'>=' if allow_zero else '>'} 0.", param=name)
    if d > MAX_USD:
        raise InvalidRequest(f"{name} must be at most {MAX_USD}.", param=name)
    if _decimals(d) > 9:
        raise InvalidRequest(f"{name} may have at most 9 decimals.", param=name)
    return usd_to_nanos(d)


def topup_amount(value: Any, name: str = "amount_usd") -> int:
    """A top-up in USD, as decoded from JSON, as nanos: 400 invalid_amount for anything odd."""
    d = parse_usd(value)
    if d is None:
        raise InvalidAmount(f"{name} must be a finite number.", param=name)
    if d <= 0:
        raise InvalidAmount(f"{name} must be greater than 0.", param=name)
    if d > MAX_TOPUP_USD:
        raise InvalidAmount(f"{name} must be at most 1000000 per top-up.", param=name)
    if _decimals(d) > 9:
        raise InvalidAmount(f"{name} may have at most 9 decimals.", param=name)
    return usd_to_nanos(d)


def markup(body: dict[str, Any], name: str = "markup") -> Decimal | None:
    if body.get(name) is None:
        return None
    d = parse_usd(body[name])
    if d is None:
        raise InvalidRequest(f"{name} must be a finite number.", param=name)
    if d < 0 or d > 1000:
        raise InvalidRequest(f"{name} must be between 0 and 1000.", param=name)
    if _decimals(d) > 6:
        raise InvalidRequest(f"{name} may have at most 6 decimals.", param=name)
    return d


def boolean(body: dict[str, Any], name: str) -> bool | None:
    if body.get(name) is None:
        return None
    value = body[name]
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false.", param=name)
    return value


def metadata(body: dict[str, Any], name: str = "metadata") -> dict[str, str] | None:
    if body.get(name) is None:
        return None
    value = body[name]
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be an object of string keys and values.", param=name)
    if len(value) > 50:
        raise InvalidRequest(f"{name} may have at most 50 keys.", param=name)
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or len(k) > 40 or not k:
            raise InvalidRequest(f"{name} keys must be strings of 1-40 characters.", param=name)
        if isinstance(v, bool) or not isinstance(v, str | int | Decimal):
            raise InvalidRequest(f"{name}.{k} must be a string or a number.", param=f"{name}[{k}]")
        text = str(v)
        if len(text) > 500:
            raise InvalidRequest(
                f"{name}.{k} must be at most 500 characters.", param=f"{name}[{k}]"
            )
        out[k] = text
    return out


def limit(value: str | None, *, default: int = 20, maximum: int = 100) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidRequest("limit must be an integer.", param="limit") from None
    if not 1 <= n <= maximum:
        raise InvalidRequest(f"limit must be between 1 and {maximum}.", param="limit")
    return n


MAX_RATE_LIMIT = 10**12
MAX_ALLOWED_MODELS = 100


def rate_limits(
    body: dict[str, Any], name: str = "limits", *, base: dict[str, Any] | None = None
) -> dict[str, int] | None:
    """`{requests_per_minute?, tokens_per_minute?, max_concurrent?}`: positive integers.

    With `base` (a PATCH), the given limits merge into it and a `null` removes one; the
    whole object `null` removes them all. None when nothing is left."""
    if body.get(name) is None:
        return None
    value = body[name]
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"{name} must be an object: requests_per_minute, tokens_per_minute, max_concurrent.",
            param=name,
        )
    out: dict[str, int] = {
        k: v for k, v in (base or {}).items() if k in LIMIT_NAMES and isinstance(v, int)
    }
    for key, limit_value in value.items():
        param = f"{name}.{key}"
        if key not in LIMIT_NAMES:
            raise InvalidRequest(
                f"Unknown limit: {key}; known: {', '.join(LIMIT_NAMES)}.", param=param
            )
        if limit_value is None:
            out.pop(key, None)
            continue
        if (
            isinstance(limit_value, bool)
            or not isinstance(limit_value, int)
            or not 1 <= limit_value <= MAX_RATE_LIMIT
        ):
            raise InvalidRequest(
                f"{param} must be an integer between 1 and {MAX_RATE_LIMIT}, or null.",
                param=param,
            )
        out[key] = limit_value
    return out or None


def allowed_models(body: dict[str, Any], name: str = "allowed_models") -> list[str] | None:
    """Model patterns, `provider/model` with `*` as a wildcard; None when absent or null."""
    if body.get(name) is None:
        return None
    value = body[name]
    if not isinstance(value, list):
        raise InvalidRequest(
            f"{name} must be an array of model patterns such as 'anthropic/*'.", param=name
        )
    if len(value) > MAX_ALLOWED_MODELS:
        raise InvalidRequest(f"{name} may hold at most {MAX_ALLOWED_MODELS} patterns.", param=name)
    out: list[str] = []
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str) or not valid_pattern(pattern):
            raise InvalidRequest(
                f"{name}[{i}] must be a pattern 'provider/model' ('*' matches anything), "
                "printable ASCII without spaces.",
                param=f"{name}[{i}]",
            )
        if pattern not in out:
            out.append(pattern)
    return out
