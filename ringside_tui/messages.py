"""Messages the dashboard passes around, named in the past tense (one per domain event).

Textual's Message initialises dataclass subclasses itself (its `__post_init__`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message


@dataclass
class GatewayActivity(Message):
    """Something happened in the gateway (the bridge drains the details).

    Bursts coalesce: a queued GatewayActivity is replaced by the next one, so 1,000
    metered requests cost the UI one handler call, not 1,000.
    """

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GatewayActivity)


@dataclass
class CustomerChanged(Message):
    """An operator action changed a customer; views showing it refresh now."""

    customer_id: str
    action: str = ""


@dataclass
class KeysChanged(Message):
    key_id: str = ""


@dataclass
class RefreshFinished(Message):
    """A snapshot + diff round finished (timings for the status line and the bench)."""

    view: str
    query_s: float
    apply_s: float
    rows: int = 0
    errors: list[str] = field(default_factory=list)
