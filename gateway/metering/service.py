"""MeteringService: reserve → forward → settle for one proxied call.

Per call: parse once, price from the cached book, one ledger write to reserve, forward on
a pooled connection, one ledger write to settle. Upstream work and settlement run in a
task of their own (shielded from the client), so a client that disconnects never stops
settlement. Providers move bytes; every amount comes from the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from gateway.errors import ApiError, CustomerRequired, InvalidRequest, UpstreamError
from gateway.jsoncodec import encode
from gateway.ledger import (
    HoldKeeper,
    Ledger,
    Outcome,
    PriceBook,
    Reservation,
    Settlement,
    nanos_to_header,
    nanos_to_json,
)
from gateway.limits import Subject
from gateway.metering.observe import CallObserver, CallTrace
from gateway.metering.parse import Endpoint, ParsedCall, parse_call
from gateway.metering.upstream_errors import map_upstream_failure
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.anthropic_native import create_message, stream_message
from gateway.providers.base import ChatResult, ChatStream, UpstreamFailure
from gateway.providers.registry import ProviderRegistry
from gateway.tasks import BackgroundTasks
from gateway.terms import model_allowed
from gateway.tokens import TokenUsage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("ringside.metering")

__all__ = ["Endpoint", "MeteredJson", "MeteredResponse", "MeteredStream", "MeteringService"]

Untagged = Literal["reject", "allow"]

_DONE = b"data: [DONE]\n\n"
ROUTES: dict[Endpoint, str] = {
    "chat": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
}
MAX_CUSTOMER_REF = 255


@dataclass(frozen=True, slots=True)
class MeteredJson:
    """A whole JSON answer: the provider's body with Ringside's usage fields added."""

    body: bytes
    headers: dict[str, str]
    status: int = 200


@dataclass(frozen=True, slots=True)
class MeteredStream:
    """An SSE answer: the chunks are relayed while the call is settled behind them."""

    chunks: AsyncIterator[bytes]
    headers: dict[str, str]


MeteredResponse = MeteredJson | MeteredStream


def _money_headers(r: Reservation, s: Settlement | None) -> dict[str, str]:
    headers = {"FC-Request-Id": r.request_id, **r.rate_headers}
    if s is not None:
        headers["FC-Cost-USD"] = nanos_to_header(s.cost_nanos)
        headers["FC-Price-USD"] = nanos_to_header(s.price_nanos)
        if s.budget_remaining_nanos is not None:
            headers["FC-Budget-Remaining-USD"] = nanos_to_header(s.budget_remaining_nanos)
        if s.wallet_balance_nanos is not None:
            headers["FC-Wallet-Balance-USD"] = nanos_to_header(s.wallet_balance_nanos)
    else:
        if r.budget_remaining_nanos is not None:
            headers["FC-Budget-Remaining-USD"] = nanos_to_header(r.budget_remaining_nanos)
        if r.wallet_available_nanos is not None:
            headers["FC-Wallet-Balance-USD"] = nanos_to_header(r.wallet_available_nanos)
    return headers


def _upstream_body(call: ParsedCall, reservation: Reservation) -> dict[str, Any]:
    est = call.estimate
    out = dict(call.body)
    out["model"] = est.model
    if reservation.max_output_tokens is not None:
        out.pop("max_tokens", None)
        out.pop("max_completion_tokens", None)
        out[call.provider.output_limit_param(est.model)] = reservation.max_output_tokens
    if call.endpoint == "messages":
        if "max_tokens" not in out:  # Anthropic requires it
            out["max_tokens"] = est.rates.max_output_tokens
    elif est.stream:
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    return out


class _Call:
    """One call in flight: its parsed request, its reservation, its trace and its clock."""

    def __init__(self, parsed: ParsedCall, reservation: Reservation, trace: CallTrace) -> None:
        self.parsed = parsed
        self.reservation = reservation
        self.trace = trace
        self.started = time.perf_counter()

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def upstream_body(self) -> dict[str, Any]:
        return _upstream_body(self.parsed, self.reservation)


class MeteringService:
    """The one path a model call takes through Ringside."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        prices: PriceBook,
        providers: ProviderRegistry,
        holds: HoldKeeper,
        untagged: Untagged,
        tasks: BackgroundTasks,
        models: list[dict[str, Any]],
        observer: CallObserver,
    ) -> None:
        self._observer = observer
        self._ledger = ledger
        self._prices = prices
        self._providers = providers
        self._holds = holds
        self._untagged = untagged
        self._tasks = tasks
        self._models = models

    # ------------------------------------------------------------------ entry point
    async def call(
        self,
        endpoint: Endpoint,
        raw_body: bytes,
        customer_header: str | None,
        key: Subject | None = None,
    ) -> MeteredResponse:
        """Meter one call. Raises `ApiError` for a refusal (nothing forwarded, nothing
        charged) or an upstream failure (settled as such, not charged). `key` is the
        calling app key when it has rate limits of its own."""
        trace = CallTrace(ROUTES[endpoint])
        self._observer.begin(trace)
        try:
            parsed = parse_call(endpoint, raw_body, self._providers, self._prices)
            trace.provider, trace.model = parsed.estimate.provider, parsed.estimate.model
            customer_ref = self._customer_ref(customer_header)
            if parsed.estimate.stream:
                return await self._stream(parsed, customer_ref, trace, key)
            return await self._unary(parsed, customer_ref, trace, key)
        except ApiError as err:
            self._observer.failed(trace, err)
            raise

    def models(self) -> list[dict[str, Any]]:
        """The routable models, as GET /v1/models lists them."""
        return self._models

    async def models_for(self, customer_header: str | None) -> list[dict[str, Any]]:
        """The routable models; with a customer, only those its allow-list lets it call."""
        ref = customer_header.strip() if customer_header is not None else None
        if not ref:
            return self._models
        if len(ref) > MAX_CUSTOMER_REF:
            raise InvalidRequest("FC-Customer is too long.", param="FC-Customer")
        _, terms = await self._ledger.read(self._ledger.customer_on_terms, ref)
        if terms.allowed_models is None:
            return self._models
        allowed = []
        for item in self._models:
            provider, _, model = str(item["id"]).removeprefix("fc:").partition("/")
            if model_allowed(terms.allowed_models, provider, model):
                allowed.append(item)
        return allowed

    # ------------------------------------------------------------------ helpers
    def _customer_ref(self, header: str | None) -> str | None:
        ref = header.strip() if header is not None else None
        if not ref:
            if self._untagged == "allow":
                return None
            raise CustomerRequired(param="FC-Customer")
        if len(ref) > MAX_CUSTOMER_REF:
            raise InvalidRequest("FC-Customer is too long.", param="FC-Customer")
        return ref

    async def _reserve(
        self, parsed: ParsedCall, customer_ref: str | None, trace: CallTrace, key: Subject | None
    ) -> Reservation:
        started = time.perf_counter()
        with self._observer.child(trace, "reserve"):
            reservation = await self._ledger.reserve(customer_ref, parsed.estimate, key)
        self._observer.timed_reserve(started)
        trace.reservation = reservation
        return reservation

    async def _settle(self, call: _Call, outcome: Outcome) -> Settlement:
        started = time.perf_counter()
        with self._observer.child(call.trace, "settle"):
            settlement = await self._ledger.settle(call.reservation, outcome)
        self._observer.timed_settle(started)
        return settlement

    def _upstream_span(self, call: _Call) -> AbstractContextManager[Span | None]:
        operation = "embeddings" if call.parsed.endpoint == "embeddings" else "chat"
        attributes = self._observer.upstream_attributes(
            call.trace, call.parsed.provider.settings.kind, operation
        )
        return self._observer.child(call.trace, "upstream", attributes)

    async def _fail(self, call: _Call, failure: UpstreamFailure) -> ApiError:
        """Settle an upstream failure (nothing charged); the error to answer with."""
        err = map_upstream_failure(failure)
        await self._settle(call, Outcome("error", err.status, None, err.code, call.latency_ms()))
        err.headers["FC-Request-Id"] = call.reservation.request_id
        err.headers.update(call.reservation.rate_headers)
        return err

    async def _internal_error(self, call: _Call) -> None:
        await self._settle(call, Outcome("error", 500, None, "internal_error", call.latency_ms()))

    async def _forward(self, call: _Call) -> ChatResult:
        provider, body = call.parsed.provider, call.upstream_body()
        if call.parsed.endpoint == "chat":
            return await provider.chat(body)
        if call.parsed.endpoint == "messages":
            assert isinstance(provider, AnthropicProvider)  # parse_call checked it
            return await create_message(provider, body)
        return await provider.embeddings(body)

    async def _open_stream(self, call: _Call) -> ChatStream:
        provider, body = call.parsed.provider, call.upstream_body()
        if call.parsed.endpoint == "messages":
            assert isinstance(provider, AnthropicProvider)
            return await stream_message(provider, body)
        return await provider.chat_stream(body)

    # ------------------------------------------------------------------ unary
    async def _unary(
        self, parsed: ParsedCall, customer_ref: str | None, trace: CallTrace, key: Subject | None
    ) -> MeteredJson:
        reservation = await self._reserve(parsed, customer_ref, trace, key)
        call = _Call(parsed, reservation, trace)
        # Shielded: if the client goes away, the upstream call still completes and settles.
        return await asyncio.shield(self._tasks.spawn(self._forward_and_settle(call, trace)))

    async def _forward_and_settle(self, call: _Call, trace: CallTrace) -> MeteredJson:
        reservation = call.reservation
        self._holds.track(reservation.hold_id)
        try:
            try:
                forwarded = time.perf_counter()
                with self._upstream_span(call) as span:
                    result = await self._forward(call)
                    self._observer.usage_attributes(span, result.usage)
                self._observer.upstream(trace.provider, forwarded)
            except UpstreamFailure as f:
                raise await self._fail(call, f) from None
            except BaseException:
                await self._internal_error(call)
                raise
            settlement = await self._settle(
                call, Outcome("ok", 200, result.usage, None, call.latency_ms())
            )
        finally:
            self._holds.untrack(reservation.hold_id)
        out = result.body
        usage = out.get("usage")
        if isinstance(usage, dict):
            usage["cost_usd"] = nanos_to_json(settlement.cost_nanos)
            usage["price_usd"] = nanos_to_json(settlement.price_nanos)
        self._observer.done(trace, settlement)
        return MeteredJson(encode(out), _money_headers(reservation, settlement))

    # ------------------------------------------------------------------ streams
    async def _stream(
        self, parsed: ParsedCall, customer_ref: str | None, trace: CallTrace, key: Subject | None
    ) -> MeteredStream:
        reservation = await self._reserve(parsed, customer_ref, trace, key)
        call = _Call(parsed, reservation, trace)
        self._holds.track(reservation.hold_id)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        opened: asyncio.Future[ApiError | None] = asyncio.get_running_loop().create_future()
        self._tasks.spawn(self._relay_and_settle(call, queue, opened, trace))
        stream_bytes = self._observer.metrics.stream_bytes
        refused = await asyncio.shield(opened)
        if refused is not None:
            raise refused

        async def relay() -> AsyncIterator[bytes]:
            # Whatever is already waiting goes out in one write: a burst of upstream chunks
            # costs one send, a paced stream still sends each chunk the moment it arrives.
            while True:
                item = await queue.get()
                if item is None:
                    return
                burst = [item]
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        data = b"".join(burst)
                        stream_bytes.inc(len(data))
                        yield data
                        return
                    burst.append(more)
                data = b"".join(burst) if len(burst) > 1 else item
                stream_bytes.inc(len(data))
                yield data

        headers = _money_headers(reservation, None)
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        return MeteredStream(relay(), headers)

    async def _relay_and_settle(
        self,
        call: _Call,
        queue: asyncio.Queue[bytes | None],
        opened: asyncio.Future[ApiError | None],
        trace: CallTrace,
    ) -> None:
        """Open the upstream stream, relay it into the queue, settle. Never cancelled by
        the client going away: it runs as its own task."""
        reservation = call.reservation
        forwarded = time.perf_counter()
        upstream_span = contextlib.ExitStack()
        span = upstream_span.enter_context(self._upstream_span(call))
        try:
            upstream = await self._open_stream(call)
        except UpstreamFailure as f:
            upstream_span.close()
            self._holds.untrack(reservation.hold_id)
            opened.set_result(await self._fail(call, f))
            return
        except BaseException as exc:
            upstream_span.close()
            self._holds.untrack(reservation.hold_id)
            await self._internal_error(call)
            opened.set_exception(exc)
            return
        opened.set_result(None)
        usage: TokenUsage | None = None
        usage_data: bytes | None = None
        produced = 0
        failure: UpstreamFailure | None = None
        cancelled = False
        try:
            async for chunk in upstream:
                if upstream.framed:  # relayed as they are, usage events included
                    usage = chunk.usage or usage
                    produced += chunk.output_tokens
                    queue.put_nowait(chunk.data)
                    continue
                if chunk.usage is not None:
                    usage, usage_data = chunk.usage, chunk.data
                    continue
                produced += chunk.output_tokens
                queue.put_nowait(b"data: " + chunk.data + b"\n\n")
        except UpstreamFailure as f:
            failure = f
        except asyncio.CancelledError:
            # Shutdown's grace period is over: cut the stream, charge what it produced.
            cancelled = True
            failure = UpstreamFailure("protocol", "the gateway shut down during the stream")
        except Exception as exc:  # never lose the settlement to an unexpected error
            failure = UpstreamFailure("protocol", f"stream relay failed: {type(exc).__name__}")
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection may fail again
                await upstream.aclose()
        self._observer.usage_attributes(span, usage)
        upstream_span.close()
        self._observer.upstream(trace.provider, forwarded)
        if usage is None:
            # No usage from the provider (cut stream): charge what it produced, as counted.
            bound = call.parsed.estimate.input_tokens_bound
            usage = TokenUsage(input_tokens=(bound + 3) // 4, output_tokens=produced)
        error = map_upstream_failure(failure) if failure is not None else None
        settlement: Settlement | None = None
        try:
            settlement = await self._settle(
                call,
                Outcome(
                    "ok" if error is None else "cut",
                    200,
                    usage,
                    error.code if error else None,
                    call.latency_ms(),
                ),
            )
        except Exception:
            # A bug, not the database (the ledger retries and spools that): say so loudly,
            # and still end the client's stream. The hold lapses and is swept.
            log.exception("settling stream %s failed", reservation.request_id)
            error = error or UpstreamError("Ringside could not settle this call.")
        finally:
            self._holds.untrack(reservation.hold_id)
        if settlement is not None:
            self._observer.done(trace, settlement, "ok" if error is None else "cut")
        if settlement is not None and call.parsed.client_wants_usage and usage_data is not None:
            queue.put_nowait(_usage_chunk(usage_data, settlement))
        if upstream.framed:
            if error is not None:
                queue.put_nowait(
                    b"event: error\ndata: "
                    + encode(
                        {"type": "error", "error": {"type": "api_error", "message": error.message}}
                    )
                    + b"\n\n"
                )
        else:
            queue.put_nowait(b"data: " + encode(error.body()) + b"\n\n" if error else _DONE)
        queue.put_nowait(None)
        if cancelled:
            raise asyncio.CancelledError


def _usage_chunk(usage_data: bytes, settlement: Settlement) -> bytes:
    """The provider's usage chunk with Ringside's cost and price added."""
    chunk_obj = msgspec.json.decode(usage_data)
    if isinstance(chunk_obj.get("usage"), dict):
        chunk_obj["usage"]["cost_usd"] = nanos_to_json(settlement.cost_nanos)
        chunk_obj["usage"]["price_usd"] = nanos_to_json(settlement.price_nanos)
    return b"data: " + encode(chunk_obj) + b"\n\n"
