"""Model allow-lists: patterns `provider/model` where `*` matches any run of characters
(`openai/gpt-4o-mini`, `anthropic/*`, `*`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

MAX_PATTERN_LENGTH = 255


def valid_pattern(pattern: str) -> bool:
    """`*`, or `provider/model` with printable ASCII and no spaces."""
    if not 1 <= len(pattern) <= MAX_PATTERN_LENGTH:
        return False
    if not pattern.isascii() or not pattern.isprintable() or " " in pattern:
        return False
    return pattern == "*" or ("/" in pattern and not pattern.startswith("/"))


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def model_allowed(patterns: Iterable[str] | None, provider: str, model: str) -> bool:
    """Whether `provider/model` matches one of `patterns` (None: every model is allowed)."""
    if patterns is None:
        return True
    ref = f"{provider}/{model}"
    return any(_compiled(p).fullmatch(ref) is not None for p in patterns)
