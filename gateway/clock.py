"""Injectable clock: the ledger derives budget periods from it, tests move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


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
