"""A sliding minute, in one-second buckets, that never admits more than the limit in any
60 seconds.

A subject's window is a list of `[second, amount]` buckets, oldest first. A call admitted
during second `s` is counted while `now` is in seconds `s .. s + 60`: it leaves the window
at the start of second `s + 61`. Any 60-second span of real time `[t - 60, t]` lies inside
the 61 buckets counted at `t`, so the sum checked at admission bounds every span: a call
is admitted only if every call of the last 60 seconds plus this one fit the limit. The
price is up to one second of extra strictness at the window's edge.

Why not GCRA or a token bucket: they bound the average rate, and let a full burst
through right after another one (twice the limit inside one minute). Why not a fixed
minute: two bursts either side of its boundary admit twice the limit within seconds.
"""

from __future__ import annotations

import math

WINDOW_S = 60
SPAN_S = WINDOW_S + 1  # buckets counted: this second and the 60 before it

Buckets = list[list[int]]


def live(buckets: Buckets, now_s: int) -> Buckets:
    """The buckets still inside the window at second `now_s`."""
    oldest = now_s - WINDOW_S
    if not buckets or buckets[0][0] >= oldest:
        return buckets
    return [b for b in buckets if b[0] >= oldest]


def used(buckets: Buckets) -> int:
    return sum(b[1] for b in buckets)


def add(buckets: Buckets, now_s: int, amount: int) -> None:
    if buckets and buckets[-1][0] == now_s:
        buckets[-1][1] += amount
    else:
        buckets.append([now_s, amount])


def adjust(buckets: Buckets, second: int, delta: int) -> bool:
    """Add `delta` (a true-up, maybe negative) to the bucket of `second`, if still there."""
    for bucket in buckets:
        if bucket[0] == second:
            bucket[1] = max(0, bucket[1] + delta)
            return True
    return False


def leaves_ms(second: int) -> int:
    """When a bucket leaves the window (epoch milliseconds)."""
    return (second + SPAN_S) * 1000


def fits_at_ms(buckets: Buckets, need: int, limit: int, now_ms: int) -> int | None:
    """The earliest time `need` more fits under `limit` (now if it fits), or None if it
    never can (`need` alone is over the limit)."""
    if need > limit:
        return None
    excess = used(buckets) + need - limit
    if excess <= 0:
        return now_ms
    freed = 0
    for second, amount in buckets:
        freed += amount
        if freed >= excess:
            return leaves_ms(second)
    return leaves_ms(buckets[-1][0]) if buckets else now_ms


def reset_ms(buckets: Buckets, now_ms: int) -> int:
    """Milliseconds until the window is empty again (OpenAI's `x-ratelimit-reset-*`)."""
    if not buckets:
        return 0
    return max(0, leaves_ms(buckets[-1][0]) - now_ms)


def retry_after_s(at_ms: int, now_ms: int) -> int:
    """`Retry-After`: whole seconds, at least 1."""
    return max(1, math.ceil((at_ms - now_ms) / 1000))
