"""A deterministic, offline provider for demos and tests.

The same request always yields the same reply and usage. Directives in the last user
message simulate upstream behaviour, so tests and demos can exercise failure paths:

  [mock:error=500]   answer with that HTTP status (429, 500, 503, ...)
  [mock:timeout]     behave as a timeout
  [mock:cut=N]       stream N chunks, then break the connection (no usage)
  [mock:ignore_max_tokens=N]  produce N output tokens whatever max_tokens says
  [mock:tokens=N]    produce exactly N output tokens (within max_tokens)
  [mock:sleep_ms=N]  wait N ms before answering
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

from gateway.config import ProviderSettings
from gateway.jsoncodec import encode
from gateway.providers.base import ChatResult, ChatStream, Provider, StreamChunk, UpstreamFailure
from gateway.tokens import TokenUsage

MODELS = ("mock-fast", "mock-smart", "mock-reasoning", "mock-embed")
_DIRECTIVE = re.compile(r"\[mock:([a-z_]+)(?:=(\d+))?\]")
_WORDS = (
    "ringside meters every call so your margins stay visible while customers build "
    "remarkable things with language models and budgets hold under pressure"
).split()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    return max(1, (chars + 3) // 4) + 3 * len(messages)


def _directives(body: dict[str, Any]) -> dict[str, int]:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = _text_of(last_user.get("content")) if last_user else ""
    return {name: int(value) if value else 1 for name, value in _DIRECTIVE.findall(text)}


def _limit(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class MockProvider(Provider):
    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.latency_s = settings.latency_ms / 1000

    def models(self) -> list[str]:
        return [*MODELS, *self.settings.models]

    def _plan(self, body: dict[str, Any]) -> tuple[list[str], TokenUsage, dict[str, int]]:
        d = _directives(body)
        if "error" in d:
            status = d["error"]
            code = "rate_limit_exceeded" if status == 429 else "server_error"
            raise UpstreamFailure(
                "status", f"mock upstream error {status}", status=status, code=code
            )
        if "timeout" in d:
            raise UpstreamFailure("timeout", "mock upstream timed out")
        seed = hashlib.sha256(encode(body.get("messages"))).digest()
        wanted = d.get("tokens", 12 + seed[0] % 48)
        limit = _limit(body)
        n = wanted if limit is None else min(wanted, limit)
        if "ignore_max_tokens" in d:
            n = d["ignore_max_tokens"]
        words = [_WORDS[(seed[i % 32] + i) % len(_WORDS)] for i in range(n)]
        prompt = _prompt_tokens(body)
        cached = (
            (prompt // 2) if str(body.get("model", "")).endswith("smart") and prompt > 64 else 0
        )
        reasoning = n // 3 if "reasoning" in str(body.get("model", "")) else 0
        usage = TokenUsage(
            input_tokens=prompt,
            cached_tokens=cached,
            output_tokens=n,
            reasoning_tokens=reasoning,
        )
        return words, usage, d

    @staticmethod
    def _usage_dict(u: TokenUsage) -> dict[str, Any]:
        return {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        }

    async def _pause(self, d: dict[str, int]) -> None:
        delay = self.latency_s + d.get("sleep_ms", 0) / 1000
        if delay:
            await asyncio.sleep(delay)

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        words, usage, d = self._plan(body)
        await self._pause(d)
        limit = _limit(body)
        finish = "length" if limit is not None and usage.output_tokens >= limit else "stop"
        rid = hashlib.sha1(encode(body)).hexdigest()[:24]
        out = {
            "id": f"chatcmpl-mock{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": self._usage_dict(usage),
            "system_fingerprint": "fp_mock",
        }
        return ChatResult(out, usage)

    async def chat_stream(self, body: dict[str, Any]) -> ChatStream:
        words, usage, d = self._plan(body)
        await self._pause(d)
        return _MockStream(self, body, words, usage, d)

    async def embeddings(self, body: dict[str, Any]) -> ChatResult:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise UpstreamFailure("status", "input must be a string or a list", status=400)
        dimensions = body.get("dimensions")
        dims = dimensions if isinstance(dimensions, int) else 8
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else encode(item).decode()
            tokens += max(1, (len(text) + 3) // 4)
            digest = hashlib.sha256(text.encode()).digest()
            vector = [round((digest[j % 32] - 128) / 128, 6) for j in range(max(1, dims))]
            data.append({"object": "embedding", "index": i, "embedding": vector})
        usage = TokenUsage(input_tokens=tokens)
        out = {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return ChatResult(out, usage)


class _MockStream(ChatStream):
    def __init__(
        self,
        provider: MockProvider,
        body: dict[str, Any],
        words: list[str],
        usage: TokenUsage,
        d: dict[str, int],
    ) -> None:
        self.provider = provider
        self.body = body
        self.words = words
        self.usage = usage
        self.d = d

    async def chunks(self) -> AsyncGenerator[StreamChunk, None]:
        created = int(time.time())
        rid = "chatcmpl-mock" + hashlib.sha1(encode(self.body)).hexdigest()[:24]
        model = self.body.get("model")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return encode(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        yield StreamChunk(chunk({"role": "assistant", "content": ""}))
        cut = self.d.get("cut")
        per_word = self.provider.latency_s / max(len(self.words), 1) if self.words else 0
        for i, word in enumerate(self.words):
            if cut is not None and i >= cut:
                raise UpstreamFailure("connect", "mock upstream broke the stream")
            if per_word:
                await asyncio.sleep(per_word)
            yield StreamChunk(chunk({"content": word if i == 0 else " " + word}), output_tokens=1)
        limit = _limit(self.body)
        finish = "length" if limit is not None and len(self.words) >= limit else "stop"
        yield StreamChunk(chunk({}, finish))
        usage_chunk = encode(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": MockProvider._usage_dict(self.usage),
            }
        )
        yield StreamChunk(usage_chunk, usage=self.usage)

    async def aclose(self) -> None:
        return None
