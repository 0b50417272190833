"""The dashboard's only two channels to the gateway.

- `GatewayBridge`: event-bus subscriber. The bus calls it on the publishing thread (a
  request's settle, an admin call), so it only records what happened and, at most once
  until the UI has drained it, posts a coalescing `GatewayActivity` message.
- `Backend`: runs service coroutines and snapshot reads on the gateway's own event loop
  (`run_coroutine_threadsafe`) and awaits them from Textual's loop (`wrap_future`), so a
  redraw never stalls a request and a slow query never freezes the screen.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.clock import Clock, utcnow
from gateway.errors import ApiError
from gateway.events import BusEvent, EventBus
from gateway.services.snapshots import (
    CustomerDetail,
    KeyRow,
    Overview,
    RequestRow,
    Series,
    SnapshotReader,
    Totals,
)
from ringside_tui.messages import GatewayActivity

if TYPE_CHECKING:
    from textual.app import App

    from gateway.wiring import Gateway

T = TypeVar("T")


class GatewayUnavailable(Exception):
    """The gateway's loop is gone (shutting down) or never started."""


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
    def __init__(self, bus: EventBus, app: App[Any]) -> None:
        self.bus = bus
        self.app = app
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
        self.app.post_message(GatewayActivity())

    def drain(self) -> Activity:
        with self._lock:
            out, self._pending = self._pending, Activity()
            self._posted = False
        return out


# ---------------------------------------------------------------------------- services


def _loads(body: bytes | str) -> Any:
    # Money in service responses is exact JSON; keep it exact.
    return json.loads(body, parse_float=Decimal)


class Backend:
    """Every read and action of the dashboard, as awaitables for Textual's loop."""

    def __init__(self, gw: Gateway, clock: Clock | None = None) -> None:
        self.gw = gw
        self.clock: Clock = clock or getattr(gw.ledger, "clock", utcnow)
        self.reader = SnapshotReader()

    @property
    def warning_share(self) -> Decimal:
        return self.gw.settings.billing.budget_warning_share

    def now(self) -> datetime:
        return self.clock()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.gw.loop
        if loop is None or loop.is_closed():
            coro.close()
            raise GatewayUnavailable("the gateway is not running")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()
            raise GatewayUnavailable("the gateway is shutting down") from None
        return await asyncio.wrap_future(future)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.call(self.gw.db.read(fn, *args, **kwargs))

    # ------------------------------------------------------------------ snapshots
    async def overview(self) -> Overview:
        return await self.read(self.reader.overview, self.now())

    async def activity(self) -> tuple[Totals, Totals, Series]:
        """(today, month to date, series): the overview's numbers beside the customers."""
        reader, now = self.reader, self.now()

        def read() -> tuple[Totals, Totals, Series]:
            today, month = reader.totals(now)
            return today, month, reader.series(now)

        return await self.read(read)

    async def requests(
        self,
        limit: int = 200,
        customer_ids: list[str] | None = None,
        status: str | None = None,
    ) -> list[RequestRow]:
        return await self.read(
            self.reader.requests, limit, customer_ids=customer_ids, status=status
        )

    async def customer_detail(self, customer_id: str) -> CustomerDetail:
        return await self.read(self.reader.customer_detail, customer_id, self.now())

    async def keys(self) -> list[KeyRow]:
        return await self.read(self.reader.keys)

    # ------------------------------------------------------------------ actions
    async def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call(self.gw.services.customers.create(body))

    async def update_customer(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call(self.gw.services.customers.update(ref, body))

    async def archive_customer(self, ref: str) -> dict[str, Any]:
        return await self.call(self.gw.services.customers.archive(ref))

    async def topup(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = await self.call(self.gw.services.wallets.topup(ref, body))
        out = _loads(stored.body)
        if stored.status >= 400:
            err = (out or {}).get("error") or {}
            raise ApiError(err.get("message"), param=err.get("param"))
        return out  # type: ignore[no-any-return]

    async def create_key(self, name: str) -> dict[str, Any]:
        return await self.call(self.gw.services.keys.create({"name": name}))

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        return await self.call(self.gw.services.keys.revoke(key_id))

    # ------------------------------------------------------------------ optional modules
    def extra(self, name: str) -> Any | None:
        return self.gw.services.extra.get(name)

    async def extra_call(self, name: str, method: str, *args: Any) -> Any:
        service = self.extra(name)
        if service is None:
            raise GatewayUnavailable(f"the {name} service is not available")
        result = getattr(service, method)(*args)
        if asyncio.iscoroutine(result):
            return await self.call(result)
        return result
