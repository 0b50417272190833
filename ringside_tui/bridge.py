"""`GatewayBridge`: the event bus, as coalescing Textual messages.

The bus calls the bridge on the publishing thread (a request's settle, an admin call), so
it only records what happened and, at most once until the UI has drained it, posts a
`GatewayActivity` message. The other channel, service calls, is `backend.Backend`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from textual.message import Message

from gateway.events import BusEvent, EventBus
from ringside_tui.messages import GatewayActivity


class MessageTarget(Protocol):
    """Where the bridge posts (the app); `post_message` is thread-safe in Textual."""

    def post_message(self, message: Message) -> bool: ...


# ---------------------------------------------------------------------------- events


@dataclass
class Activity:
    """What the bus reported since the last drain."""

    kinds: set[str] = field(default_factory=set)
    customer_ids: set[str] = field(default_factory=set)
    metered: int = 0
    refused: int = 0

    def __bool__(self) -> bool:
        return bool(self.kinds)


class GatewayBridge:
    def __init__(self, bus: EventBus, target: MessageTarget) -> None:
        self.bus = bus
        self.target = target
        self._lock = threading.Lock()
        self._pending = Activity()
        self._posted = False
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self.bus.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: BusEvent) -> None:
        """Runs on the gateway's threads: record and hand off, nothing else."""
        with self._lock:
            p = self._pending
            p.kinds.add(event.kind)
            cid = event.data.get("customer_id")
            if cid is None and event.kind == "request.metered":
                cid = (event.data.get("request") or {}).get("customer_id")
            if cid is None and event.kind == "event.recorded":
                ev = event.data.get("event") or {}
                cid = ev.get("customer_id") if isinstance(ev, dict) else None
            if cid:
                p.customer_ids.add(str(cid))
            if event.kind == "request.metered":
                p.metered += 1
            elif event.kind == "request.refused":
                p.refused += 1
            if self._posted:
                return
            self._posted = True
        self.target.post_message(GatewayActivity())

    def drain(self) -> Activity:
        with self._lock:
            out, self._pending = self._pending, Activity()
            self._posted = False
        return out
