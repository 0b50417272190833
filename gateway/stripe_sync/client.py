"""The official `stripe` SDK behind a narrow async API, and one classification of its errors.

The SDK's own retries are off (`max_network_retries=0`): the sync engine retries with its
own backoff and, crucially, persists "this request may have reached Stripe" before each
attempt, which the SDK cannot do for us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
import stripe

if TYPE_CHECKING:
    from stripe.params import CustomerCreateParams

log = logging.getLogger("ringside.stripe")

FailureKind = Literal["duplicate", "transient", "permanent", "global"]

# Stripe refuses a reused meter-event identifier (within its ~24 h window) with a 400
# `invalid_request_error` whose message starts like this; there is no dedicated code.
_DUPLICATE_PREFIX = "an event already exists with identifier"
# Exceptions raised before a single byte of the request left this process.
_NOT_SENT_CAUSES: tuple[type[BaseException], ...] = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(eq=False)
class StripeFailure(Exception):
    """A failed Stripe call, classified once for the engine and the operator."""

    kind: FailureKind
    code: str  # Ringside's code, e.g. stripe_customer_not_found
    message: str
    http_status: int | None = None
    stripe_code: str | None = None
    # False when Stripe certainly did not record the request (a 4xx answer, a refused
    # connection); True when it may have (5xx, timeout, connection lost mid-request).
    maybe_received: bool = False
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def classify(exc: BaseException) -> StripeFailure:
    """Map an SDK exception to what the engine should do with it."""
    if isinstance(exc, StripeFailure):
        return exc
    if isinstance(exc, stripe.APIConnectionError):
        cause = exc.__cause__
        not_sent = isinstance(cause, _NOT_SENT_CAUSES)
        return StripeFailure(
            "transient",
            "stripe_connection_failed",
            f"Could not reach Stripe ({type(cause).__name__ if cause else 'connection error'}).",
            maybe_received=not not_sent,
        )
    if not isinstance(exc, stripe.StripeError):
        return StripeFailure(
            "transient", "stripe_client_error", f"{type(exc).__name__}: {exc}", maybe_received=True
        )
    status = exc.http_status
    message = (exc.user_message or str(exc) or "").strip()
    stripe_code = exc.code
    retry_after = _retry_after(exc.headers)
    base = _Base(http_status=status, stripe_code=stripe_code)
    if status == 429 or isinstance(exc, stripe.RateLimitError):
        return StripeFailure(
            "transient", "stripe_rate_limited", message, retry_after_s=retry_after, **base.kw()
        )
    if status is None or status >= 500 or status == 409:
        # A 5xx may come after Stripe recorded the event; 409 is a lock conflict.
        return StripeFailure(
            "transient",
            "stripe_unavailable",
            message or f"Stripe answered {status}.",
            maybe_received=status != 409,
            retry_after_s=retry_after,
            **base.kw(),
        )
    lowered = message.lower()
    if lowered.startswith(_DUPLICATE_PREFIX):
        return StripeFailure("duplicate", "stripe_duplicate_identifier", message, **base.kw())
    if status == 401:
        return StripeFailure("global", "stripe_authentication_failed", message, **base.kw())
    if status == 403:
        return StripeFailure("global", "stripe_permission_denied", message, **base.kw())
    if "meter" in lowered and ("no active meter" in lowered or "no such meter" in lowered):
        return StripeFailure("global", "stripe_meter_not_found", message, **base.kw())
    if "customer" in lowered and (
        "no such customer" in lowered or stripe_code == "resource_missing"
    ):
        return StripeFailure("permanent", "stripe_customer_not_found", message, **base.kw())
    return StripeFailure(
        "permanent",
        f"stripe_{stripe_code}" if stripe_code else "stripe_invalid_request",
        message or f"Stripe answered {status}.",
        **base.kw(),
    )


@dataclass(frozen=True)
class _Base:
    http_status: int | None
    stripe_code: str | None

    def kw(self) -> dict[str, Any]:
        return {"http_status": self.http_status, "stripe_code": self.stripe_code}


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    with contextlib.suppress(Exception):
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value is not None:
            return max(0.0, float(value))
    return None


class StripeApi:
    """The few Stripe calls Ringside makes, on one `StripeClient` per event loop."""

    def __init__(self, api_key: str, api_base: str | None, *, timeout_s: float = 30.0) -> None:
        self.api_key = api_key
        self.api_base = api_base
        self.timeout_s = timeout_s
        # httpx's async pool belongs to the loop that first used it, and the dashboard may
        # call from its own loop: one client per event loop, dropped with its loop.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[stripe.StripeClient, stripe.HTTPXClient]
        ] = weakref.WeakKeyDictionary()

    def _stripe(self) -> stripe.StripeClient:
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            http = stripe.HTTPXClient(timeout=self.timeout_s)
            client = stripe.StripeClient(
                self.api_key,
                base_addresses={"api": self.api_base} if self.api_base else None,
                http_client=http,
                max_network_retries=0,
            )
            found = self._clients[loop] = (client, http)
        return found[0]

    async def create_meter_event(
        self,
        *,
        event_name: str,
        stripe_customer_id: str,
        value: int,
        identifier: str,
        timestamp: int,
    ) -> dict[str, Any]:
        try:
            # No idempotency key of ours: Stripe would replay a stored 500 for 24 h. The
            # identifier is what de-duplicates meter events; the SDK adds a fresh key.
            event = await self._stripe().v1.billing.meter_events.create_async(
                {
                    "event_name": event_name,
                    "payload": {"stripe_customer_id": stripe_customer_id, "value": str(value)},
                    "identifier": identifier,
                    "timestamp": timestamp,
                }
            )
        except Exception as exc:
            raise classify(exc) from exc
        return event.to_dict()

    async def create_customer(
        self, *, name: str, email: str | None, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        params: CustomerCreateParams = {"name": name, "metadata": metadata}
        if email:
            params["email"] = email
        try:
            customer = await self._stripe().v1.customers.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        except Exception as exc:
            raise classify(exc) from exc
        return str(customer.id)

    async def aclose(self) -> None:
        """Close the client of the running loop (the others close with their loops)."""
        found = self._clients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            with contextlib.suppress(Exception):
                await found[1].close_async()
