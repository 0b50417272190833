"""Model allow-lists: patterns `provider/model` where `*` matches any run of characters
(`openai/gpt-4o-mini`, `anthropic/*`, `*`)."""

from __future__ import annotations

from collections.abc import Iterable

MAX_PATTERN_LENGTH = 255


def valid_pattern(pattern: str) -> bool:
    """`*`, or `provider/model` with printable ASCII and no spaces."""
    if not 1 <= len(pattern) <= MAX_PATTERN_LENGTH:
        return False
    if not pattern.isascii() or not pattern.isprintable() or " " in pattern:
        return False
    return pattern == "*" or ("/" in pattern and not pattern.startswith("/"))


def glob_match(pattern: str, text: str) -> bool:
    """Whether `text` matches `pattern` (`*` = any run of characters, nothing else special).

    The classic two-pointer match with one backtrack point: at most len(pattern) x
    len(text) steps whatever the pattern, so a pattern full of `*` cannot stall the writer
    thread that admits calls (a regex of `.*` runs can take exponential time)."""
    p = t = 0
    star = -1  # position in pattern after the last `*` seen
    mark = 0  # position in text that `*` matched up to
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p + 1, t
            p += 1
        elif p < len(pattern) and pattern[p] == text[t]:
            p += 1
            t += 1
        elif star >= 0:
            mark += 1
            t, p = mark, star
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def model_allowed(patterns: Iterable[str] | None, provider: str, model: str) -> bool:
    """Whether `provider/model` matches one of `patterns` (None: every model is allowed)."""
    if patterns is None:
        return True
    ref = f"{provider}/{model}"
    return any(glob_match(p, ref) for p in patterns)
