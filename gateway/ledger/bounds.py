"""Upper bounds on a call's tokens, computed before forwarding, for the hold.

A token is at least one byte of text for every tokenizer in use, so the byte size of
the serialized prompt bounds its input tokens. Per-message overhead covers the
role/framing tokens; each image counts as the largest image any supported model bills.
"""

from __future__ import annotations

from typing import Any

from gateway.jsoncodec import encode

PER_MESSAGE_OVERHEAD = 8
PER_REQUEST_OVERHEAD = 16
# OpenAI's high-detail maximum (2048x768 in 170-token tiles) exceeds Anthropic's ~1,600.
IMAGE_TOKENS_MAX = 2_125


def _content_bound(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content.encode("utf-8", "surrogatepass"))
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image"):
                total += IMAGE_TOKENS_MAX
            elif isinstance(part, dict) and part.get("type") == "text":
                total += _content_bound(part.get("text")) + 4
            else:
                total += len(encode(part))
        return total
    return len(encode(content))


def chat_input_bound(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    total = PER_REQUEST_OVERHEAD
    for m in messages:
        if not isinstance(m, dict):
            total += len(encode(m))
            continue
        total += PER_MESSAGE_OVERHEAD + _content_bound(m.get("content"))
        for key, value in m.items():
            if key not in ("content", "role") and value is not None:
                total += len(encode(value))
    for key in ("tools", "functions", "tool_choice", "response_format"):
        if body.get(key) is not None:
            total += len(encode(body[key]))
    return total


def embeddings_input_bound(body: dict[str, Any]) -> int:
    value = body.get("input")
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + PER_REQUEST_OVERHEAD
    if isinstance(value, list):
        total = PER_REQUEST_OVERHEAD
        for item in value:
            if isinstance(item, str):
                total += len(item.encode("utf-8", "surrogatepass")) + 1
            elif isinstance(item, list):  # token ids: exactly one token each
                total += len(item)
            else:
                total += 1
        return total
    return len(encode(value)) + PER_REQUEST_OVERHEAD
