"""Any OpenAI-compatible upstream (OpenAI itself, vLLM, Ollama, Groq, ...).

Bodies are forwarded as they are (model name swapped); streams are relayed chunk by
chunk without re-encoding. Each payload is decoded only as far as the stream needs it
(content lengths for the output estimate of a cut stream, usage, errors).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from gateway.config import ProviderSettings
from gateway.jsoncodec import encode
from gateway.providers.base import (
    ChatResult,
    ChatStream,
    Provider,
    StreamChunk,
    UpstreamFailure,
    openai_usage_to_tokens,
)
from gateway.providers.sse import event_data
from gateway.providers.upstream import TRANSPORT_ERRORS, UpstreamClient, UpstreamStream

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _error_message(raw: bytes, status: int) -> tuple[str, str | None]:
    try:
        body = msgspec.json.decode(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return str(err.get("message") or f"HTTP {status}")[:500], err.get("code") or err.get(
                "type"
            )
        if isinstance(err, str):
            return err[:500], None
    except (msgspec.DecodeError, AttributeError):
        pass
    return f"upstream answered HTTP {status}", None


def map_transport_error(exc: BaseException, client: UpstreamClient) -> UpstreamFailure:
    return client.failure(
        exc,
        timeout=f"Provider '{client.name}' did not answer in time.",
        connect=f"Could not reach provider '{client.name}': {type(exc).__name__}.",
    )


# The fields of a chunk the stream needs, decoded without building the rest. A chunk of
# another shape fails validation and takes the generic path (`_generic_chunk`).
class _Function(msgspec.Struct):
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | msgspec.UnsetType | None = msgspec.UNSET
    usage: dict[str, Any] | None = None
    error: Any = msgspec.UNSET


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def _typed_tokens(choices: list[_Choice] | msgspec.UnsetType | None) -> int:
    """`_delta_tokens` over the typed chunk: the same estimate."""
    if not choices:
        return 0
    n = 0
    for choice in choices:
        delta = choice.delta
        if delta is None:
            continue
        content = delta.content or delta.reasoning_content or ""
        if content:
            n += max(1, len(content) // 4)
        for call in delta.tool_calls or ():
            args = (call.function.arguments if call.function else None) or ""
            if args:
                n += max(1, len(args) // 4)
    return n


class OpenAIStream(UpstreamStream):
    """Relays an OpenAI-format SSE stream chunk by chunk, payload bytes untouched."""

    async def chunks(self) -> AsyncGenerator[StreamChunk, None]:
        complete = False
        try:
            async with contextlib.aclosing(self.events()) as events:
                async for block in events:
                    data = event_data(block)
                    if data is None:
                        continue
                    data = data.strip()
                    if data == b"[DONE]":
                        complete = True
                        return
                    try:
                        chunk = _chunk_decoder.decode(data)
                    except msgspec.ValidationError:
                        for out in _generic_chunk(data):
                            yield out
                        continue
                    except msgspec.DecodeError:
                        continue  # not JSON: skipped, as before
                    if chunk.usage or (
                        chunk.error is not msgspec.UNSET and chunk.choices is msgspec.UNSET
                    ):
                        # The usage chunk (once a stream) and error events: the full decode.
                        for out in _generic_chunk(data):
                            yield out
                        continue
                    yield StreamChunk(data, output_tokens=_typed_tokens(chunk.choices))
        except TRANSPORT_ERRORS as exc:
            raise map_transport_error(exc, self._client) from None
        except UpstreamFailure as failure:  # an error event: its message is the upstream's
            raise self._client.redacted(failure) from None
        finally:
            self.release(complete=complete)


def _generic_chunk(data: bytes) -> list[StreamChunk]:
    """Any chunk, decoded in full: content, the usage chunk, or an error event (raised)."""
    try:
        chunk = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return []
    if not isinstance(chunk, dict):
        return []
    if "error" in chunk and "choices" not in chunk:
        msg, code = _error_message(data, 502)
        raise UpstreamFailure("status", msg, status=502, code=code)
    usage = chunk.get("usage")
    choices = chunk.get("choices")
    if usage and not choices:
        return [StreamChunk(data, usage=openai_usage_to_tokens(usage))]
    if usage:
        # Some providers put usage on the last content chunk: relay the content and report
        # the usage as OpenAI's own usage-only chunk would.
        usage_chunk = {**chunk, "choices": [], "usage": usage}
        return [
            StreamChunk(encode({**chunk, "usage": None}), output_tokens=_delta_tokens(choices)),
            StreamChunk(encode(usage_chunk), usage=openai_usage_to_tokens(usage)),
        ]
    return [StreamChunk(data, output_tokens=_delta_tokens(choices))]


def _delta_tokens(choices: Any) -> int:
    """Roughly one token per content delta: upstreams stream about a token per chunk."""
    if not isinstance(choices, list):
        return 0
    n = 0
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        content = delta.get("content") or delta.get("reasoning_content") or ""
        if content:
            n += max(1, len(content) // 4)
        for call in delta.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments") or ""
            if args:
                n += max(1, len(args) // 4)
    return n


class OpenAICompatProvider(Provider):
    def __init__(self, settings: ProviderSettings, client: UpstreamClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.client = client
        self._headers = {"content-type": "application/json"}
        if settings.api_key:
            self._headers["authorization"] = f"Bearer {settings.api_key}"

    def output_limit_param(self, model: str) -> str:
        # OpenAI's reasoning models refuse max_tokens; everything else accepts it.
        if self.settings.kind == "openai" and self.name == "openai":
            if model.startswith(_REASONING_PREFIXES):
                return "max_completion_tokens"
        return "max_tokens"

    def _status_failure(self, raw: bytes, status: int) -> UpstreamFailure:
        msg, code = _error_message(raw, status)
        return UpstreamFailure("status", self.client.redact(msg), status=status, code=code)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self.client.post(path, encode(body), self._headers)
            raw = await self.client.read(resp)
        except TRANSPORT_ERRORS as exc:
            raise map_transport_error(exc, self.client) from None
        if resp.status >= 300:
            raise self._status_failure(raw, resp.status)
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise UpstreamFailure(
                "protocol", f"Provider '{self.name}' sent invalid JSON."
            ) from None
        if not isinstance(data, dict):
            raise UpstreamFailure("protocol", f"Provider '{self.name}' sent an unexpected body.")
        return data

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        data = await self._post("/chat/completions", body)
        usage = openai_usage_to_tokens(data.get("usage"))
        if usage is None:
            raise UpstreamFailure("protocol", f"Provider '{self.name}' reported no usage.")
        return ChatResult(data, usage)

    async def embeddings(self, body: dict[str, Any]) -> ChatResult:
        data = await self._post("/embeddings", body)
        usage = openai_usage_to_tokens(data.get("usage"))
        if usage is None:
            raise UpstreamFailure("protocol", f"Provider '{self.name}' reported no usage.")
        return ChatResult(data, usage)

    async def chat_stream(self, body: dict[str, Any]) -> ChatStream:
        try:
            resp = await self.client.post("/chat/completions", encode(body), self._headers)
        except TRANSPORT_ERRORS as exc:
            raise map_transport_error(exc, self.client) from None
        if resp.status >= 300:
            try:
                raw = await self.client.read(resp)
            except TRANSPORT_ERRORS:
                raw = b""
            raise self._status_failure(raw, resp.status)
        return OpenAIStream(resp, self.client)
