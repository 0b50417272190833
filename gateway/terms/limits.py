"""Rate limits: requests and tokens per minute, and calls in flight at once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

LimitName = Literal["requests_per_minute", "tokens_per_minute", "max_concurrent"]
LIMIT_NAMES: tuple[LimitName, ...] = ("requests_per_minute", "tokens_per_minute", "max_concurrent")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """`None` means no such limit."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None

    @classmethod
    def from_json(cls, stored: Any) -> RateLimits:
        """From a stored `{name: int}` object (unknown names and bad values are ignored)."""
        if not isinstance(stored, dict):
            return cls()
        values = {}
        for name in LIMIT_NAMES:
            value = stored.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                values[name] = value
        return cls(**values)

    def to_json(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def get(self, name: LimitName) -> int | None:
        value: int | None = getattr(self, name)
        return value

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def over(self, base: RateLimits) -> RateLimits:
        """These limits, falling back to `base` limit by limit."""
        return RateLimits(
            *(
                mine if (mine := getattr(self, f.name)) is not None else getattr(base, f.name)
                for f in fields(self)
            )
        )
