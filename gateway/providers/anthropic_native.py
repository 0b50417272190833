"""Anthropic's own Messages API, passed through (for clients using the `anthropic` SDK).

`POST /v1/messages` on Ringside forwards the body to an Anthropic provider unchanged
(but for the model name and a clamped max_tokens), meters it like any other call, and
relays the reply or the SSE event stream byte for byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from gateway.providers.anthropic import (
    AnthropicProvider,
    _error_of,
    anthropic_usage,
    transport_failure,
)
from gateway.providers.base import ChatResult, ChatStream, StreamChunk, UpstreamFailure
from gateway.providers.sse import event_data
from gateway.providers.upstream import TRANSPORT_ERRORS, UpstreamStream

# Events whose whole payload matters (usage, errors); the others are only sized.
_FULL_DECODE = frozenset({"message_start", "message_delta", "error"})


async def create_message(provider: AnthropicProvider, payload: dict[str, Any]) -> ChatResult:
    message = await provider.create_message(payload)
    return ChatResult(message, anthropic_usage(message.get("usage")))


async def stream_message(provider: AnthropicProvider, payload: dict[str, Any]) -> ChatStream:
    return NativeStream(await provider.open_stream(payload), provider.client)


class _Delta(msgspec.Struct):
    text: str | None = None
    partial_json: str | None = None


class _Event(msgspec.Struct):
    """What a content event needs decoding: its type and the size of its delta."""

    type: str | None = None
    delta: _Delta | None = None


_event_decoder = msgspec.json.Decoder(_Event)


class NativeStream(UpstreamStream):
    """Relays Anthropic's SSE events as they are; reads usage from message_start/_delta."""

    framed = True

    async def chunks(self) -> AsyncGenerator[StreamChunk, None]:
        usage: dict[str, Any] = {}
        complete = False
        try:
            async with contextlib.aclosing(self.events()) as events:
                async for block in events:
                    raw = block + b"\n\n"
                    data = event_data(block) or b""
                    kind, text = _peek(data)
                    if kind in _FULL_DECODE:
                        event = _decode(data)
                        if kind == "message_start":
                            usage.update((event.get("message") or {}).get("usage") or {})
                        elif kind == "message_delta":
                            usage.update(
                                {
                                    k: v
                                    for k, v in (event.get("usage") or {}).items()
                                    if v is not None
                                }
                            )
                        else:
                            code, message = _error_of(event)
                            yield StreamChunk(raw)
                            raise UpstreamFailure(
                                "status",
                                message or "Anthropic stream error",
                                status=502,
                                code=code,
                            )
                    if kind == "message_stop":
                        complete = True
                        yield StreamChunk(raw, usage=anthropic_usage(usage))
                        return
                    yield StreamChunk(raw, output_tokens=max(1, len(text) // 4) if text else 0)
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._client, exc, streaming=True) from None
        except UpstreamFailure as failure:  # an error event: its message is the upstream's
            raise self._client.redacted(failure) from None
        finally:
            self.release(complete=complete)
        raise UpstreamFailure("connect", "The Anthropic stream ended before message_stop.")


def _peek(data: bytes) -> tuple[str | None, Any]:
    """(type, delta text or partial JSON) of an event, without building the rest of it."""
    try:
        event = _event_decoder.decode(data)
    except msgspec.ValidationError:
        # An unusual shape: the generic decode, read as before.
        full = _decode(data)
        kind = full.get("type")
        delta = full.get("delta")
        text = ""
        if isinstance(delta, dict):
            text = delta.get("text") or delta.get("partial_json") or ""
        return (kind if isinstance(kind, str) else None), text
    except msgspec.DecodeError:
        return None, ""
    delta = event.delta
    text = (delta.text or delta.partial_json or "") if delta is not None else ""
    return event.type, text


def _decode(data: bytes) -> dict[str, Any]:
    try:
        event = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {}
    return event if isinstance(event, dict) else {}
