"""OpenAI's rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`."""

from __future__ import annotations

import math


def duration(ms: int) -> str:
    """OpenAI's duration format: `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    whole = math.ceil(seconds)  # never earlier than the window really resets
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s"


def trio(kind: str, limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
    """The three headers of one kind (`requests` or `tokens`)."""
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(max(remaining, 0)),
        f"x-ratelimit-reset-{kind}": duration(reset_ms),
    }
