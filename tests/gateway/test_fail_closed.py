"""Fail closed: a ledger that cannot take the reservation refuses the call (503) and never
forwards it; a settlement that cannot be written waits in the spool and is never lost."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

import peewee
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.db.models import RequestLog
from tests.conftest import admin

CONFIG = "[server]\ndb_busy_timeout_ms = 200\n"


def body(text: str = "hi [mock:tokens=5]") -> dict[str, Any]:
    return {"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": text}]}


async def test_locked_database_refuses_with_503_and_never_forwards(gateway_factory: Any) -> None:
    gw = gateway_factory(CONFIG)
    forwarded: list[Any] = []
    async with AsyncTestClient(app=create_app(gw)) as c:
        provider = gw.providers.providers["mock"]
        original = provider.chat

        async def spy(b: dict[str, Any]) -> Any:
            forwarded.append(b)
            return await original(b)

        provider.chat = spy
        r = await c.post(
            "/v1/customers",
            json={"external_id": "locked", "name": "L", "budget_usd": 5},
            headers=admin(),
        )
        cid = r.json()["id"]
        assert gw.db.path is not None
        blocker = sqlite3.connect(gw.db.path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            r = await c.post(
                "/v1/chat/completions", json=body(), headers=admin({"FC-Customer": cid})
            )
            ready = await c.get("/readyz")  # reads still pass in WAL mode; writes do not
        finally:
            blocker.rollback()
            blocker.close()
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "ledger_unavailable"
        assert r.headers["Retry-After"] == "1"
        assert ready.status_code == 503 and "locked" in ready.json()["reason"]
        assert forwarded == []
        # once the lock is gone, calls go through again
        r = await c.post("/v1/chat/completions", json=body(), headers=admin({"FC-Customer": cid}))
        assert r.status_code == 200 and len(forwarded) == 1


async def test_unwritable_settlement_is_spooled_then_replayed(gateway_factory: Any) -> None:
    gw = gateway_factory(CONFIG)
    async with AsyncTestClient(app=create_app(gw)) as c:
        r = await c.post(
            "/v1/customers", json={"external_id": "spool", "name": "S"}, headers=admin()
        )
        cid = r.json()["id"]
        real_write = gw.db.write

        async def failing_write(fn: Any, *args: Any, **kw: Any) -> Any:
            if getattr(fn, "__name__", "") == "settle_sync":
                raise peewee.OperationalError("database is locked")
            return await real_write(fn, *args, **kw)

        gw.db.write = failing_write
        r = await c.post("/v1/chat/completions", json=body(), headers=admin({"FC-Customer": cid}))
        gw.db.write = real_write
        assert r.status_code == 200  # the call was served; its money waits in the spool
        cost = r.headers["FC-Cost-USD"]
        assert gw.ledger.spool.pending() == 1
        assert await gw.db.read(lambda: RequestLog.select().count()) == 0
        assert await gw.ledger.replay_spool() == 1
        assert await gw.ledger.replay_spool() == 0  # applied once
        rows = await gw.db.read(lambda: list(RequestLog.select()))
        assert len(rows) == 1
        assert Decimal(rows[0].cost_nanos) / 10**9 == Decimal(cost)
        usage = (await c.get(f"/v1/usage?customer_id={cid}", headers=admin())).json()
        assert usage["requests"] == 1


async def test_replay_of_an_already_recorded_settlement_is_a_no_op(gateway_factory: Any) -> None:
    gw = gateway_factory(CONFIG)
    async with AsyncTestClient(app=create_app(gw)) as c:
        r = await c.post(
            "/v1/customers",
            json={"external_id": "dup", "name": "D", "budget_usd": 1},
            headers=admin(),
        )
        cid = r.json()["id"]
        from gateway.ledger import CallEstimate, Outcome
        from gateway.tokens import TokenUsage

        est = CallEstimate(
            "mock", "mock-fast", "chat", False, gw.prices.rates("mock", "mock-fast"), 100, 50
        )
        res = await gw.ledger.reserve(cid, est)
        record = gw.ledger.settle_record(res, Outcome("ok", 200, TokenUsage(10, 0, 0, 5, 0)))
        await gw.db.write(gw.ledger.settle_sync, record)
        gw.ledger.spool.append(record)  # as if the commit's answer had been lost
        assert await gw.ledger.replay_spool() == 1
        c_after = (await c.get(f"/v1/customers/{cid}", headers=admin())).json()
        assert Decimal(str(c_after["budget"]["spent_usd"])) * 10**9 == record.cost_nanos
