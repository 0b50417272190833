"""The Python client for Ringside: `Ringside` (blocking) and `AsyncRingside` (asyncio).

    from gateway.client import Ringside
    client = Ringside()  # RINGSIDE_BASE_URL / RINGSIDE_API_KEY, or pass base_url=, api_key=
    customer = client.customers.create(external_id="u_42", name="ada@example.com",
                                       budget_usd=25)

Depends on httpx and the standard library only, so a SaaS backend can import it without
the gateway's server dependencies.

Design, in short:
- Every method describes its HTTP call as a `_Call`; the sync and async clients differ only
  in how they send it (`_object`, `_page`, `_stream`, `_lines` for CSV), so the resources
  exist once and serve both. The retry policy is a generator (`_ClientBase._attempts`)
  driven by a blocking or an awaiting loop.
- Money fields (every key ending in `_usd`, and the FC-*-USD headers) arrive as
  `decimal.Decimal`, parsed from the JSON text exactly; other numbers are int or float.
- Errors are typed per Ringside error code and carry the server's fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import math
import os
import random
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Generic, Literal, Protocol, TypeVar, overload
from urllib.parse import quote

import httpx

from gateway import __version__

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AsyncPage",
    "AsyncRingside",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "CustomerArchived",
    "CustomerBudgetExceeded",
    "CustomerExists",
    "CustomerNotFound",
    "CustomerRateLimited",
    "CustomerRequired",
    "CustomerSuspended",
    "CustomerWalletEmpty",
    "IdempotencyKeyInProgress",
    "IdempotencyKeyReused",
    "InternalServerError",
    "InvalidAmount",
    "KeyRateLimited",
    "LedgerUnavailable",
    "ModelNotAllowed",
    "ModelNotFound",
    "ModelPriceUnknown",
    "NotFoundError",
    "Page",
    "PaymentRequired",
    "PermissionDeniedError",
    "PlanInUse",
    "RateLimitError",
    "Ringside",
    "RingsideError",
    "RingsideObject",
    "Stream",
    "UpstreamAuthFailed",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamTimeout",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8787"
# A call may legitimately run as long as the provider's own timeout (600 s by default),
# but an unreachable gateway should fail fast.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 60.0

# Answers Ringside gives to a proxied call that it did not charge (SPEC §9: upstream
# failures are never charged; a ledger refusal is never forwarded). Only these make a
# chat or embeddings call safe to send again.
_UNCHARGED_PROXY_CODES = frozenset(
    {
        "upstream_rate_limited",
        "upstream_error",
        "upstream_timeout",
        "ledger_unavailable",
        "server_busy",  # refused at the connection, before the request reached Ringside
    }
)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Transport errors raised before a single byte of the request left this process.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_NANO = Decimal("0.000000001")


# ---------------------------------------------------------------------------- JSON


def _money_from_float(value: float) -> Decimal:
    """A float given for a `*_usd` field, to the nano-USD the server keeps.

    repr() is the shortest text that round-trips, so 25.0 stays 25.0; rounding to 9
    decimals only drops binary noise such as 0.1 + 0.2 = 0.30000000000000004.
    """
    exact = Decimal(repr(value))
    try:
        return exact.quantize(_NANO, rounding=ROUND_HALF_EVEN).normalize()
    except InvalidOperation:  # too large for 9 decimals: send it; the server names the limit
        return exact


def _encode(value: Any, money: bool = False) -> str:
    """JSON text with Decimals written exactly (the stdlib encoder cannot)."""
    if isinstance(value, RingsideObject):
        value = value.to_dict()
    if isinstance(value, Mapping):
        items = (
            f"{json.dumps(str(k))}:{_encode(v, str(k).endswith('_usd'))}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, float):
        if not math.isfinite(value):
            # Not valid JSON as a number: send it as text so the server names the field.
            return json.dumps(repr(value))
        return _encode(_money_from_float(value)) if money else json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return json.dumps(str(value))
        return format(value, "f")
    return json.dumps(value)


def _from_json(value: Any, money: bool = False) -> Any:
    """Decoded JSON (floats as Decimal) -> money keys as Decimal, other numbers as float."""
    if isinstance(value, dict):
        return {k: _from_json(v, k.endswith("_usd")) for k, v in value.items()}
    if isinstance(value, list):  # a money key's list holds money (the audit log's changes)
        return [_from_json(v, money) for v in value]
    if isinstance(value, Decimal):
        return value if money else float(value)
    if money and isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def _loads(text: str) -> Any:
    return _from_json(json.loads(text, parse_float=Decimal))


def _money_header(headers: httpx.Headers, name: str) -> Decimal | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


# ---------------------------------------------------------------------------- results


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return RingsideObject(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class RingsideObject:
    """A JSON object from Ringside: `obj.field`, `obj["field"]`, `obj.to_dict()`.

    Nested objects are RingsideObjects too. Money fields are `decimal.Decimal`.
    Values the response headers carried (for chat and embeddings: `request_id`,
    `cost_usd`, `price_usd`, `budget_remaining_usd`, `wallet_balance_usd`) read as
    attributes as well, but are not part of `to_dict()`.
    """

    __slots__ = ("_data", "_extras")

    def __init__(self, data: Mapping[str, Any], extras: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data)
        self._extras = dict(extras or {})

    def __getattr__(self, name: str) -> Any:
        # Private and dunder names never come from the data: copy and pickle probe them
        # on instances whose slots are not set yet.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._data:
            return _wrap(self._data[name])
        if name in self._extras:
            return self._extras[name]
        raise AttributeError(
            f"{self._data.get('object', 'object')!s} has no field {name!r} "
            f"(fields: {', '.join(self._data)})"
        )

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[str]:
        return list(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return _wrap(self._data[key]) if key in self._data else default

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain dicts and lists (money stays Decimal)."""
        return copy.deepcopy(self._data)

    def to_json(self) -> str:
        """Compact JSON text, money written exactly."""
        return _encode(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RingsideObject):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking mapping: unhashable like dict

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._data, *self._extras})

    def __repr__(self) -> str:
        return f"RingsideObject({self._data!r})"


def _openai_shape(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the optional fields the openai SDK's models always have, so code written
    against it (`if msg.tool_calls:`, `chunk.choices[0].delta.content or ""`) runs as is."""
    chunk = data.get("object") == "chat.completion.chunk"
    if chunk:
        data.setdefault("usage", None)
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", None)
        inner = choice.setdefault("delta" if chunk else "message", {})
        if isinstance(inner, dict):
            for name in ("role", "content", "refusal", "tool_calls", "function_call"):
                inner.setdefault(name, None)
    return data


# ---------------------------------------------------------------------------- errors


class RingsideError(Exception):
    """Base of every error this client raises.

    `code` is Ringside's error code (`customer_budget_exceeded`, ...), `status_code` the
    HTTP status, `body` the parsed error body, `request_id` the FC-Request-Id header.
    Any further fields of the server's error object are attributes too (see `fields`).
    """

    def __init__(
        self,
        message: str,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        status_code: int | None = None,
        body: Any = None,
        request_id: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.type = type
        self.param = param
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.headers = dict(headers or {})
        self.fields = dict(fields or {})
        for name, value in self.fields.items():
            if name.isidentifier() and not hasattr(RingsideError, name) and name not in vars(self):
                setattr(self, name, value)

    def __str__(self) -> str:
        where = " ".join(str(p) for p in (self.status_code, self.code) if p is not None)
        return f"{where}: {self.message}" if where else self.message


class APIConnectionError(RingsideError):
    """Ringside could not be reached, or the connection broke before an answer."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class BadRequestError(RingsideError):
    """400: the request is invalid (`param` names the field)."""


class InvalidAmount(BadRequestError):
    pass


class ModelPriceUnknown(BadRequestError):
    pass


class CustomerRequired(BadRequestError):
    pass


class AuthenticationError(RingsideError):
    """401: no key, or an unknown one."""


class PermissionDeniedError(RingsideError):
    """403: e.g. an app key on a management route."""


class CustomerSuspended(PermissionDeniedError):
    customer_id: str | None = None


class CustomerArchived(PermissionDeniedError):
    customer_id: str | None = None


class ModelNotAllowed(PermissionDeniedError):
    """403: the model is outside the customer's allow-list (its own, or its plan's)."""


class PaymentRequired(RingsideError):
    """402: the customer cannot pay for the call. Never retried.

    Carries the server's fields, money as Decimal: `customer_id`, `external_id`,
    `required_usd` (what the call needed to hold), `held_usd` (held by calls in flight),
    and for a budget `monthly_budget_usd`, `spent_usd`, `remaining_usd`, `period`, or for a
    wallet `balance_usd`, `available_usd`. Fields the refusal does not carry are None.
    """

    customer_id: str | None = None
    external_id: str | None = None
    required_usd: Decimal | None = None
    held_usd: Decimal | None = None
    monthly_budget_usd: Decimal | None = None
    spent_usd: Decimal | None = None
    remaining_usd: Decimal | None = None
    period: str | None = None
    balance_usd: Decimal | None = None
    available_usd: Decimal | None = None


class CustomerBudgetExceeded(PaymentRequired):
    """The month's cost reached the customer's budget."""


class CustomerWalletEmpty(PaymentRequired):
    """The prepaid balance cannot pay for the call: prompt a top-up."""


class NotFoundError(RingsideError):
    """404."""


class CustomerNotFound(NotFoundError):
    pass


class ModelNotFound(NotFoundError):
    pass


class ConflictError(RingsideError):
    """409."""


class CustomerExists(ConflictError):
    pass


class PlanInUse(ConflictError):
    """409: a plan still used by customers cannot be deleted."""


class IdempotencyKeyReused(ConflictError):
    pass


class IdempotencyKeyInProgress(ConflictError):
    pass


class RateLimitError(RingsideError):
    """429."""


class CustomerRateLimited(RateLimitError):
    """429: one of the customer's own rate limits (or its plan's) refused the call; it was
    not forwarded and not charged. `error.body["limit"]` names the limit and
    `retry_after_s` says when the call would fit."""


class KeyRateLimited(RateLimitError):
    """429: the app key's own rate limit refused the call (not forwarded, not charged)."""


class UpstreamRateLimited(RateLimitError):
    """The provider rate-limited the call; it was not charged."""


class InternalServerError(RingsideError):
    """5xx."""


class UpstreamError(InternalServerError):
    """502: the provider failed or broke the connection; the call was not charged."""


class UpstreamAuthFailed(UpstreamError):
    """502: the provider refused Ringside's own credentials; fix the key, don't retry."""


class UpstreamTimeout(UpstreamError):
    """504: the provider did not answer in time; the call was not charged."""


class LedgerUnavailable(InternalServerError):
    """503: the ledger could not take the reservation; the call was never forwarded."""


_ERRORS_BY_CODE: dict[str, type[RingsideError]] = {
    "invalid_amount": InvalidAmount,
    "model_price_unknown": ModelPriceUnknown,
    "customer_required": CustomerRequired,
    "invalid_api_key": AuthenticationError,
    "insufficient_permissions": PermissionDeniedError,
    "customer_suspended": CustomerSuspended,
    "customer_archived": CustomerArchived,
    "model_not_allowed": ModelNotAllowed,
    "customer_rate_limited": CustomerRateLimited,
    "key_rate_limited": KeyRateLimited,
    "plan_in_use": PlanInUse,
    "customer_budget_exceeded": CustomerBudgetExceeded,
    "customer_wallet_empty": CustomerWalletEmpty,
    "customer_not_found": CustomerNotFound,
    "model_not_found": ModelNotFound,
    "customer_exists": CustomerExists,
    "idempotency_key_reused": IdempotencyKeyReused,
    "idempotency_key_in_progress": IdempotencyKeyInProgress,
    "upstream_rate_limited": UpstreamRateLimited,
    "upstream_error": UpstreamError,
    "upstream_auth_failed": UpstreamAuthFailed,
    "upstream_timeout": UpstreamTimeout,
    "ledger_unavailable": LedgerUnavailable,
}
_ERRORS_BY_STATUS: dict[int, type[RingsideError]] = {
    401: AuthenticationError,
    402: PaymentRequired,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def _error_class(code: str | None, status: int) -> type[RingsideError]:
    if code in _ERRORS_BY_CODE:
        return _ERRORS_BY_CODE[code]
    if status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status]
    if status >= 500:
        return InternalServerError
    return BadRequestError if 400 <= status < 500 else RingsideError


def _error_from_body(body: Any, status: int, headers: httpx.Headers, text: str) -> RingsideError:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        # Not Ringside's envelope: a proxy or load balancer in front of it answered.
        message = text.strip()[:500] or f"HTTP {status}"
        return _error_class(None, status)(message, status_code=status, body=body, headers=headers)
    code = err.get("code") if isinstance(err.get("code"), str) else None
    known = {"type", "code", "message", "param"}
    return _error_class(code, status)(
        str(err.get("message") or f"HTTP {status}"),
        code,
        err.get("type"),
        err.get("param"),
        status,
        body,
        headers.get("fc-request-id") or err.get("request_id"),
        headers=headers,
        fields={k: v for k, v in err.items() if k not in known},
    )


def _parse_body(text: str) -> Any:
    try:
        return _loads(text)
    except ValueError:
        return None


def _error_code(response: httpx.Response) -> str | None:
    body = _parse_body(response.text)
    err = body.get("error") if isinstance(body, dict) else None
    return err.get("code") if isinstance(err, dict) else None


def _transport_error(exc: httpx.TransportError, base_url: str) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Ringside at {base_url} did not answer in time ({exc!r}).")
    return APIConnectionError(f"Could not talk to Ringside at {base_url}: {exc!r}.")


# ---------------------------------------------------------------------------- calls

_Retry = Literal["safe", "proxy", "connect_only"]


@dataclass(frozen=True)
class _Call:
    """One API call, described once and sent by either client.

    retry: "safe"         repeatable (GET/PATCH/DELETE, or a POST with an Idempotency-Key):
                          retried on transport errors, 429 and 5xx.
           "proxy"        a chat/embeddings call: resent only if it never left this process
                          or Ringside answered that it charged nothing for it.
           "connect_only" resent only if it never left this process.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None
    retry: _Retry = "safe"
    timeout: float | httpx.Timeout | None = None
    stream: bool = False
    accept: str | None = None  # a media type other than JSON (CSV)


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, date | datetime):
            out[name] = value.isoformat()
        else:
            out[name] = str(value)
    return out


def _segment(ref: str | int) -> str:
    # External ids are the SaaS's own ids and may hold any character.
    return quote(str(ref), safe="")


def _idempotency(key: str | None) -> dict[str, str]:
    # One key per logical operation, created here so every retry of it carries the same.
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def _proxy_call(
    path: str,
    body: dict[str, Any],
    *,
    customer: str | int | None,
    extra_headers: Mapping[str, str] | None,
    extra_body: Mapping[str, Any] | None,
    timeout: float | httpx.Timeout | None,
    stream: bool = False,
) -> _Call:
    headers = dict(extra_headers or {})
    if customer is not None:
        headers["FC-Customer"] = str(customer)
    return _Call(
        "POST",
        path,
        body={**body, **(extra_body or {})},
        headers={k: str(v) for k, v in headers.items()},
        retry="proxy",
        timeout=timeout,
        stream=stream,
    )


def _proxy_extras(headers: httpx.Headers) -> dict[str, Any]:
    return {
        "request_id": headers.get("fc-request-id"),
        "cost_usd": _money_header(headers, "fc-cost-usd"),
        "price_usd": _money_header(headers, "fc-price-usd"),
        "budget_remaining_usd": _money_header(headers, "fc-budget-remaining-usd"),
        "wallet_balance_usd": _money_header(headers, "fc-wallet-balance-usd"),
    }


# ---------------------------------------------------------------------------- pages


class _PageBase:
    """One page of a list: `data`, `has_more`. Iterating walks every following page."""

    def __init__(self, body: Mapping[str, Any], call: _Call) -> None:
        self._body = dict(body)
        self._call = call
        self.object: str = str(body.get("object", "list"))
        self.url: str | None = body.get("url")
        self.has_more: bool = bool(body.get("has_more", False))
        self.data: list[Any] = [_wrap(item) for item in body.get("data") or []]

    def _next_call(self) -> _Call | None:
        if not self.has_more or not self.data:
            return None
        last = self.data[-1]
        last_id = last.get("id") if isinstance(last, RingsideObject) else None
        if last_id is None:
            return None
        return replace(self._call, params={**(self._call.params or {}), "starting_after": last_id})

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._body)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data=[{len(self.data)} items], has_more={self.has_more})"


class Page(_PageBase):
    def __init__(self, body: Mapping[str, Any], call: _Call, fetch: Callable[[_Call], Page]):
        super().__init__(body, call)
        self._fetch = fetch

    def next_page(self) -> Page | None:
        call = self._next_call()
        return self._fetch(call) if call is not None else None

    def __iter__(self) -> Iterator[Any]:
        page: Page | None = self
        while page is not None:
            yield from page.data
            page = page.next_page()


class AsyncPage(_PageBase):
    def __init__(
        self,
        body: Mapping[str, Any],
        call: _Call,
        fetch: Callable[[_Call], Coroutine[Any, Any, AsyncPage]],
    ) -> None:
        super().__init__(body, call)
        self._fetch = fetch

    async def next_page(self) -> AsyncPage | None:
        call = self._next_call()
        return await self._fetch(call) if call is not None else None

    async def __aiter__(self) -> AsyncIterator[Any]:
        page: AsyncPage | None = self
        while page is not None:
            for item in page.data:
                yield item
            page = await page.next_page()


# ---------------------------------------------------------------------------- streams


class _StreamBase:
    """Server-sent chat.completion.chunk objects.

    `request_id`, `budget_remaining_usd` and `wallet_balance_usd` come from the response
    headers (taken when the stream opened, after the hold). `usage`, `cost_usd` and
    `price_usd` are set once the usage chunk arrives, which Ringside sends when the
    request asked for it: `stream_options={"include_usage": True}`.
    """

    def __init__(self, response: httpx.Response, base_url: str) -> None:
        self.response = response
        self._base_url = base_url
        extras = _proxy_extras(response.headers)
        self.request_id: str | None = extras["request_id"]
        self.budget_remaining_usd: Decimal | None = extras["budget_remaining_usd"]
        self.wallet_balance_usd: Decimal | None = extras["wallet_balance_usd"]
        self.usage: RingsideObject | None = None
        self.cost_usd: Decimal | None = None
        self.price_usd: Decimal | None = None
        self._done = False

    def _chunk(self, line: str) -> RingsideObject | None:
        """One SSE line -> a chunk to yield, or None. Raises the error a stream ends with."""
        if not line.startswith("data:"):
            return None
        payload = line[5:].strip()
        if payload == "[DONE]":
            self._done = True
            return None
        data = _loads(payload)
        if "error" in data and "choices" not in data:
            # A stream cut mid-way ends with the error envelope (after a 200).
            self._done = True
            raise _error_from_body(data, self.response.status_code, self.response.headers, payload)
        chunk = RingsideObject(_openai_shape(data))
        if data.get("usage"):
            self.usage = chunk.usage
            self.cost_usd = data["usage"].get("cost_usd")
            self.price_usd = data["usage"].get("price_usd")
        return chunk

    def _check_finished(self) -> None:
        if not self._done:
            raise APIConnectionError(
                f"The stream from {self._base_url} ended before [DONE]: the output is incomplete."
            )


class Stream(_StreamBase):
    """Iterate for chunks; closes itself at the end. Use `with` to close it early."""

    def __iter__(self) -> Iterator[RingsideObject]:
        try:
            for line in self.response.iter_lines():
                chunk = self._chunk(line)
                if chunk is not None:
                    yield chunk
                if self._done:
                    return
            self._check_finished()
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._base_url) from exc
        finally:
            self.response.close()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """`async for` the chunks; closes itself at the end. Use `async with` to close early."""

    async def __aiter__(self) -> AsyncIterator[RingsideObject]:
        try:
            async for line in self.response.aiter_lines():
                chunk = self._chunk(line)
                if chunk is not None:
                    yield chunk
                if self._done:
                    return
            self._check_finished()
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._base_url) from exc
        finally:
            await self.response.aclose()

    async def close(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _iter_lines(response: httpx.Response) -> Iterator[str]:
    """A CSV answer's lines (without line ends), read as they arrive; closes the answer."""
    with contextlib.closing(response):
        yield from response.iter_lines()


async def _aiter_lines(response: httpx.Response) -> AsyncIterator[str]:
    try:
        async for line in response.aiter_lines():
            yield line
    finally:
        await response.aclose()


def _csv_call(path: str, params: Mapping[str, Any]) -> _Call:
    return _Call("GET", path, params, accept="text/csv", stream=True)


def _month(month: str | date | None) -> str | None:
    return month.strftime("%Y-%m") if isinstance(month, date) else month


# ---------------------------------------------------------------------------- resources

_O = TypeVar("_O", covariant=True)
_P = TypeVar("_P", covariant=True)
_S = TypeVar("_S", covariant=True)
_L = TypeVar("_L", covariant=True)
_Messages = Sequence[Mapping[str, Any]]
_Timeout = float | httpx.Timeout | None
_When = str | date | datetime | None


class _Transport(Protocol[_O, _P, _S, _L]):
    def _object(self, call: _Call) -> _O: ...
    def _page(self, call: _Call) -> _P: ...
    def _stream(self, call: _Call) -> _S: ...
    def _lines(self, call: _Call) -> _L: ...


class _Resource(Generic[_O, _P, _S, _L]):
    # _O: what an object call returns (RingsideObject, or a coroutine of it), _P: a page,
    # _S: a stream, _L: the lines of a CSV answer. One resource class serves both clients.
    def __init__(self, client: _Transport[_O, _P, _S, _L]) -> None:
        self._client = client


class Wallets(_Resource[_O, _P, _S, _L]):
    def topup(
        self,
        customer_id: str | int,
        amount_usd: Decimal | int | float | str,
        description: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> _O:
        """Add money to a prepaid wallet. Returns `{balance_usd, transaction}`.

        Without `idempotency_key`, a fresh UUID4 is used, the same on every retry of this
        call. Pass your own (e.g. your payment's id) to make your own retries safe too.
        """
        body: dict[str, Any] = {"amount_usd": amount_usd}
        if description is not None:
            body["description"] = description
        return self._client._object(
            _Call(
                "POST",
                f"/v1/customers/{_segment(customer_id)}/wallet/topup",
                body=body,
                headers=_idempotency(idempotency_key),
            )
        )

    def retrieve(self, customer_id: str | int, *, limit: int | None = None) -> _O:
        """Balance, held and available amounts, and the latest transactions."""
        return self._client._object(
            _Call("GET", f"/v1/customers/{_segment(customer_id)}/wallet", {"limit": limit})
        )


class Customers(_Resource[_O, _P, _S, _L]):
    def __init__(self, client: _Transport[_O, _P, _S, _L]) -> None:
        super().__init__(client)
        self.wallet: Wallets[_O, _P, _S, _L] = Wallets(client)

    def create(
        self,
        *,
        external_id: str | int,
        name: str,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> _O:
        """Create a customer. Fields: email, monthly_budget_usd (or budget_usd), markup,
        prepaid, low_balance_threshold_usd, stripe_customer_id, metadata, plan (a plan's
        id or external id), limits, allowed_models. Unset fields take the plan's value."""
        return self._client._object(
            _Call(
                "POST",
                "/v1/customers",
                body={"external_id": str(external_id), "name": name, **fields},
                headers=_idempotency(idempotency_key),
            )
        )

    def retrieve(self, customer_id: str | int) -> _O:
        """By `cus_...` id or by your external_id."""
        return self._client._object(_Call("GET", f"/v1/customers/{_segment(customer_id)}"))

    def list(
        self,
        *,
        limit: int | None = None,
        starting_after: str | None = None,
        status: str | None = None,
        external_id: str | None = None,
        search: str | None = None,
    ) -> _P:
        """Newest first, `limit` per page; iterating the page walks all of them."""
        params = {
            "limit": limit,
            "starting_after": starting_after,
            "status": status,
            "external_id": external_id,
            "search": search,
        }
        return self._client._page(_Call("GET", "/v1/customers", params))

    def update(self, customer_id: str | int, **fields: Any) -> _O:
        """PATCH any create field, or status="suspended" / "active". plan=None detaches
        the plan; a money field set to None falls back to the plan's value."""
        return self._client._object(
            _Call("PATCH", f"/v1/customers/{_segment(customer_id)}", body=fields)
        )

    def archive(self, customer_id: str | int) -> _O:
        """Archive (DELETE): further calls get 403 customer_archived; usage stays."""
        return self._client._object(_Call("DELETE", f"/v1/customers/{_segment(customer_id)}"))

    def statement(self, customer_id: str | int, month: str | date | None = None) -> _O:
        """A UTC month's statement (`month`: "2026-04" or a date in it; default: this
        month): opening_balance_usd, topups_usd, adjustments_usd, wallet_debits_usd,
        closing_balance_usd, `usage` (as /v1/usage answers for the month), by_model and
        by_day."""
        path = f"/v1/customers/{_segment(customer_id)}/statement"
        return self._client._object(_Call("GET", path, {"month": _month(month)}))

    def statement_csv(self, customer_id: str | int, month: str | date | None = None) -> _L:
        """The statement's days as CSV lines: a header, then one row per day (`by_day`)."""
        path = f"/v1/customers/{_segment(customer_id)}/statement"
        return self._client._lines(_csv_call(path, {"month": _month(month)}))


class AuditLog(_Resource[_O, _P, _S, _L]):
    def list(
        self,
        *,
        customer_id: str | int | None = None,
        action: str | None = None,
        since: _When = None,
        until: _When = None,
        limit: int | None = None,
        starting_after: str | None = None,
    ) -> _P:
        """Every management write, newest first: who (`key_id`, `key_kind`), what
        (`action`, `target_id`), `changes` as {field: [before, after]}, `request_id`,
        `idempotency_key`, `ip`. Iterating the page walks all of them."""
        params = {
            "customer_id": customer_id,
            "action": action,
            "since": since,
            "until": until,
            "limit": limit,
            "starting_after": starting_after,
        }
        return self._client._page(_Call("GET", "/v1/audit_log", params))


class Plans(_Resource[_O, _P, _S, _L]):
    """Plans: defaults for customers (money, allowed models, rate limits). A customer's
    own value wins, field by field and limit by limit."""

    def create(self, *, name: str, **fields: Any) -> _O:
        """Fields: external_id, monthly_budget_usd, prepaid, low_balance_threshold_usd,
        markup, allowed_models (patterns such as "anthropic/*"), limits
        ({requests_per_minute, tokens_per_minute, max_concurrent})."""
        return self._client._object(
            _Call("POST", "/v1/plans", body={"name": name, **fields}, retry="connect_only")
        )

    def retrieve(self, plan_id: str) -> _O:
        """By `plan_...` id or by its external_id; `customers` counts who is on it."""
        return self._client._object(_Call("GET", f"/v1/plans/{_segment(plan_id)}"))

    def list(self, *, limit: int | None = None, starting_after: str | None = None) -> _P:
        params = {"limit": limit, "starting_after": starting_after}
        return self._client._page(_Call("GET", "/v1/plans", params))

    def update(self, plan_id: str, **fields: Any) -> _O:
        """PATCH: applies at once to every customer on the plan. `limits` merges (a limit
        set to None is removed)."""
        return self._client._object(_Call("PATCH", f"/v1/plans/{_segment(plan_id)}", body=fields))

    def delete(self, plan_id: str) -> _O:
        """Delete an unused plan; PlanInUse (409) while customers are on it."""
        return self._client._object(_Call("DELETE", f"/v1/plans/{_segment(plan_id)}"))


class Usage(_Resource[_O, _P, _S, _L]):
    def retrieve(
        self,
        *,
        customer_id: str | int | None = None,
        since: _When = None,
        until: _When = None,
        group_by: Literal["day", "model", "customer"] | None = None,
    ) -> _O:
        """Totals (requests, tokens, total_cost_usd, total_price_usd, margin_usd) and an
        optional breakdown. `since`/`until`: a date (until includes that day) or an
        RFC 3339 time with an offset."""
        params = {
            "customer_id": customer_id,
            "since": since,
            "until": until,
            "group_by": group_by,
        }
        return self._client._object(_Call("GET", "/v1/usage", params))

    def export_csv(
        self,
        *,
        customer_id: str | int | None = None,
        since: _When = None,
        until: _When = None,
        group_by: Literal["day", "model", "customer"] | None = None,
    ) -> _L:
        """The same as CSV lines (no line ends): a header, then one row per group of the
        breakdown, or one row of totals without `group_by`. Parse with `csv.reader`."""
        params = {
            "customer_id": customer_id,
            "since": since,
            "until": until,
            "group_by": group_by,
        }
        return self._client._lines(_csv_call("/v1/usage", params))


class Requests(_Resource[_O, _P, _S, _L]):
    def list(
        self,
        *,
        customer_id: str | int | None = None,
        model: str | None = None,
        status: Literal["ok", "error", "refused", "cut"] | None = None,
        since: _When = None,
        until: _When = None,
        limit: int | None = None,
        starting_after: str | None = None,
    ) -> _P:
        """The per-request log, newest first; iterating the page walks all of them."""
        params = {
            "customer_id": customer_id,
            "model": model,
            "status": status,
            "since": since,
            "until": until,
            "limit": limit,
            "starting_after": starting_after,
        }
        return self._client._page(_Call("GET", "/v1/requests", params))

    def export_csv(
        self,
        *,
        customer_id: str | int | None = None,
        model: str | None = None,
        status: Literal["ok", "error", "refused", "cut"] | None = None,
        since: _When = None,
        until: _When = None,
        starting_after: str | None = None,
    ) -> _L:
        """Every matching request as CSV lines (no line ends), newest first, streamed: a
        header, then one row per request. Iterate it (or `csv.reader` it) as it arrives;
        `starting_after` resumes an interrupted export after the last id you have."""
        params = {
            "customer_id": customer_id,
            "model": model,
            "status": status,
            "since": since,
            "until": until,
            "starting_after": starting_after,
        }
        return self._client._lines(_csv_call("/v1/requests", params))


class Keys(_Resource[_O, _P, _S, _L]):
    def create(
        self,
        name: str,
        *,
        kind: Literal["app", "read", "billing", "admin"] | None = None,
        expires_at: _When = None,
        limits: Mapping[str, int | None] | None = None,
    ) -> _O:
        """A new API key (`rs_...`); `.key` is shown only here. `kind`: "app" (the proxy
        routes; the default), "read" (GETs), "billing" (customers, wallets, plans) or
        "admin" (everything). `expires_at`: an aware datetime or RFC 3339 time. `limits`:
        the key's own rate limits (requests_per_minute, tokens_per_minute, max_concurrent),
        counted across every customer it serves."""
        body: dict[str, Any] = {"name": name}
        if kind is not None:
            body["kind"] = kind
        if isinstance(expires_at, date | datetime):
            body["expires_at"] = expires_at.isoformat()
        elif expires_at is not None:
            body["expires_at"] = expires_at
        if limits is not None:
            body["limits"] = dict(limits)
        # Not idempotent on the server: a blind resend could mint a second, unseen key.
        return self._client._object(_Call("POST", "/v1/keys", body=body, retry="connect_only"))

    def list(self, *, include_revoked: bool = False) -> _P:
        return self._client._page(
            _Call("GET", "/v1/keys", {"include_revoked": include_revoked or None})
        )

    def revoke(self, key_id: str) -> _O:
        return self._client._object(_Call("DELETE", f"/v1/keys/{_segment(key_id)}"))


class Models(_Resource[_O, _P, _S, _L]):
    def list(self, *, customer: str | int | None = None) -> _P:
        """Routable models (`fc:<provider>/<model>`) that have a known price; with
        `customer`, only those that customer's allow-list lets it call."""
        headers = {"FC-Customer": str(customer)} if customer is not None else None
        return self._client._page(_Call("GET", "/v1/models", headers=headers))


class Embeddings(_Resource[_O, _P, _S, _L]):
    def create(
        self,
        *,
        model: str,
        input: str | Sequence[Any],
        customer: str | int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _Timeout = None,
        **params: Any,
    ) -> _O:
        body = {"model": model, "input": input, **params}
        return self._client._object(
            _proxy_call(
                "/v1/embeddings",
                body,
                customer=customer,
                extra_headers=extra_headers,
                extra_body=extra_body,
                timeout=timeout,
            )
        )


class Completions(_Resource[_O, _P, _S, _L]):
    @overload
    def create(
        self, *, model: str, messages: _Messages, stream: Literal[False] = ..., **params: Any
    ) -> _O: ...

    @overload
    def create(
        self, *, model: str, messages: _Messages, stream: Literal[True], **params: Any
    ) -> _S: ...

    def create(
        self,
        *,
        model: str,
        messages: _Messages,
        stream: bool = False,
        customer: str | int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _Timeout = None,
        **params: Any,
    ) -> _O | _S:
        """OpenAI's chat completions. Name the paying customer with `customer=` or
        `extra_headers={"FC-Customer": ...}`. Other keyword arguments (max_tokens,
        temperature, tools, stream_options, ...) go into the request body."""
        body: dict[str, Any] = {"model": model, "messages": list(messages), **params}
        if stream:
            body["stream"] = True
        call = _proxy_call(
            "/v1/chat/completions",
            body,
            customer=customer,
            extra_headers=extra_headers,
            extra_body=extra_body,
            timeout=timeout,
            stream=stream,
        )
        return self._client._stream(call) if stream else self._client._object(call)


class Chat(_Resource[_O, _P, _S, _L]):
    def __init__(self, client: _Transport[_O, _P, _S, _L]) -> None:
        super().__init__(client)
        self.completions: Completions[_O, _P, _S, _L] = Completions(client)


# ---------------------------------------------------------------------------- clients

_Step = httpx.Request | float
_Outcome = httpx.Response | httpx.TransportError | None


_H = TypeVar("_H", httpx.Client, httpx.AsyncClient)


class _ClientBase(Generic[_H, _O, _P, _S, _L]):
    """Configuration, request building, the retry policy and response parsing: everything
    but the I/O, which `Ringside` and `AsyncRingside` each do their own way.

    base_url: defaults to RINGSIDE_BASE_URL, then http://127.0.0.1:8787.
    api_key: the admin key or an app key (`rs_...`, proxy routes only); defaults to
        RINGSIDE_API_KEY.
    timeout: seconds (or an httpx.Timeout) per attempt.
    max_retries: extra attempts for failures that are safe to resend (see docs/client.md).
    default_headers: sent with every request, e.g. {"FC-Customer": ...}.
    http_client: an httpx client of your own (its base_url is not used).
    """

    _http_class: type[_H]
    chat: Chat[_O, _P, _S, _L]
    embeddings: Embeddings[_O, _P, _S, _L]
    models: Models[_O, _P, _S, _L]
    customers: Customers[_O, _P, _S, _L]
    wallets: Wallets[_O, _P, _S, _L]
    usage: Usage[_O, _P, _S, _L]
    requests: Requests[_O, _P, _S, _L]
    keys: Keys[_O, _P, _S, _L]

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: _H | None = None,
    ) -> None:
        url = (base_url or os.environ.get("RINGSIDE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        # Accept the OpenAI-style ".../v1" too: every path below already starts with /v1.
        self.base_url = url.removesuffix("/v1")
        self.api_key = api_key if api_key is not None else os.environ.get("RINGSIDE_API_KEY")
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self._http: _H = http_client or self._http_class(timeout=timeout)
        self._owns_http = http_client is None
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"ringside-python/{__version__}",
            **dict(default_headers or {}),
        }
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"
        transport: Any = self  # a subclass is a _Transport of its own result types
        self.chat = Chat(transport)
        self.embeddings = Embeddings(transport)
        self.models = Models(transport)
        self.customers = Customers(transport)
        self.wallets = self.customers.wallet
        self.usage = Usage(transport)
        self.requests = Requests(transport)
        self.keys = Keys(transport)
        self.plans = Plans(transport)
        self.audit_log = AuditLog(transport)

    def _build(self, call: _Call) -> httpx.Request:
        headers = {**self._headers, **(call.headers or {})}
        content = None
        if call.body is not None:
            content = _encode(call.body).encode()
            headers["Content-Type"] = "application/json"
        if call.accept:
            headers["Accept"] = call.accept
        elif call.stream:
            headers["Accept"] = "text/event-stream"
        timeout = call.timeout if call.timeout is not None else self.timeout
        return self._http.build_request(
            call.method,
            self.base_url + call.path,
            params=_query(call.params),
            content=content,
            headers=headers,
            timeout=timeout,
        )

    def _attempts(self, call: _Call) -> Generator[_Step, _Outcome, httpx.Response]:
        """The retry policy, free of I/O: yields a request to send or seconds to sleep,
        is sent what the request produced, returns the response to use.

        The request is built once, so every attempt carries the same Idempotency-Key.
        """
        request = self._build(call)
        for attempt in itertools.count():
            outcome = yield request
            if attempt < self.max_retries and self._should_retry(call, outcome):
                yield self._backoff(attempt, outcome)
                continue
            if isinstance(outcome, httpx.Response):
                return outcome
            assert outcome is not None
            raise _transport_error(outcome, self.base_url) from outcome
        raise AssertionError("unreachable")

    @staticmethod
    def _should_retry(call: _Call, outcome: _Outcome) -> bool:
        if isinstance(outcome, httpx.TransportError):
            # Once a request may have reached the server only a repeatable call is resent.
            return isinstance(outcome, _NOT_SENT_ERRORS) or call.retry == "safe"
        if outcome is None or not outcome.is_error:
            return False
        if outcome.headers.get("x-should-retry") == "false":
            return False  # 402s say so: paying does not get easier by asking again
        if call.retry == "safe":
            return (
                outcome.status_code in _RETRY_STATUSES
                or _error_code(outcome) == "idempotency_key_in_progress"
            )
        if call.retry == "proxy":
            return _error_code(outcome) in _UNCHARGED_PROXY_CODES
        return False

    @staticmethod
    def _backoff(attempt: int, outcome: _Outcome) -> float:
        if isinstance(outcome, httpx.Response):
            with contextlib.suppress(KeyError, ValueError):
                after = float(str(outcome.headers["retry-after"]))
                if 0 <= after <= MAX_RETRY_AFTER_S:
                    return after
        delay = min(INITIAL_RETRY_DELAY_S * 2.0**attempt, MAX_RETRY_DELAY_S)
        # Jitter spreads the retries of many clients that failed at the same moment.
        return delay * (0.5 + random.random() / 2)

    def _raise_for_status(self, response: httpx.Response) -> None:
        if not response.is_error:
            return
        text = response.text
        error = _error_from_body(_parse_body(text), response.status_code, response.headers, text)
        if response.status_code == 401 and not self.api_key:
            error.message += " (this client has no API key: pass api_key= or set RINGSIDE_API_KEY)"
            error.args = (error.message,)
        raise error

    def _result(self, call: _Call, response: httpx.Response) -> RingsideObject:
        self._raise_for_status(response)
        try:
            data = _loads(response.text)
        except ValueError:
            raise RingsideError(
                f"Ringside answered {call.method} {call.path} with a body that is not JSON.",
                status_code=response.status_code,
                request_id=response.headers.get("fc-request-id"),
            ) from None
        if call.retry == "proxy":
            return RingsideObject(_openai_shape(data), _proxy_extras(response.headers))
        extras = {}
        if response.headers.get("idempotent-replayed") == "true":
            extras["idempotent_replayed"] = True
        return RingsideObject(data, extras)


class Ringside(_ClientBase[httpx.Client, RingsideObject, Page, Stream, Iterator[str]]):
    """The blocking client. Use as a context manager, or call `close()` when done."""

    _http_class = httpx.Client
    _sleep = staticmethod(time.sleep)  # an instance attribute may replace it (tests)

    def _send(self, call: _Call) -> httpx.Response:
        attempts = self._attempts(call)
        outcome: _Outcome = None
        while True:
            try:
                step = attempts.send(outcome)
            except StopIteration as done:
                response: httpx.Response = done.value
                return response
            if isinstance(step, float):
                self._sleep(step)
                outcome = None
                continue
            try:
                outcome = self._http.send(step, stream=call.stream)
                if outcome.is_error:  # the retry policy and the error need the body
                    with contextlib.closing(outcome):
                        outcome.read()
            except httpx.TransportError as exc:
                outcome = exc

    def _object(self, call: _Call) -> RingsideObject:
        return self._result(call, self._send(call))

    def _page(self, call: _Call) -> Page:
        return Page(self._object(call)._data, call, self._page)

    def _stream(self, call: _Call) -> Stream:
        response = self._send(call)
        self._raise_for_status(response)
        return Stream(response, self.base_url)

    def _lines(self, call: _Call) -> Iterator[str]:
        response = self._send(call)
        self._raise_for_status(response)  # an error answer was read (and closed) by _send
        return _iter_lines(response)

    def health(self) -> RingsideObject:
        """GET /healthz (no key needed)."""
        return self._object(_Call("GET", "/healthz"))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Ringside:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRingside(
    _ClientBase[
        httpx.AsyncClient,
        Coroutine[Any, Any, RingsideObject],
        Coroutine[Any, Any, AsyncPage],
        Coroutine[Any, Any, AsyncStream],
        Coroutine[Any, Any, AsyncIterator[str]],
    ]
):
    """The asyncio twin of `Ringside`: the same resources and arguments, every call awaited.

    async with AsyncRingside() as client:
        customer = await client.customers.create(external_id="u_1", name="Ada")
        async for c in await client.customers.list():
            ...
    """

    _http_class = httpx.AsyncClient
    _sleep = staticmethod(asyncio.sleep)  # an instance attribute may replace it (tests)

    async def _send(self, call: _Call) -> httpx.Response:
        attempts = self._attempts(call)
        outcome: _Outcome = None
        while True:
            try:
                step = attempts.send(outcome)
            except StopIteration as done:
                response: httpx.Response = done.value
                return response
            if isinstance(step, float):
                await self._sleep(step)
                outcome = None
                continue
            try:
                outcome = await self._http.send(step, stream=call.stream)
                if outcome.is_error:  # the retry policy and the error need the body
                    try:
                        await outcome.aread()
                    finally:
                        await outcome.aclose()
            except httpx.TransportError as exc:
                outcome = exc

    async def _object(self, call: _Call) -> RingsideObject:
        return self._result(call, await self._send(call))

    async def _page(self, call: _Call) -> AsyncPage:
        return AsyncPage((await self._object(call))._data, call, self._page)

    async def _stream(self, call: _Call) -> AsyncStream:
        response = await self._send(call)
        self._raise_for_status(response)
        return AsyncStream(response, self.base_url)

    async def _lines(self, call: _Call) -> AsyncIterator[str]:
        response = await self._send(call)
        self._raise_for_status(response)
        return _aiter_lines(response)

    async def health(self) -> RingsideObject:
        """GET /healthz (no key needed)."""
        return await self._object(_Call("GET", "/healthz"))

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRingside:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
