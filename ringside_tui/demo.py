"""`ringside demo`: seeded customers and simulated traffic, offline, through the real gateway.

Seeding goes through the same services as the HTTP API and converges on re-run (no
duplicate customers, no second top-up). Traffic goes over the gateway's real HTTP port
with an app key and the `FC-Customer` header, so every call is reserved, metered and
settled exactly like production; the built-in `mock` provider answers (directives in the
prompt give it latency, token counts and the odd upstream failure).

Everything runs on a thread with its own event loop: neither the gateway's loop nor
the dashboard's does any of the demo's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from gateway.errors import ApiError, CustomerNotFound
from ringside_tui.backend import Backend

if TYPE_CHECKING:
    from gateway.wiring import Gateway

log = logging.getLogger("ringside.demo")

DEMO_KEY_NAME = "ringside demo traffic"
MODELS = (
    # (model, weight, output tokens range, latency range ms)
    ("fc:mock/mock-fast", 50, (40, 400), (60, 350)),
    ("fc:mock/mock-smart", 22, (120, 900), (250, 1200)),
    ("fc:mock/mock-reasoning", 18, (300, 1600), (400, 1800)),
    ("fc:mock/mock-embed", 10, (0, 0), (30, 120)),
)
PROMPTS = (
    "Summarise this support ticket for the on-call engineer.",
    "Draft a friendly reply to a customer asking about invoices.",
    "Extract the company names and amounts from this contract clause.",
    "Translate the release notes into plain language for the changelog.",
    "Classify the sentiment of these five product reviews.",
    "Write SQL that returns the top ten accounts by monthly revenue.",
)


@dataclass(frozen=True)
class DemoCustomer:
    external_id: str
    name: str
    email: str
    weight: int
    budget_usd: Decimal | None = None
    markup: Decimal | None = None
    wallet_usd: Decimal | None = None
    threshold_usd: Decimal | None = None
    # Warm-up so the demo opens with something to watch: spend the budget to this share,
    # or the wallet down to this share of its threshold.
    warm_budget_share: float | None = None
    warm_wallet_share_of_threshold: float | None = None


CUSTOMERS = (
    DemoCustomer(
        "acme", "Acme Corp", "billing@acme.test", 6, budget_usd=Decimal(500), markup=Decimal("1.3")
    ),
    DemoCustomer(
        "globex", "Globex", "ap@globex.test", 4, budget_usd=Decimal(250), markup=Decimal("1.45")
    ),
    DemoCustomer(
        "initech",
        "Initech",
        "finance@initech.test",
        1,
        budget_usd=Decimal("3.00"),
        markup=Decimal("1.25"),
        warm_budget_share=0.86,
    ),
    DemoCustomer(
        "umbrella",
        "Umbrella Labs",
        "ops@umbrella.test",
        3,
        markup=Decimal("1.5"),
        wallet_usd=Decimal(75),
        threshold_usd=Decimal(10),
    ),
    DemoCustomer(
        "hooli",
        "Hooli",
        "gavin@hooli.test",
        1,
        markup=Decimal("1.2"),
        wallet_usd=Decimal("1.50"),
        threshold_usd=Decimal("0.50"),
        warm_wallet_share_of_threshold=0.7,
    ),
    DemoCustomer("piedpiper", "Pied Piper", "richard@piedpiper.test", 2, markup=Decimal("1.35")),
    DemoCustomer(
        "stark",
        "Stark Industries",
        "pepper@stark.test",
        2,
        markup=Decimal("1.6"),
        wallet_usd=Decimal(200),
        threshold_usd=Decimal(25),
    ),
)


@dataclass
class TrafficStats:
    sent: int = 0
    ok: int = 0
    refused: int = 0
    failed: int = 0
    seeded: bool = False
    errors: list[str] = field(default_factory=list)


class DemoTraffic:
    """Seeds the demo customers, then sends a wavy, bursty stream of mock calls."""

    def __init__(
        self,
        gw: Gateway,
        base_url: str,
        *,
        rate: float = 6.0,
        concurrency: int = 6,
        seed: int | None = None,
        customers: tuple[DemoCustomer, ...] = CUSTOMERS,
        latency: bool = True,
    ) -> None:
        self.services = gw.services
        # Service calls run on the gateway's loop, awaited from the demo's own loop.
        self._service = Backend.for_gateway(gw).call
        self.base_url = base_url
        self.rate = rate
        self.concurrency = concurrency
        self.random = random.Random(seed)
        self.customers = customers
        self.latency = latency
        self.stats = TrafficStats()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._targets: list[tuple[str, int]] = [(c.external_id, c.weight) for c in customers]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="ringside-demo", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # the demo must never take the dashboard down
            log.exception("demo traffic stopped")
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.ready.set()

    # ------------------------------------------------------------------ seeding
    async def seed(self, client: httpx.AsyncClient) -> None:
        for c in self.customers:
            if self._stop.is_set():
                return
            try:
                await self._service(self.services.customers.retrieve(c.external_id))
                created = False
            except CustomerNotFound:
                body: dict[str, Any] = {
                    "external_id": c.external_id,
                    "name": c.name,
                    "email": c.email,
                    "metadata": {"source": "ringside demo"},
                }
                if c.budget_usd is not None:
                    body["monthly_budget_usd"] = c.budget_usd
                if c.markup is not None:
                    body["markup"] = c.markup
                if c.threshold_usd is not None:
                    body["low_balance_threshold_usd"] = c.threshold_usd
                if c.wallet_usd is not None:
                    body["prepaid"] = True
                await self._service(self.services.customers.create(body))
                created = True
            if created and c.wallet_usd is not None:
                await self._service(
                    self.services.wallets.topup(
                        c.external_id,
                        {"amount_usd": c.wallet_usd, "description": "demo opening balance"},
                        idempotency_key=f"demo-opening-{c.external_id}",
                    )
                )
            await self._warm(client, c)
        self.stats.seeded = True

    async def _warm(self, client: httpx.AsyncClient, c: DemoCustomer) -> None:
        """Big calls until the customer is near its cap / below its threshold (converges)."""
        if c.warm_budget_share is None and c.warm_wallet_share_of_threshold is None:
            return
        customer = await self._service(self.services.customers.retrieve(c.external_id))
        for _ in range(200):
            if self._stop.is_set():
                return
            rows, _, _ = await self._service(self.services.snapshots.customers([customer["id"]]))
            row = rows[0]
            if row.status != "active":
                return
            if c.warm_budget_share is not None:
                share = row.budget_share
                if share is None or share >= c.warm_budget_share:
                    return
            elif c.warm_wallet_share_of_threshold is not None:
                if row.wallet_nanos is None or row.threshold_nanos is None:
                    return
                if row.wallet_nanos <= row.threshold_nanos * c.warm_wallet_share_of_threshold:
                    return
            status = await self._chat(
                client, c.external_id, "fc:mock/mock-smart", 4000, 0, faults=False
            )
            if status != 200:
                return

    # ------------------------------------------------------------------ traffic
    async def _app_key(self) -> str:
        keys = self.services.keys
        for k in await self._service(keys.list()):
            if k.get("name") == DEMO_KEY_NAME:
                with contextlib.suppress(ApiError):
                    await self._service(keys.revoke(k["id"]))
        created = await self._service(keys.create({"name": DEMO_KEY_NAME}))
        return str(created["key"])

    async def _refresh_targets(self) -> None:
        """Customers the operator creates join the traffic (weight 1) within seconds."""
        page = await self._service(
            self.services.customers.list({"limit": "100", "status": "active"})
        )
        weights = {c.external_id: c.weight for c in self.customers}
        targets = [(c["external_id"], weights.get(c["external_id"], 1)) for c in page.data]
        if targets:
            self._targets = targets

    async def _run(self) -> None:
        key = await self._app_key()
        headers = {"Authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=60, limits=limits
        ) as client:
            await self.seed(client)
            self.ready.set()
            await self._traffic(client)

    async def _traffic(self, client: httpx.AsyncClient) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        next_targets = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_targets:
                with contextlib.suppress(Exception):
                    await self._refresh_targets()
                next_targets = now + 5.0
            # A slow wave plus the odd burst, so the sparklines have a shape to show.
            t = now - started
            rate = self.rate * (1 + 0.6 * math.sin(t / 9)) + (
                self.rate * 2 if self.random.random() < 0.02 else 0
            )
            await asyncio.sleep(self.random.expovariate(max(rate, 0.1)))
            if gate.locked():
                continue  # the gateway is the bottleneck: shed load rather than queue it
            await gate.acquire()
            task = asyncio.create_task(self._one(client, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def _one(self, client: httpx.AsyncClient, gate: asyncio.Semaphore) -> None:
        try:
            customer = self._pick_customer()
            model, _, tokens, latency = self._pick_model()
            out = self.random.randint(*tokens) if tokens[1] else 0
            sleep_ms = self.random.randint(*latency) if self.latency else 0
            if model.endswith("mock-embed"):
                await self._embed(client, customer, sleep_ms)
            else:
                await self._chat(client, customer, model, out, sleep_ms)
        except httpx.HTTPError as exc:
            self.stats.failed += 1
            log.debug("demo call failed: %s", exc)
        finally:
            gate.release()

    def _pick_customer(self) -> str:
        targets = self._targets
        return self.random.choices([t[0] for t in targets], [t[1] for t in targets])[0]

    def _pick_model(self) -> tuple[str, int, tuple[int, int], tuple[int, int]]:
        return self.random.choices(MODELS, [m[1] for m in MODELS])[0]

    def _count(self, status: int) -> int:
        self.stats.sent += 1
        if status == 200:
            self.stats.ok += 1
        elif status in (402, 403):
            self.stats.refused += 1
        else:
            self.stats.failed += 1
        return status

    async def _chat(
        self,
        client: httpx.AsyncClient,
        customer: str,
        model: str,
        out: int,
        sleep_ms: int,
        *,
        faults: bool = True,
    ) -> int:
        prompt = self.random.choice(PROMPTS)
        directives = f"[mock:tokens={out}]"
        if sleep_ms:
            directives += f" [mock:sleep_ms={sleep_ms}]"
        roll = self.random.random() if faults else 1.0
        if roll < 0.02:
            directives += " [mock:error=500]"
        elif roll < 0.03:
            directives += " [mock:error=429]"
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for a SaaS app."},
                {"role": "user", "content": f"{prompt} {directives}"},
            ],
            "max_tokens": out + 64,
        }
        headers = {"FC-Customer": customer}
        if faults and self.random.random() < 0.2:
            body["stream"] = True
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as resp:
                async for _ in resp.aiter_bytes():
                    pass
                return self._count(resp.status_code)
        resp = await client.post("/v1/chat/completions", json=body, headers=headers)
        return self._count(resp.status_code)

    async def _embed(self, client: httpx.AsyncClient, customer: str, sleep_ms: int) -> int:
        text = " ".join(self.random.choice(PROMPTS) for _ in range(self.random.randint(1, 6)))
        resp = await client.post(
            "/v1/embeddings",
            json={"model": "fc:mock/mock-embed", "input": text},
            headers={"FC-Customer": customer},
        )
        return self._count(resp.status_code)
