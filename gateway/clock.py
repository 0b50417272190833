"""Injectable clocks. Nothing that decides money, expiry or retries reads the time any
other way: each part is given a `Clock` by `gateway.wiring.build_gateway`.

The gateway runs on two of them, both `utcnow` in production:

* the *business* clock: budget months, hold expiry, usage days, Stripe's windows, the
  timestamps of money rows and events. Tests move it across months.
* the *wall* clock: what coordinates live processes or waits out real time - webhook
  delivery scheduling, retries, backoff and leases, the Stripe sync lease, the windows
  of idempotency keys (a dead request's lock, the 24-hour replay). It must advance by
  itself, so a test that freezes or moves the business clock leaves it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_ms(clock: Clock) -> int:
    """The clock's time as integer milliseconds since the epoch, as rows store time."""
    return to_ms(clock())


def month_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m")


def day_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d")


def to_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_ms(ms: int | None) -> str | None:
    return None if ms is None else iso(from_ms(ms))
