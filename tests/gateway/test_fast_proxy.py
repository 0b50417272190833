"""The proxy's fast path answers exactly as the framework did: auth, limits, envelopes."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.conftest import ADMIN_KEY, admin

CHAT = {"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]}


async def customer(client: Any, ext: str = "fp") -> str:
    r = await client.post("/v1/customers", json={"external_id": ext, "name": ext}, headers=admin())
    return str(r.json()["id"])


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "invalid_api_key"),
        ({"Authorization": "Bearer nope"}, 401, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, 401, "invalid_api_key"),
        ({"Authorization": "Bearer " + "x" * 600}, 401, "invalid_api_key"),
    ],
)
async def test_proxy_auth_failures_are_envelopes(
    client: Any, headers: dict[str, str], status: int, code: str
) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status_code == status and r.json()["error"]["code"] == code


async def test_x_api_key_and_app_keys_reach_the_proxy(client: Any) -> None:
    cid = await customer(client)
    key = (await client.post("/v1/keys", json={"name": "k"}, headers=admin())).json()["key"]
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}, admin()):
        r = await client.post(
            "/v1/chat/completions", json=CHAT, headers={**headers, "FC-Customer": cid}
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.headers["FC-Request-Id"].startswith("req_")


async def test_an_oversized_proxy_body_is_413(gateway_factory: Any) -> None:
    gw = gateway_factory("[server]\nmax_body_bytes = 2048\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        r = await c.post("/v1/chat/completions", json=big, headers=admin({"FC-Customer": "a"}))
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"


async def test_other_methods_on_proxy_paths_stay_with_the_framework(client: Any) -> None:
    r = await client.get("/v1/chat/completions", headers=admin())
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_an_unexpected_error_is_a_500_envelope_without_details(
    client: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    gateway.services.metering.call = boom
    r = await client.post("/v1/chat/completions", json=CHAT, headers=admin({"FC-Customer": "a"}))
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "internal_error" and err["request_id"].startswith("err_")
    assert "secret internal detail" not in r.text
    assert "secret internal detail" in caplog.text


async def test_streams_through_the_fast_path_are_sse_and_settled(client: Any) -> None:
    cid = await customer(client, "fps")
    r = await client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        headers=admin({"FC-Customer": cid}),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    assert '"cost_usd"' in r.text
    log = (await client.get(f"/v1/requests?customer_id={cid}", headers=admin())).json()["data"]
    assert [x["status"] for x in log] == ["ok"]
    assert ADMIN_KEY not in r.text
