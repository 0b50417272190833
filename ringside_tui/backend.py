"""`Backend`: the dashboard's one way into the gateway's services.

Every read and action runs as a service coroutine on the gateway's own event loop
(`run_coroutine_threadsafe`) and is awaited from Textual's loop (`wrap_future`), so a
redraw never stalls a request and a slow query never freezes the screen. Reads come from
`services.snapshots`, actions from the same typed services as the HTTP API; nothing is
looked up by name. Every write is made as `gateway.audit.DASHBOARD`, so the audit log
says an operator at the dashboard made it (key kind `dashboard`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.audit import DASHBOARD, SYSTEM, Actor
from gateway.clock import now_ms
from gateway.errors import ApiError
from gateway.services.snapshots import (
    TAIL_LIMIT,
    CustomerDetail,
    CustomerRow,
    Overview,
    RequestRow,
)

if TYPE_CHECKING:
    from gateway.container import Services
    from gateway.wiring import Gateway

T = TypeVar("T")
ApiDict = dict[str, Any]
LoopRef = Callable[[], asyncio.AbstractEventLoop | None]


class GatewayUnavailable(Exception):
    """The gateway's loop is gone (shutting down) or never started."""


class StripeSync(Protocol):
    """What the dashboard uses of `StripeSyncService` (a stand-in can take its place)."""

    @property
    def configured(self) -> bool: ...

    async def runs(self, limit: int = 20, starting_after: str | None = None) -> list[ApiDict]: ...

    async def customer_states(
        self, limit: int | None = None, starting_after: str | None = None
    ) -> list[ApiDict]: ...

    async def sync_now(self, trigger: str = "manual", actor: Actor = SYSTEM) -> ApiDict: ...


@dataclass(frozen=True, slots=True)
class WebhooksSnapshot:
    endpoints: list[ApiDict]
    deliveries: list[ApiDict]


def _json_object(body: bytes | str) -> ApiDict:
    # Money in service responses is exact JSON; keep it exact.
    out = json.loads(body, parse_float=Decimal)
    if not isinstance(out, dict):
        raise ApiError("The gateway answered with something other than an object.")
    return out


class Backend:
    """Every read and action of the dashboard, as awaitables for Textual's loop."""

    def __init__(
        self, services: Services, loop: LoopRef, *, stripe: StripeSync | None = None
    ) -> None:
        self._loop = loop
        self._snapshots = services.snapshots
        self._customers = services.customers
        self._plans = services.plans
        self._wallets = services.wallets
        self._keys = services.keys
        self._webhooks = services.webhooks
        self._audit = services.audit
        self._stripe: StripeSync = stripe if stripe is not None else services.stripe

    @classmethod
    def for_gateway(cls, gw: Gateway, *, stripe: StripeSync | None = None) -> Backend:
        """The services of a running gateway; its loop is read on each call (it is set
        when the gateway starts and gone once it stops)."""
        return cls(gw.services, lambda: gw.loop, stripe=stripe)

    @property
    def warning_share(self) -> Decimal:
        return self._snapshots.warning_share

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop()
        if loop is None or loop.is_closed():
            coro.close()
            raise GatewayUnavailable("the gateway is not running")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()
            raise GatewayUnavailable("the gateway is shutting down") from None
        return await asyncio.wrap_future(future)

    # ------------------------------------------------------------------ snapshots
    async def customers(self, ids: Iterable[str] | None = None) -> list[CustomerRow]:
        """Every customer's row, or only those in `ids`."""
        rows, _, _ = await self.call(self._snapshots.customers(ids))
        return rows

    async def overview_for(self, customers: Sequence[CustomerRow]) -> Overview:
        return await self.call(self._snapshots.overview_for(customers))

    async def requests(
        self,
        limit: int = TAIL_LIMIT,
        customer_ids: list[str] | None = None,
        status: str | None = None,
    ) -> list[RequestRow]:
        return await self.call(
            self._snapshots.requests(limit, customer_ids=customer_ids, status=status)
        )

    async def customer_detail(self, customer_id: str) -> CustomerDetail:
        return await self.call(self._snapshots.customer_detail(customer_id))

    async def plans(self) -> list[ApiDict]:
        """Every plan with its customer count (a handful: read whole on each refresh)."""
        return await self.call(self._plans.list_all())

    async def rate_usage(self, customer_id: str) -> ApiDict:
        """This minute's requests and tokens and the calls in flight, with the limits."""
        return await self.call(self._customers.rate_usage(customer_id))

    async def keys(self) -> tuple[list[ApiDict], int]:
        """The live keys (revoked ones left out) with their kind and expiry, newest first,
        and the time on the key service's clock (the one that decides expiry)."""
        keys = await self.call(self._keys.list())
        return keys, now_ms(self._keys.clock)

    async def audit(self, customer_id: str, limit: int) -> list[ApiDict]:
        """The customer's latest audit entries, newest first (one query)."""
        page = await self.call(self._audit.list({"customer_id": customer_id, "limit": str(limit)}))
        return list(page.data)

    async def webhooks(self, deliveries: int = 100) -> WebhooksSnapshot:
        endpoints = await self.call(self._webhooks.list_endpoints())
        recent = await self.call(self._webhooks.recent_deliveries(deliveries))
        return WebhooksSnapshot(endpoints, recent)

    async def stripe_runs(self, limit: int = 20) -> list[ApiDict]:
        return await self.call(self._stripe.runs(limit))

    async def stripe_states(self, limit: int | None = None) -> list[ApiDict]:
        return await self.call(self._stripe.customer_states(limit))

    @property
    def stripe_configured(self) -> bool:
        return self._stripe.configured

    # ------------------------------------------------------------------ actions
    async def create_customer(self, body: ApiDict) -> ApiDict:
        return await self.call(self._customers.create(body, DASHBOARD))

    async def update_customer(self, ref: str, body: ApiDict) -> ApiDict:
        return await self.call(self._customers.update(ref, body, DASHBOARD))

    async def archive_customer(self, ref: str) -> ApiDict:
        return await self.call(self._customers.archive(ref, DASHBOARD))

    async def create_plan(self, body: ApiDict) -> ApiDict:
        return await self.call(self._plans.create(body, DASHBOARD))

    async def update_plan(self, ref: str, body: ApiDict) -> ApiDict:
        return await self.call(self._plans.update(ref, body, DASHBOARD))

    async def delete_plan(self, ref: str) -> ApiDict:
        return await self.call(self._plans.delete(ref, DASHBOARD))

    async def topup(self, ref: str, body: ApiDict) -> ApiDict:
        stored = await self.call(self._wallets.topup(ref, body, actor=DASHBOARD))
        out = _json_object(stored.body)
        if stored.status >= 400:
            err = out.get("error") or {}
            raise ApiError(err.get("message"), param=err.get("param"))
        return out

    async def create_key(self, body: ApiDict) -> ApiDict:
        """`{"name", "kind"?, "expires_at"?}`; the answer holds the key, shown once."""
        return await self.call(self._keys.create(body, DASHBOARD))

    async def revoke_key(self, key_id: str) -> ApiDict:
        return await self.call(self._keys.revoke(key_id, DASHBOARD))

    async def retry_delivery(self, delivery_id: str) -> ApiDict:
        # Not an audited write: a retry changes no setting, it only re-sends.
        return await self.call(self._webhooks.retry_delivery(delivery_id))

    async def set_endpoint_enabled(self, endpoint_id: str, enabled: bool) -> ApiDict:
        return await self.call(self._webhooks.set_endpoint_enabled(endpoint_id, enabled, DASHBOARD))

    async def stripe_sync_now(self) -> ApiDict:
        return await self.call(self._stripe.sync_now("manual", actor=DASHBOARD))
