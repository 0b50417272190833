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


# No call bills more tokens than this; a provider that reports more is clamped (and the
# charge is still recorded in full up to it) rather than breaking settlement.
MAX_TOKENS = 10**12


def token_count(value: Any) -> int | None:
    """A provider's token count: a whole number >= 0 (whole floats too), clamped to
    MAX_TOKENS; None when it is not a count at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return None
    return min(value, MAX_TOKENS)


def openai_usage_to_tokens(usage: dict[str, Any] | None) -> TokenUsage | None:
    """OpenAI's usage object -> TokenUsage (prompt_tokens include cached ones). None when
    it carries neither a prompt nor a completion count: the caller treats the usage as
    missing instead of billing zero."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    if not isinstance(prompt_details, dict):
        prompt_details = {}
    if not isinstance(completion_details, dict):
        completion_details = {}
    return TokenUsage(
        input_tokens=prompt or 0,
        cached_tokens=token_count(prompt_details.get("cached_tokens")) or 0,
        cache_write_tokens=token_count(prompt_details.get("cache_write_tokens")) or 0,
        output_tokens=completion or 0,
        reasoning_tokens=token_count(completion_details.get("reasoning_tokens")) or 0,
    )
