"""Thread-safe in-process event bus: the only live channel from the gateway to the dashboard.

Publishers (the ledger, the proxy) call `publish` from any thread; subscribers are plain
callables invoked on the publisher's thread, so they must be quick (the dashboard's
bridge just queues a coalescing message).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ringside.events")


@dataclass(frozen=True)
class BusEvent:
    kind: str  # "request.metered", "customer.changed", "event.recorded", ...
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[BusEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not fn)

        return unsubscribe

    def publish(self, kind: str, **data: Any) -> None:
        subscribers = self._subscribers  # a tuple: safe to iterate without the lock
        if not subscribers:
            return
        event = BusEvent(kind, data)
        for fn in subscribers:
            try:
                fn(event)
            except Exception:  # a broken subscriber must never break the request path
                log.exception("event bus subscriber failed")
