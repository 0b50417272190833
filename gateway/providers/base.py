"""The one interface every upstream adapter implements, in OpenAI's wire format.

The proxy speaks OpenAI's chat-completions format to clients. A provider takes an
OpenAI-format request body (with the bare upstream model name already substituted)
and returns OpenAI-format results, translating internally where needed (Anthropic).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config import ProviderSettings
from gateway.tokens import TokenUsage

FailureKind = Literal["timeout", "connect", "status", "protocol", "unsupported"]


class UpstreamFailure(Exception):
    """The upstream call failed; nothing is charged (a cut stream is charged for what it produced).

    kind: "timeout" (no answer in time), "connect" (unreachable, or the connection broke),
    "status" (the upstream answered an error status, kept in `status`), "protocol" (an answer
    Ringside cannot read), "unsupported" (the provider does not offer the endpoint).
    """

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class ChatResult:
    body: dict[str, Any]  # an OpenAI chat.completion (or embeddings list) object
    usage: TokenUsage


@dataclass(frozen=True)
class StreamChunk:
    """One SSE `data:` payload in OpenAI's chat.completion.chunk format.

    `usage` is set on the usage-only chunk (empty choices) that closes a stream.
    `output_tokens` estimates the tokens this chunk carried, for streams cut before
    the provider reported usage.
    """

    data: bytes
    usage: TokenUsage | None = None
    output_tokens: int = 0


class ChatStream(ABC):
    """An open upstream stream: iterate chunks (once), then close. Status was already checked.

    `framed` streams yield complete SSE events to relay as they are (Anthropic's native
    format); others yield OpenAI chunk payloads that the proxy frames as `data:` lines.
    Implementations write `chunks()` as an async generator; iterating the stream runs it,
    and every `aiter()` of one stream returns that same generator.
    """

    framed: bool = False
    _iterator: AsyncGenerator[StreamChunk, None] | None = None

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        if self._iterator is None:
            self._iterator = self.chunks()
        return self._iterator

    @abstractmethod
    def chunks(self) -> AsyncGenerator[StreamChunk, None]:
        """The stream's chunks in order; raises UpstreamFailure when the stream breaks."""

    @abstractmethod
    async def aclose(self) -> None: ...


class Provider(ABC):
    name: str
    settings: ProviderSettings

    @abstractmethod
    async def chat(self, body: dict[str, Any]) -> ChatResult:
        """Non-streaming chat completion. Raises UpstreamFailure."""

    @abstractmethod
    async def chat_stream(self, body: dict[str, Any]) -> ChatStream:
        """Open a streaming chat completion; raises UpstreamFailure before the first chunk
        if the upstream refused the call (so the proxy can still answer with an error)."""

    async def embeddings(self, body: dict[str, Any]) -> ChatResult:
        raise UpstreamFailure(
            "unsupported", f"Provider '{self.name}' does not offer embeddings.", status=400
        )

    def models(self) -> list[str]:
        """Model names this provider lists in GET /v1/models beyond priced catalog ones."""
        return list(self.settings.models)

    def output_limit_param(self, model: str) -> str:
        """The request field that caps output tokens for this model."""
        return "max_tokens"

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


def openai_usage_to_tokens(usage: dict[str, Any] | None) -> TokenUsage | None:
    """OpenAI's usage object -> TokenUsage (prompt_tokens include cached ones)."""
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        input_tokens=_int(usage.get("prompt_tokens")),
        cached_tokens=_int(prompt_details.get("cached_tokens")),
        cache_write_tokens=_int(prompt_details.get("cache_write_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
