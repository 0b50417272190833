"""The OpenAI-compatible proxy routes: the product's hot path.

Per call: parse once, price from the cached book, one ledger write to reserve, forward
on a pooled connection, one ledger write to settle. Upstream work and settlement run
in a shielded task, so a client that disconnects never stops settlement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Stream

from gateway.api.common import decode, encode, json_response
from gateway.api.errors import api_error_response
from gateway.errors import (
    ApiError,
    CustomerRequired,
    InvalidRequest,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from gateway.ledger.amounts import nanos_to_header, nanos_to_json
from gateway.ledger.bounds import chat_input_bound, embeddings_input_bound
from gateway.ledger.ledger import CallEstimate, Outcome, Reservation, Settlement
from gateway.ledger.prices import TokenUsage
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.anthropic_native import create_message, stream_message
from gateway.providers.base import Provider, UpstreamFailure
from gateway.providers.registry import parse_model


def map_upstream_failure(f: UpstreamFailure) -> ApiError:
    if f.kind == "timeout":
        return UpstreamTimeout(f.message)
    if f.status == 429:
        return UpstreamRateLimited(f.message)
    if f.status in (401, 403):
        return UpstreamAuthFailed(
            f"The provider refused Ringside's credentials ({f.status}): {f.message} "
            "Check the provider's API key in Ringside's environment."
        )
    if f.status is not None and f.status in (400, 404, 409, 413, 422):
        err = InvalidRequest(f"Upstream refused the request: {f.message}")
        err.status = f.status  # type: ignore[misc]
        err.code = f.code if isinstance(f.code, str) else "upstream_invalid_request"  # type: ignore[misc]
        return err
    return UpstreamError(f.message)


def _positive_int(body: dict[str, Any], name: str, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidRequest(f"{name} must be an integer between 1 and {maximum}.", param=name)
    return value


class ProxyCall:
    """Everything about one proxied call, from parsed request to settlement."""

    def __init__(self, request: Request[Any, Any, Any], endpoint: str) -> None:
        self.state = request.app.state
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.request = request

    async def prepare(self) -> tuple[dict[str, Any], Provider, CallEstimate]:
        raw = await self.request.body()
        body = decode(raw)
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        model_ref = body.get("model")
        if self.endpoint == "messages" and isinstance(model_ref, str) and "/" not in model_ref:
            model_ref = f"anthropic/{model_ref}"  # the anthropic SDK sends bare model names
        provider_name, model = parse_model(model_ref)
        provider = self.state.providers.get(provider_name, model)
        if self.endpoint == "messages" and not isinstance(provider, AnthropicProvider):
            raise InvalidRequest(
                f"/v1/messages serves Anthropic providers; '{provider_name}' is not one. "
                "Use /v1/chat/completions.",
                param="model",
            )
        rates = self.state.prices.rates(provider_name, model)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("stream must be true or false.", param="stream")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise InvalidRequest("stream_options must be an object.", param="stream_options")
        if self.endpoint in ("chat", "messages"):
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InvalidRequest("messages must be a non-empty array.", param="messages")
            if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
                raise InvalidRequest(
                    "each message must be an object with a role.", param="messages"
                )
            n = _positive_int(body, "n", 128) or 1 if self.endpoint == "chat" else 1
            limit = max(
                _positive_int(body, "max_tokens", 10_000_000) or 0,
                _positive_int(body, "max_completion_tokens", 10_000_000) or 0,
            )
            requested = limit * n if limit else None
            input_bound = chat_input_bound(body)
            if self.endpoint == "messages" and body.get("system") is not None:
                input_bound += len(encode(body["system"]))
        else:
            if body.get("input") in (None, "", []):
                raise InvalidRequest("input is required.", param="input")
            stream, n, requested = False, 1, None
            input_bound = embeddings_input_bound(body)
        estimate = CallEstimate(
            provider=provider_name,
            model=model,
            endpoint=self.endpoint,
            stream=stream,
            rates=rates,
            input_tokens_bound=input_bound,
            requested_output_tokens=requested,
            output_multiplier=n,
        )
        return body, provider, estimate

    def customer_ref(self) -> str | None:
        ref = self.request.headers.get("fc-customer")
        if ref is not None:
            ref = ref.strip()
        if not ref:
            if self.state.settings.billing.untagged == "allow":
                return None
            raise CustomerRequired(param="FC-Customer")
        if len(ref) > 255:
            raise InvalidRequest("FC-Customer is too long.", param="FC-Customer")
        return ref

    def upstream_body(
        self, body: dict[str, Any], provider: Provider, reservation: Reservation
    ) -> dict[str, Any]:
        est = reservation.estimate
        assert est is not None
        out = dict(body)
        out["model"] = est.model
        if reservation.max_output_tokens is not None:
            out.pop("max_tokens", None)
            out.pop("max_completion_tokens", None)
            out[provider.output_limit_param(est.model)] = reservation.max_output_tokens
        if est.endpoint == "messages":
            if "max_tokens" not in out:  # Anthropic requires it
                out["max_tokens"] = est.rates.max_output_tokens
        elif est.stream:
            options = dict(out.get("stream_options") or {})
            options["include_usage"] = True
            out["stream_options"] = options
        return out

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def money_headers(self, r: Reservation, s: Settlement | None) -> dict[str, str]:
        headers = {"FC-Request-Id": r.request_id}
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

    async def fail(self, r: Reservation, f: UpstreamFailure) -> ApiError:
        err = map_upstream_failure(f)
        await self.state.ledger.settle(
            r, Outcome("error", err.status, None, err.code, self.latency_ms())
        )
        err.headers["FC-Request-Id"] = r.request_id
        return err


def _spawn(state: Any, coro: Awaitable[Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    state.background.add(task)
    task.add_done_callback(state.background.discard)
    return task


@post(
    "/v1/chat/completions",
    opt={"auth": "app"},
    tags=["proxy"],
    status_code=200,
    summary="OpenAI-compatible chat completions (JSON or SSE stream)",
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _proxy(request, "chat")


async def _proxy(request: Request[Any, Any, Any], endpoint: str) -> Response[Any]:
    call = ProxyCall(request, endpoint)
    body, provider, estimate = await call.prepare()
    if not estimate.stream:
        return await _unary_prepared(call, body, provider, estimate)
    return await _stream(call, body, provider, estimate)


async def _unary_prepared(
    call: ProxyCall, body: dict[str, Any], provider: Provider, estimate: CallEstimate
) -> Response[bytes]:
    state = call.state
    reservation = await state.ledger.reserve(call.customer_ref(), estimate)

    async def forward_and_settle() -> Response[bytes]:
        state.holds.track(reservation.hold_id)
        try:
            try:
                upstream = call.upstream_body(body, provider, reservation)
                if call.endpoint == "chat":
                    result = await provider.chat(upstream)
                elif call.endpoint == "messages":
                    result = await create_message(provider, upstream)  # type: ignore[arg-type]
                else:
                    result = await provider.embeddings(upstream)
            except UpstreamFailure as f:
                return api_error_response(await call.fail(reservation, f))
            except BaseException:
                await state.ledger.settle(
                    reservation, Outcome("error", 500, None, "internal_error", call.latency_ms())
                )
                raise
            settlement = await state.ledger.settle(
                reservation, Outcome("ok", 200, result.usage, None, call.latency_ms())
            )
        finally:
            state.holds.untrack(reservation.hold_id)
        out = result.body
        usage = out.get("usage")
        if isinstance(usage, dict):
            usage["cost_usd"] = nanos_to_json(settlement.cost_nanos)
            usage["price_usd"] = nanos_to_json(settlement.price_nanos)
        return json_response(out, headers=call.money_headers(reservation, settlement))

    # Shielded: if the client goes away, the upstream call still completes and settles.
    return await asyncio.shield(_spawn(state, forward_and_settle()))


_DONE = b"data: [DONE]\n\n"


async def _stream(
    call: ProxyCall, body: dict[str, Any], provider: Provider, estimate: CallEstimate
) -> Response[Any]:
    state = call.state
    client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    reservation = await state.ledger.reserve(call.customer_ref(), estimate)
    state.holds.track(reservation.hold_id)
    open_stream = (
        functools.partial(stream_message, provider)  # type: ignore[arg-type]
        if call.endpoint == "messages"
        else provider.chat_stream
    )
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    opened: asyncio.Future[ApiError | None] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        """Open the upstream stream, relay it into the queue, settle. Never cancelled by
        the client going away: it runs as its own task."""
        try:
            upstream = await open_stream(call.upstream_body(body, provider, reservation))
        except UpstreamFailure as f:
            state.holds.untrack(reservation.hold_id)
            opened.set_result(await call.fail(reservation, f))
            return
        except BaseException as exc:
            state.holds.untrack(reservation.hold_id)
            await state.ledger.settle(
                reservation, Outcome("error", 500, None, "internal_error", call.latency_ms())
            )
            opened.set_exception(exc)
            return
        opened.set_result(None)
        usage: TokenUsage | None = None
        usage_data: bytes | None = None
        produced = 0
        failure: UpstreamFailure | None = None
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
                # Let the relay send it now, even when the upstream's bytes are all buffered.
                await asyncio.sleep(0)
        except UpstreamFailure as f:
            failure = f
        except Exception as exc:  # never lose the settlement to an unexpected error
            failure = UpstreamFailure("protocol", f"stream relay failed: {type(exc).__name__}")
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection may fail again
                await upstream.aclose()
        status = "ok" if failure is None else "cut"
        if usage is None:
            # No usage from the provider (cut stream): charge what it produced, as counted.
            usage = TokenUsage(
                input_tokens=(estimate.input_tokens_bound + 3) // 4, output_tokens=produced
            )
        error = map_upstream_failure(failure) if failure is not None else None
        try:
            settlement = await state.ledger.settle(
                reservation,
                Outcome(status, 200, usage, error.code if error else None, call.latency_ms()),
            )
        finally:
            state.holds.untrack(reservation.hold_id)
        if client_wants_usage and usage_data is not None:
            chunk_obj = msgspec.json.decode(usage_data)
            if isinstance(chunk_obj.get("usage"), dict):
                chunk_obj["usage"]["cost_usd"] = nanos_to_json(settlement.cost_nanos)
                chunk_obj["usage"]["price_usd"] = nanos_to_json(settlement.price_nanos)
            queue.put_nowait(b"data: " + encode(chunk_obj) + b"\n\n")
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

    _spawn(state, run())
    refused = await asyncio.shield(opened)
    if refused is not None:
        return api_error_response(refused)

    async def relay() -> AsyncIterator[bytes]:
        while True:
            item = await queue.get()
            if item is None:
                return
            yield item

    headers = call.money_headers(reservation, None)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return Stream(relay(), media_type="text/event-stream", headers=headers)


@post(
    "/v1/embeddings",
    opt={"auth": "app"},
    tags=["proxy"],
    status_code=200,
    summary="OpenAI-compatible embeddings",
)
async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _proxy(request, "embeddings")  # never streamed: prepare() says so


@post(
    "/v1/messages",
    opt={"auth": "app"},
    tags=["proxy"],
    status_code=200,
    summary="Anthropic Messages API passthrough (for the anthropic SDK), metered",
)
async def anthropic_messages(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _proxy(request, "messages")


@get("/v1/models", opt={"auth": "app"}, tags=["proxy"], summary="Routable models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response({"object": "list", "data": request.app.state.model_list})


ROUTES = [chat_completions, embeddings, anthropic_messages, list_models]
