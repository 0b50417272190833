"""Prefixed, sortable-enough random ids: cus_, req_, evt_, whe_, key_, txn_, hold_."""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


_lock = threading.Lock()
_last_us = 0


def new_id(prefix: str) -> str:
    # A microsecond time prefix, strictly increasing within the process, keeps ids in
    # creation order: "newest first" pagination by id is then exact on one instance.
    global _last_us
    with _lock:
        _last_us = max(_last_us + 1, time.time_ns() // 1000)
        us = _last_us
    return f"{prefix}_{_base36(us, 11)}{_base36(secrets.randbits(70), 14)}"
