"""Any OpenAI-compatible upstream (OpenAI itself, vLLM, Ollama, Groq, ...).

Bodies are forwarded as they are (model name swapped); streams are relayed chunk by
chunk without re-encoding, parsing each payload only to spot the usage chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
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


def map_transport_error(exc: httpx.HTTPError, name: str) -> UpstreamFailure:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamFailure("timeout", f"Provider '{name}' did not answer in time.")
    return UpstreamFailure("connect", f"Could not reach provider '{name}': {type(exc).__name__}.")


class OpenAIStream(ChatStream):
    def __init__(self, response: httpx.Response, name: str) -> None:
        self._response = response
        self._name = name

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:  # type: ignore[override]
        decode = msgspec.json.decode
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if not payload:
                    continue
                if payload == "[DONE]":
                    return
                data = payload.encode()
                try:
                    chunk = decode(data)
                except msgspec.DecodeError:
                    continue
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk and "choices" not in chunk:
                    msg, code = _error_message(data, 502)
                    raise UpstreamFailure("status", msg, status=502, code=code)
                usage = chunk.get("usage")
                choices = chunk.get("choices")
                if usage and not choices:
                    yield StreamChunk(data, usage=openai_usage_to_tokens(usage))
                    continue
                if usage:
                    # Some providers put usage on the last content chunk: relay the content
                    # and report the usage as OpenAI's own usage-only chunk would.
                    yield StreamChunk(
                        encode({**chunk, "usage": None}), output_tokens=_delta_tokens(choices)
                    )
                    usage_chunk = {**chunk, "choices": [], "usage": usage}
                    yield StreamChunk(encode(usage_chunk), usage=openai_usage_to_tokens(usage))
                    continue
                yield StreamChunk(data, output_tokens=_delta_tokens(choices))
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self._name) from None

    async def aclose(self) -> None:
        await self._response.aclose()


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
    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient) -> None:
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

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self.client.post(path, content=encode(body), headers=self._headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self.name) from None
        if resp.status_code >= 300:
            msg, code = _error_message(resp.content, resp.status_code)
            raise UpstreamFailure("status", msg, status=resp.status_code, code=code)
        try:
            data = msgspec.json.decode(resp.content)
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
        request = self.client.build_request(
            "POST", "/chat/completions", content=encode(body), headers=self._headers
        )
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self.name) from None
        if resp.status_code >= 300:
            try:
                raw = await resp.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await resp.aclose()
            msg, code = _error_message(raw, resp.status_code)
            raise UpstreamFailure("status", msg, status=resp.status_code, code=code)
        return OpenAIStream(resp, self.name)
