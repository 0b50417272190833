"""Messages the dashboard passes around, named in the past tense (one per event).

Screens post them upwards; the app handles them (it owns navigation and the refresh
loop). Textual's Message initialises dataclass subclasses itself (its `__post_init__`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from textual.message import Message

TabName = Literal["overview", "customers", "requests", "keys", "webhooks", "stripe", "plans"]
# Tab order: the key that shows each tab is its position (1 … 7). Plans came last, so the
# keys of the tabs before it stayed the same.
TAB_LABELS: dict[TabName, str] = {
    "overview": "Overview",
    "customers": "Customers",
    "requests": "Requests",
    "keys": "Keys",
    "webhooks": "Webhooks",
    "stripe": "Stripe",
    "plans": "Plans",
}


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
class CustomerSelected(Message):
    """The operator chose a customer (a row, the palette): the app opens its detail."""

    customer_id: str


@dataclass
class TabSelected(Message):
    """The operator chose a tab from the palette."""

    tab: TabName


@dataclass
class ViewInvalidated(Message):
    """What the visible view shows is out of date (a filter changed, the tail resumed, a
    screen opened, an action finished): the refresh loop runs now. Bursts coalesce."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ViewInvalidated)


@dataclass
class RefreshFinished(Message):
    """A snapshot + diff round finished (timings for the status line and the bench)."""

    view: str
    query_s: float
    apply_s: float
    rows: int = 0
    errors: list[str] = field(default_factory=list)
