"""Money guarantees against the real `ringside serve` process: races, two instances on one
PostgreSQL database, and SIGKILL mid-flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.upstream import FakeUpstream

pytestmark = pytest.mark.e2e

# One input token = 1,000 nanos, one output token = 2,000 nanos, markup 1.5 on price.
CONFIG = """
[billing]
markup = 1.5
hold_ttl_s = 2

[providers.local]
base_url = "{url}/v1"
timeout_s = 30

[prices."local/model"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 400
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


def body(tokens: int, max_tokens: int | None = None, extra: str = "") -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": "fc:local/model",
        "messages": [{"role": "user", "content": f"hello [tokens={tokens}] {extra}"}],
    }
    if max_tokens is not None:
        b["max_tokens"] = max_tokens
    return b


async def make_customer(base: str, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        fields.setdefault("external_id", f"e2e-{time.monotonic_ns()}")
        fields.setdefault("name", "Racer")
        r = await c.post("/v1/customers", json=fields)
        assert r.status_code == 201, r.text
        cus = r.json()
        if "topup" in fields:
            pass
        return cus


async def race(
    bases: list[str], headers: dict[str, str], customer_id: str, n: int
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=64)
    clients = [
        httpx.AsyncClient(
            base_url=b, headers={**headers, "FC-Customer": customer_id}, timeout=60, limits=limits
        )
        for b in bases
    ]
    try:

        async def one(i: int) -> httpx.Response:
            c = clients[i % len(clients)]
            return await c.post("/v1/chat/completions", json=body(80, 80) if i % 2 else body(80))

        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        for c in clients:
            await c.aclose()


async def check_ledger(
    base: str,
    headers: dict[str, str],
    cid: str,
    cap: Decimal | None,
    ok: int,
    upstream: FakeUpstream,
    before: int,
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=headers) as c:
        cus = (await c.get(f"/v1/customers/{cid}")).json()
        log = (await c.get(f"/v1/requests?customer_id={cid}&limit=500")).json()["data"]
    spent = Decimal(str(cus["budget"]["spent_usd"]))
    if cap is not None:
        assert spent <= cap, f"overspent: {spent} > {cap}"
    if "wallet" in cus:
        assert Decimal(str(cus["wallet"]["balance_usd"])) >= 0
        assert cus["wallet"]["held_usd"] == 0
    assert cus["budget"]["held_usd"] == 0
    # The upstream saw exactly the calls that were allowed, never a refused one.
    assert upstream.count() - before == ok
    logged_cost = sum(Decimal(str(r["cost_usd"])) for r in log if r["status"] == "ok")
    assert logged_cost == spent
    return cus


@pytest.mark.parametrize("limit", ["budget", "wallet", "both"])
async def test_race_on_sqlite(ringside_server: Any, upstream: FakeUpstream, limit: str) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))
    h = server.headers()
    fields: dict[str, Any] = {}
    cap = None
    if limit in ("budget", "both"):
        cap = Decimal("0.0012")
        fields["budget_usd"] = float(cap)
    cus = await make_customer(server.base_url, h, **fields)
    if limit in ("wallet", "both"):
        async with httpx.AsyncClient(base_url=server.base_url, headers=h) as c:
            r = await c.post(f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.0015})
            assert r.status_code == 200
    before = upstream.count()
    responses = await race([server.base_url], h, cus["id"], 40)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 402}, codes
    ok = codes.count(200)
    assert 0 < ok < 40
    for r in responses:
        if r.status_code == 402:
            assert r.headers["x-should-retry"] == "false"
            assert r.json()["error"]["code"] in (
                "customer_budget_exceeded",
                "customer_wallet_empty",
            )
            assert r.json()["error"]["customer_id"] == cus["id"]
        else:
            if cap is not None:
                assert "FC-Budget-Remaining-USD" in r.headers
            if limit != "budget":
                assert Decimal(r.headers["FC-Wallet-Balance-USD"]) >= 0
    await check_ledger(server.base_url, h, cus["id"], cap, ok, upstream, before)


@pytest.mark.postgres
async def test_race_across_two_instances_on_postgres(
    ringside_server: Any, upstream: FakeUpstream, pg_server: Any
) -> None:
    url = pg_server()
    config = CONFIG.format(url=upstream.url)
    a = ringside_server(config, database_url=url)
    b = ringside_server(config, database_url=url)
    h = a.headers()
    cap = Decimal("0.0015")
    cus = await make_customer(a.base_url, h, budget_usd=float(cap))
    async with httpx.AsyncClient(base_url=b.base_url, headers=h) as c:
        r = await c.post(f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.002})
        assert r.status_code == 200
    before = upstream.count()
    responses = await race([a.base_url, b.base_url], h, cus["id"], 48)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 402}, codes
    ok = codes.count(200)
    assert 0 < ok < 48
    await check_ledger(b.base_url, h, cus["id"], cap, ok, upstream, before)


async def test_sigkill_mid_flight_keeps_settled_and_releases_holds(
    ringside_server: Any, upstream: FakeUpstream
) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))
    h = server.headers()
    cus = await make_customer(server.base_url, h, budget_usd=1)
    cid = cus["id"]
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={**h, "FC-Customer": cid}, timeout=30
    ) as c:
        settled = await c.post("/v1/chat/completions", json=body(10, 10))
        assert settled.status_code == 200
        settled_cost = Decimal(settled.headers["FC-Cost-USD"])
        # Calls that will be in flight (upstream sleeps) when the process dies.
        inflight = [
            asyncio.create_task(c.post("/v1/chat/completions", json=body(10, 10, "[sleep=5]")))
            for _ in range(3)
        ]
        assert await asyncio.to_thread(upstream.wait_for, 4) == 4
        cus_now = (await c.get(f"/v1/customers/{cid}")).json()
        assert cus_now["budget"]["held_usd"] > 0
        server.kill()  # SIGKILL
        results = await asyncio.gather(*inflight, return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results)
    server.start()
    async with httpx.AsyncClient(base_url=server.base_url, headers=h) as c:
        deadline = time.monotonic() + 15
        while True:
            cus_now = (await c.get(f"/v1/customers/{cid}")).json()
            if cus_now["budget"]["held_usd"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert cus_now["budget"]["held_usd"] == 0  # holds lapsed and were swept
        assert Decimal(str(cus_now["budget"]["spent_usd"])) == settled_cost  # nothing lost
        log = (await c.get(f"/v1/requests?customer_id={cid}")).json()["data"]
        assert [r["status"] for r in log] == ["ok"]


async def test_long_call_keeps_its_hold_past_the_ttl(
    ringside_server: Any, upstream: FakeUpstream
) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))  # hold_ttl_s = 2
    h = server.headers()
    cus = await make_customer(server.base_url, h, budget_usd=1)
    async with httpx.AsyncClient(base_url=server.base_url, headers=h, timeout=30) as c:
        call = asyncio.create_task(
            c.post(
                "/v1/chat/completions",
                json=body(5, 5, "[sleep=4]"),
                headers={"FC-Customer": cus["id"]},
            )
        )
        await asyncio.sleep(3.2)  # past the TTL: only renewal keeps the hold alive
        mid = (await c.get(f"/v1/customers/{cus['id']}")).json()
        assert mid["budget"]["held_usd"] > 0
        r = await call
        assert r.status_code == 200
        done = (await c.get(f"/v1/customers/{cus['id']}")).json()
        assert done["budget"]["held_usd"] == 0
        assert Decimal(str(done["budget"]["spent_usd"])) == Decimal(r.headers["FC-Cost-USD"])
