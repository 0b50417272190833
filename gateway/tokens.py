"""Token counts as a provider reported them: the one type providers and the ledger share.

Providers produce `TokenUsage`; the ledger prices it. Neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens as billed. `input_tokens` counts every prompt token, cached and cache-written ones
    included (OpenAI's prompt_tokens; Anthropic's input + cache read + cache write)."""

    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
