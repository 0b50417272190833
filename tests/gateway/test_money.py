"""Budgets, wallets, holds, clamping, crossings and idempotency through the real app."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.db.models import Event, Hold
from tests.conftest import admin, unique_id

# $1 / $2 per million tokens: one input token = 1000 nanos, one output token = 2000 nanos.
PRICES = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 1000
"""


@pytest.fixture
async def app(gateway_factory: Any) -> Any:
    gw = gateway_factory(PRICES + "\n[billing]\nhold_ttl_s = 2\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        c.gw = gw  # type: ignore[attr-defined]
        yield c


async def customer(c: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("external_id", unique_id("m"))
    body.setdefault("name", "Money")
    r = await c.post("/v1/customers", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


def call(tokens: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "model": "fc:mock/mock-fast",
        "messages": [{"role": "user", "content": f"hi [mock:tokens={tokens}]"}],
        **extra,
    }


async def test_budget_caps_cost_and_402_names_everything(app: Any) -> None:
    cus = await customer(app, budget_usd=0.001)  # 1,000,000 nanos
    h = admin({"FC-Customer": cus["id"]})
    statuses = []
    for _ in range(40):
        r = await app.post("/v1/chat/completions", json=call(100, max_tokens=100), headers=h)
        statuses.append(r.status_code)
        if r.status_code == 200:
            assert Decimal(r.headers["FC-Budget-Remaining-USD"]) >= 0
        else:
            assert r.status_code == 402
            assert r.headers["x-should-retry"] == "false"
            err = r.json()["error"]
            assert err["code"] == "customer_budget_exceeded"
            assert err["customer_id"] == cus["id"]
            assert err["monthly_budget_usd"] == 0.001
            assert "spent_usd" in err and cus["id"] in err["message"]
    assert 200 in statuses and statuses[-1] == 402
    c = (await app.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert Decimal(str(c["budget"]["spent_usd"])) <= Decimal("0.001")
    assert c["budget"]["held_usd"] == 0
    refused = (await app.get("/v1/requests?status=refused", headers=admin())).json()["data"]
    assert refused and refused[0]["error_code"] == "customer_budget_exceeded"


async def test_wallet_debits_price_and_empties(app: Any) -> None:
    cus = await customer(app, markup=2)
    r = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup",
        json={"amount_usd": 0.001, "description": "starter"},
        headers=admin(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["balance_usd"] == 0.001
    assert r.json()["transaction"]["type"] == "topup"
    assert r.json()["transaction"]["id"].startswith("txn_")
    h = admin({"FC-Customer": cus["id"]})
    last = None
    for _ in range(50):
        r = await app.post("/v1/chat/completions", json=call(50, max_tokens=50), headers=h)
        if r.status_code != 200:
            last = r
            break
        assert Decimal(r.headers["FC-Wallet-Balance-USD"]) >= 0
        # debited at price = cost x 2
        assert Decimal(r.headers["FC-Price-USD"]) == 2 * Decimal(r.headers["FC-Cost-USD"])
    assert last is not None and last.status_code == 402
    assert last.json()["error"]["code"] == "customer_wallet_empty"
    assert last.headers["x-should-retry"] == "false"
    w = (await app.get(f"/v1/customers/{cus['id']}/wallet", headers=admin())).json()
    assert w["balance_usd"] >= 0 and w["held_usd"] == 0
    debits = [t for t in w["transactions"] if t["type"] == "usage"]
    total = sum(Decimal(str(t["amount_usd"])) for t in w["transactions"])
    assert Decimal(str(w["balance_usd"])) == total  # history sums to the balance
    assert debits


async def test_prepaid_without_topup_is_refused(app: Any) -> None:
    cus = await customer(app, prepaid=True)
    r = await app.post(
        "/v1/chat/completions", json=call(), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 402 and r.json()["error"]["code"] == "customer_wallet_empty"
    assert r.json()["error"]["balance_usd"] == 0


async def test_max_tokens_clamped_to_what_budget_pays(app: Any) -> None:
    gw = app.gw
    seen: list[dict[str, Any]] = []
    provider = gw.providers.providers["mock"]
    original = provider.chat

    async def spy(body: dict[str, Any]) -> Any:
        seen.append(body)
        return await original(body)

    provider.chat = spy
    # Budget for the input bound plus ~200 output tokens (2000 nanos each).
    cus = await customer(app, budget_usd=0.0006)
    r = await app.post(
        "/v1/chat/completions", json=call(5000), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 200
    injected = seen[-1]["max_tokens"]
    assert 16 <= injected < 300
    assert r.json()["usage"]["completion_tokens"] == injected
    # a client-given max_tokens is never raised or rewritten
    cus2 = await customer(app, budget_usd=1)
    await app.post(
        "/v1/chat/completions",
        json=call(5, max_tokens=7),
        headers=admin({"FC-Customer": cus2["id"]}),
    )
    assert seen[-1]["max_tokens"] == 7
    # unlimited customers are not clamped
    cus3 = await customer(app)
    await app.post("/v1/chat/completions", json=call(5), headers=admin({"FC-Customer": cus3["id"]}))
    assert "max_tokens" not in seen[-1]


async def test_concurrent_calls_never_overspend(app: Any) -> None:
    cus = await customer(app, budget_usd=0.002)
    await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.0015}, headers=admin()
    )
    h = admin({"FC-Customer": cus["id"]})

    async def one(i: int) -> int:
        body = call(60, max_tokens=60) if i % 2 else call(60)
        r = await app.post("/v1/chat/completions", json=body, headers=h)
        return r.status_code

    codes = await asyncio.gather(*(one(i) for i in range(40)))
    assert set(codes) <= {200, 402} and 200 in codes and 402 in codes
    c = (await app.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert Decimal(str(c["budget"]["spent_usd"])) <= Decimal("0.002")
    assert c["wallet"]["balance_usd"] >= 0
    assert c["budget"]["held_usd"] == 0 and c["wallet"]["held_usd"] == 0


async def test_lapsed_holds_are_swept(app: Any, clock: Any) -> None:
    gw = app.gw
    cus = await customer(app, budget_usd=1)
    from gateway.ledger import CallEstimate

    rates = gw.prices.rates("mock", "mock-fast")
    est = CallEstimate("mock", "mock-fast", "chat", False, rates, 100, 100)
    r = await gw.ledger.reserve(cus["id"], est)  # a call whose instance then "crashes"
    c = (await app.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert c["budget"]["held_usd"] > 0
    clock.advance(seconds=3)  # past hold_ttl_s = 2
    assert await gw.ledger.sweep_expired_holds() == 1
    c = (await app.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert c["budget"]["held_usd"] == 0
    hold = await gw.db.read(lambda: Hold.get_by_id(r.hold_id))
    assert hold.status == "expired"
    # settling a lapsed hold still records the spend, without releasing twice
    from gateway.ledger import Outcome
    from gateway.tokens import TokenUsage

    s = await gw.ledger.settle(r, Outcome("ok", 200, TokenUsage(input_tokens=10, output_tokens=10)))
    assert s.cost_nanos == 30_000
    c = (await app.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert c["budget"]["held_usd"] == 0 and c["budget"]["spent_usd"] == 0.00003


async def test_renewal_keeps_holds_alive(app: Any, clock: Any) -> None:
    gw = app.gw
    cus = await customer(app, budget_usd=1)
    from gateway.ledger import CallEstimate

    est = CallEstimate(
        "mock", "mock-fast", "chat", False, gw.prices.rates("mock", "mock-fast"), 100, 100
    )
    r = await gw.ledger.reserve(cus["id"], est)
    for _ in range(3):
        clock.advance(seconds=1.5)
        assert await gw.ledger.renew([r.hold_id]) == 1
        assert await gw.ledger.sweep_expired_holds() == 0


async def test_cost_above_hold_is_recorded_in_full_and_flagged(app: Any) -> None:
    cus = await customer(app, budget_usd=1)
    r = await app.post(
        "/v1/chat/completions",
        json=call(
            max_tokens=10, messages=[{"role": "user", "content": "x [mock:ignore_max_tokens=5000]"}]
        ),
        headers=admin({"FC-Customer": cus["id"]}),
    )
    assert r.status_code == 200
    assert r.json()["usage"]["completion_tokens"] == 5000
    log = (await app.get("/v1/requests", headers=admin())).json()["data"][0]
    assert log["over_hold"] is True and log["output_tokens"] == 5000
    c = (await app.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert Decimal(str(c["budget"]["spent_usd"])) == Decimal(r.headers["FC-Cost-USD"])


async def test_new_month_starts_from_zero(app: Any, clock: Any) -> None:
    cus = await customer(app, budget_usd=0.0003)
    h = admin({"FC-Customer": cus["id"]})
    while (
        await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    ).status_code == 200:
        pass
    clock.now = clock.now.replace(day=1) if clock.now.month == 12 else clock.now
    from datetime import timedelta

    clock.now = (clock.now.replace(day=28) + timedelta(days=5)).replace(day=1)
    r = await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    assert r.status_code == 200


async def test_crossing_events_fire_once(app: Any) -> None:
    gw = app.gw
    cus = await customer(app, budget_usd=0.0005, low_balance_threshold_usd=0.0004)
    await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.0006}, headers=admin()
    )
    h = admin({"FC-Customer": cus["id"]})
    for _ in range(30):
        await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    events = await gw.db.read(
        lambda: [(e.type, e.data) for e in Event.select().where(Event.customer_id == cus["id"])]
    )
    types = [t for t, _ in events]
    assert types.count("wallet.topped_up") == 1
    assert types.count("wallet.low") == 1
    assert types.count("budget.warning") == 1
    assert types.count("budget_exceeded") == 1
    low = next(d for t, d in events if t == "wallet.low")
    assert low["customer"]["id"] == cus["id"] and low["balance_usd"] < 0.0004
    # a top-up above the threshold re-arms wallet.low
    await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 1}, headers=admin()
    )
    await app.patch(
        f"/v1/customers/{cus['id']}", json={"monthly_budget_usd": None}, headers=admin()
    )
    balance = (await app.get(f"/v1/customers/{cus['id']}/wallet", headers=admin())).json()[
        "balance_usd"
    ]
    threshold = Decimal(str(balance)) - Decimal("0.00001")
    await app.patch(
        f"/v1/customers/{cus['id']}",
        json={"low_balance_threshold_usd": float(threshold)},
        headers=admin(),
    )
    await app.post("/v1/chat/completions", json=call(100, max_tokens=100), headers=h)
    types = await gw.db.read(
        lambda: [e.type for e in Event.select().where(Event.customer_id == cus["id"])]
    )
    assert types.count("wallet.low") == 2


@pytest.mark.parametrize("amount", [0, -5, "10", None, True, 1_000_001, 1e-10, [1], {"a": 1}])
async def test_hostile_topups_change_nothing(app: Any, amount: Any) -> None:
    cus = await customer(app)
    r = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": amount}, headers=admin()
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_amount"
    w = (await app.get(f"/v1/customers/{cus['id']}/wallet", headers=admin())).json()
    assert w["balance_usd"] == 0 and w["transactions"] == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount_usd": NaN}',
        b'{"amount_usd": Infinity}',
        b'{"amount_usd": 1e400}',
        b'{"amount_usd": -0.0}',
    ],
)
async def test_non_finite_topups(app: Any, raw: bytes) -> None:
    cus = await customer(app)
    r = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup",
        content=raw,
        headers=admin({"content-type": "application/json"}),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_amount"


async def test_idempotent_topup(app: Any) -> None:
    cus = await customer(app)
    url = f"/v1/customers/{cus['id']}/wallet/topup"
    h = admin({"Idempotency-Key": "k-1"})
    r1 = await app.post(url, json={"amount_usd": 5}, headers=h)
    r2 = await app.post(url, json={"amount_usd": 5}, headers=h)
    assert r1.status_code == r2.status_code == 200
    assert r1.json() == r2.json()
    assert r2.headers.get("Idempotent-Replayed") == "true"
    r3 = await app.post(url, json={"amount_usd": 6}, headers=h)
    assert r3.status_code == 409 and r3.json()["error"]["code"] == "idempotency_key_reused"
    w = (await app.get(f"{url[:-6]}", headers=admin())).json()
    assert w["balance_usd"] == 5 and len(w["transactions"]) == 1


async def test_idempotency_in_progress(app: Any) -> None:
    from gateway.db.models import IdempotencyRecord
    from gateway.ledger.idempotency import _canonical

    cus = await customer(app)
    url = f"/v1/customers/{cus['id']}/wallet/topup"
    gw = app.gw
    import hashlib
    import time

    raw = b'{"amount_usd": 5}'

    def claim() -> None:
        IdempotencyRecord.insert(
            key="busy",
            scope=f"topup:{cus['id']}",
            request_hash=hashlib.sha256(_canonical(raw)).hexdigest(),
            status="in_progress",
            created_ms=int(time.time() * 1000),
            locked_until_ms=int(time.time() * 1000) + 60_000,
        ).execute()

    await gw.db.write(claim)
    r = await app.post(url, content=raw, headers=admin({"Idempotency-Key": "busy"}))
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_in_progress"


async def test_concurrent_same_key_applies_once(app: Any) -> None:
    cus = await customer(app)
    url = f"/v1/customers/{cus['id']}/wallet/topup"
    h = admin({"Idempotency-Key": "race"})
    rs = await asyncio.gather(
        *(app.post(url, json={"amount_usd": 1}, headers=h) for _ in range(10))
    )
    assert {r.status_code for r in rs} <= {200, 409}
    w = (await app.get(f"/v1/customers/{cus['id']}/wallet", headers=admin())).json()
    assert w["balance_usd"] == 1


async def test_idempotent_customer_create(app: Any) -> None:
    body = {"external_id": "idem-cus", "name": "Once"}
    h = admin({"Idempotency-Key": "create-1"})
    r1 = await app.post("/v1/customers", json=body, headers=h)
    r2 = await app.post("/v1/customers", json=body, headers=h)
    assert r1.status_code == r2.status_code == 201 and r1.json()["id"] == r2.json()["id"]
    r3 = await app.post("/v1/customers", json={**body, "name": "Other"}, headers=h)
    assert r3.status_code == 409 and r3.json()["error"]["code"] == "idempotency_key_reused"


async def test_topup_key_is_scoped_to_the_customer_not_the_spelling(app: Any) -> None:
    cus = await customer(app, external_id="spelled-twice")
    h = admin({"Idempotency-Key": "same"})
    r1 = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 10}, headers=h
    )
    r2 = await app.post(
        "/v1/customers/spelled-twice/wallet/topup", json={"amount_usd": 10}, headers=h
    )
    assert r1.status_code == r2.status_code == 200
    w = (await app.get(f"/v1/customers/{cus['id']}/wallet", headers=admin())).json()
    assert w["balance_usd"] == 10


async def test_raising_the_budget_rearms_this_months_crossings(app: Any) -> None:
    gw = app.gw
    cus = await customer(app, budget_usd=0.0003)
    h = admin({"FC-Customer": cus["id"]})
    while (
        await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    ).status_code == 200:
        pass
    await app.patch(f"/v1/customers/{cus['id']}", json={"budget_usd": 1}, headers=admin())
    r = await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    assert r.status_code == 200
    await app.patch(f"/v1/customers/{cus['id']}", json={"budget_usd": 0.0001}, headers=admin())
    r = await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    assert r.status_code == 402
    types = await gw.db.read(
        lambda: [e.type for e in Event.select().where(Event.customer_id == cus["id"])]
    )
    assert types.count("budget_exceeded") == 2  # once per crossing, re-armed by the raise


async def test_wallet_402_names_what_was_spent(app: Any) -> None:
    cus = await customer(app)
    await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 0.0002}, headers=admin()
    )
    h = admin({"FC-Customer": cus["id"]})
    while (
        r := await app.post("/v1/chat/completions", json=call(20, max_tokens=20), headers=h)
    ).status_code == 200:
        pass
    err = r.json()["error"]
    assert err["code"] == "customer_wallet_empty" and err["customer_id"] == cus["id"]
    assert err["spent_usd"] > 0 and "balance_usd" in err


async def test_idempotency_compares_parameters_not_bytes(app: Any) -> None:
    cus = await customer(app)
    url = f"/v1/customers/{cus['id']}/wallet/topup"
    h = admin({"Idempotency-Key": "canon", "content-type": "application/json"})
    r1 = await app.post(url, content=b'{"amount_usd":5,"description":"x"}', headers=h)
    r2 = await app.post(url, content=b'{ "description": "x",  "amount_usd": 5 }', headers=h)
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json()
