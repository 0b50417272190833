"""Anthropic's own Messages API, passed through (for clients using the `anthropic` SDK).

`POST /v1/messages` on Ringside forwards the body to an Anthropic provider unchanged
(but for the model name and a clamped max_tokens), meters it like any other call, and
relays the reply or the SSE event stream byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from gateway.providers.anthropic import (
    AnthropicProvider,
    _describe,
    _error_of,
    anthropic_usage,
)
from gateway.providers.base import ChatResult, ChatStream, StreamChunk, UpstreamFailure


async def create_message(provider: AnthropicProvider, payload: dict[str, Any]) -> ChatResult:
    message = await provider.create_message(payload)
    return ChatResult(message, anthropic_usage(message.get("usage")))


async def stream_message(provider: AnthropicProvider, payload: dict[str, Any]) -> ChatStream:
    return NativeStream(await provider.open_stream(payload))


class NativeStream(ChatStream):
    """Relays Anthropic's SSE events as they are; reads usage from message_start/_delta."""

    framed = True

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:  # type: ignore[override]
        usage: dict[str, Any] = {}
        lines: list[str] = []
        try:
            async for line in self._response.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                if not lines:
                    continue
                raw = ("\n".join(lines) + "\n\n").encode()
                data = "\n".join(x[5:].lstrip() for x in lines if x.startswith("data:"))
                lines = []
                event = _decode(data)
                kind = event.get("type")
                if kind == "message_start":
                    usage.update((event.get("message") or {}).get("usage") or {})
                elif kind == "message_delta":
                    usage.update(
                        {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
                    )
                elif kind == "error":
                    code, message = _error_of(event)
                    yield StreamChunk(raw)
                    raise UpstreamFailure(
                        "status", message or "Anthropic stream error", status=502, code=code
                    )
                if kind == "message_stop":
                    yield StreamChunk(raw, usage=anthropic_usage(usage))
                    return
                delta = event.get("delta") or {}
                text = delta.get("text") or delta.get("partial_json") or ""
                yield StreamChunk(raw, output_tokens=max(1, len(text) // 4) if text else 0)
        except httpx.TimeoutException as exc:
            raise UpstreamFailure("timeout", _describe("stream timed out", exc)) from None
        except httpx.HTTPError as exc:
            raise UpstreamFailure("connect", _describe("stream broke off", exc)) from None
        raise UpstreamFailure("connect", "The Anthropic stream ended before message_stop.")

    async def aclose(self) -> None:
        await self._response.aclose()


def _decode(data: str) -> dict[str, Any]:
    try:
        event = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {}
    return event if isinstance(event, dict) else {}
