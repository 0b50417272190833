"""A proxy request body, validated and bounded before any money moves.

`parse_call` turns the raw JSON body of one proxy route into the upstream provider to
use and the `CallEstimate` the ledger reserves against. Every refusal here happens
before a hold exists, so a bad request can never leave money held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.errors import InvalidRequest
from gateway.jsoncodec import decode, encode
from gateway.ledger import CallEstimate, PriceBook, chat_input_bound, embeddings_input_bound
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.registry import ProviderRegistry, parse_model

Endpoint = Literal["chat", "embeddings", "messages"]


@dataclass(frozen=True, slots=True)
class ParsedCall:
    endpoint: Endpoint
    body: dict[str, Any]
    provider: Provider
    estimate: CallEstimate
    # The client asked for usage in its stream (`stream_options.include_usage`).
    client_wants_usage: bool


def _positive_int(body: dict[str, Any], name: str, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidRequest(f"{name} must be an integer between 1 and {maximum}.", param=name)
    return value


def parse_call(
    endpoint: Endpoint, raw: bytes, providers: ProviderRegistry, prices: PriceBook
) -> ParsedCall:
    body = decode(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model_ref = body.get("model")
    if endpoint == "messages" and isinstance(model_ref, str) and "/" not in model_ref:
        model_ref = f"anthropic/{model_ref}"  # the anthropic SDK sends bare model names
    provider_name, model = parse_model(model_ref)
    provider = providers.get(provider_name, model)
    if endpoint == "messages" and not isinstance(provider, AnthropicProvider):
        raise InvalidRequest(
            f"/v1/messages serves Anthropic providers; '{provider_name}' is not one. "
            "Use /v1/chat/completions.",
            param="model",
        )
    rates = prices.rates(provider_name, model)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be true or false.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options must be an object.", param="stream_options")
    requested: int | None
    if endpoint in ("chat", "messages"):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty array.", param="messages")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise InvalidRequest("each message must be an object with a role.", param="messages")
        n = (_positive_int(body, "n", 128) or 1) if endpoint == "chat" else 1
        limit = max(
            _positive_int(body, "max_tokens", 10_000_000) or 0,
            _positive_int(body, "max_completion_tokens", 10_000_000) or 0,
        )
        requested = limit * n if limit else None
        input_bound = chat_input_bound(body)
        if endpoint == "messages" and body.get("system") is not None:
            input_bound += len(encode(body["system"]))
    else:
        if body.get("input") in (None, "", []):
            raise InvalidRequest("input is required.", param="input")
        stream, n, requested = False, 1, None
        input_bound = embeddings_input_bound(body)
    estimate = CallEstimate(
        provider=provider_name,
        model=model,
        endpoint=endpoint,
        stream=stream,
        rates=rates,
        input_tokens_bound=input_bound,
        requested_output_tokens=requested,
        output_multiplier=n,
    )
    return ParsedCall(
        endpoint=endpoint,
        body=body,
        provider=provider,
        estimate=estimate,
        client_wants_usage=bool((options or {}).get("include_usage")),
    )
