"""/metrics (Prometheus exposition, parsed with prometheus_client's own parser) and /readyz."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from tests.conftest import admin

CHAT = {"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]}
TOKEN = "metrics-token-0123456789abcdef"


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], name: str, **labels: str) -> float:
    total = 0.0
    family = name
    for suffix in ("_total", "_count", "_sum", "_bucket"):
        family = family.removesuffix(suffix)
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


async def traffic(client: Any) -> str:
    cus = await client.post(
        "/v1/customers",
        json={"external_id": "m1", "name": "M", "budget_usd": 0.0005},
        headers=admin(),
    )
    cid = cus.json()["id"]
    for _ in range(3):
        r = await client.post(
            "/v1/chat/completions", json=CHAT, headers=admin({"FC-Customer": cid})
        )
    stream = await client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True}, headers=admin({"FC-Customer": cid})
    )
    assert stream.status_code == 200
    big = {**CHAT, "max_tokens": 100_000}
    r = await client.post("/v1/chat/completions", json=big, headers=admin({"FC-Customer": cid}))
    assert r.status_code == 402
    await client.post("/v1/chat/completions", json=CHAT, headers=admin())  # no customer: 400
    return str(cid)


async def test_metrics_after_real_traffic_parse_and_add_up(client: Any) -> None:
    await traffic(client)
    r = await client.get("/metrics", headers=admin())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    fams = families(r.text)
    route = "/v1/chat/completions"
    ok = sample(fams, "ringside_requests_total", route=route, status="200", provider="mock")
    assert ok == 4  # three JSON calls and one stream
    assert sample(fams, "ringside_requests_total", route=route, status="402") == 1
    assert sample(fams, "ringside_requests_total", route=route, status="400") == 1
    assert sample(fams, "ringside_refused_total", code="customer_budget_exceeded") == 1
    assert sample(fams, "ringside_request_duration_seconds_count", route=route) == 6
    assert sample(fams, "ringside_upstream_duration_seconds_count", provider="mock") == 4
    assert sample(fams, "ringside_ledger_reserve_seconds_count") >= 4
    assert sample(fams, "ringside_ledger_settle_seconds_count") == 4
    assert sample(fams, "ringside_stream_bytes_total") > 0
    usage = (await client.get("/v1/usage", headers=admin())).json()
    cost = sample(fams, "ringside_cost_usd_total", provider="mock", model="mock-fast")
    price = sample(fams, "ringside_price_usd_total", provider="mock", model="mock-fast")
    assert cost == pytest.approx(usage["total_cost_usd"], rel=1e-9)
    assert price == pytest.approx(usage["total_price_usd"], rel=1e-9)
    assert sample(fams, "ringside_holds_open") == 0
    assert sample(fams, "ringside_webhook_outbox_pending") >= 0
    assert "ringside_stripe_last_sync_timestamp_seconds" in fams
    assert "process_cpu_seconds" in fams  # the library's process collector
    for name in ("ringside_settlements_spooled", "ringside_webhook_endpoints_disabled"):
        assert name in fams


async def test_metrics_need_the_admin_key_or_the_token(gateway_factory: Any) -> None:
    gw = gateway_factory(env={"RINGSIDE_METRICS_TOKEN": TOKEN})
    async with AsyncTestClient(app=create_app(gw)) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (
            await c.get("/metrics", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        key = (await c.post("/v1/keys", json={"name": "k"}, headers=admin())).json()["key"]
        app_key = await c.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert app_key.status_code == 403
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and "ringside_requests" in r.text
        assert (await c.get("/metrics", headers=admin())).status_code == 200


async def test_public_and_disabled_metrics(gateway_factory: Any) -> None:
    gw = gateway_factory("[metrics]\npublic = true\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        assert (await c.get("/metrics")).status_code == 200
    gw.db.close()
    gw = gateway_factory("[metrics]\nenabled = false\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        r = await c.get("/metrics", headers=admin())
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_per_customer_labels_only_when_asked(gateway_factory: Any) -> None:
    gw = gateway_factory("[metrics]\nper_customer = true\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        cid = await traffic(c)
        fams = families((await c.get("/metrics", headers=admin())).text)
        assert sample(fams, "ringside_cost_usd_total", customer=cid) > 0


async def test_readyz_says_why_it_is_not_ready(client: Any, gateway: Any) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    spool = gateway.ledger.spool
    spool.path.parent.mkdir(parents=True, exist_ok=True)
    spool.path.write_text("{}\n" * 101)
    r = await client.get("/readyz")
    assert r.status_code == 503 and "spooled" in r.json()["reason"]
    spool.path.unlink()
    assert (await client.get("/readyz")).status_code == 200
