"""Prefixed, sortable-enough random ids: cus_, req_, evt_, whe_, key_, txn_, hold_."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    # A millisecond time prefix keeps ids roughly creation-ordered, which makes
    # cursor pagination by id stable and index-friendly.
    ms = int(time.time() * 1000)
    return f"{prefix}_{_base36(ms, 9)}{_base36(secrets.randbits(80), 16)}"
