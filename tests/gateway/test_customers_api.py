"""Customers and keys through the real app (AsyncTestClient)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import admin, unique_id


async def create(client: Any, **body: Any) -> Any:
    body.setdefault("external_id", unique_id("ext"))
    body.setdefault("name", "Alice")
    return await client.post("/v1/customers", json=body, headers=admin())


async def test_healthz_needs_no_key(client: Any) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_customer_lifecycle(client: Any) -> None:
    r = await create(
        client,
        external_id="u-1",
        name="Alice",
        email="a@example.com",
        budget_usd=25.5,
        markup=1.5,
        metadata={"plan": "pro"},
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["id"].startswith("cus_") and c["object"] == "customer"
    assert c["monthly_budget_usd"] == 25.5 and c["markup"] == 1.5
    assert c["metadata"] == {"plan": "pro"}
    # by id and by external id
    assert (await client.get(f"/v1/customers/{c['id']}", headers=admin())).json()["id"] == c["id"]
    assert (await client.get("/v1/customers/u-1", headers=admin())).json()["id"] == c["id"]
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={"monthly_budget_usd": 10, "status": "suspended"},
        headers=admin(),
    )
    assert r.status_code == 200
    assert r.json()["monthly_budget_usd"] == 10 and r.json()["status"] == "suspended"
    r = await client.delete(f"/v1/customers/{c['id']}", headers=admin())
    assert r.status_code == 200 and r.json()["status"] == "archived"
    assert r.json()["archived_at"]
    # archived stays retrievable
    r = await client.get(f"/v1/customers/{c['id']}", headers=admin())
    assert r.json()["status"] == "archived"


async def test_duplicate_external_id_is_409(client: Any) -> None:
    assert (await create(client, external_id="dup")).status_code == 201
    r = await create(client, external_id="dup")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "customer_exists"


async def test_budget_alias_and_validation(client: Any) -> None:
    r = await create(client, external_id="alias", budget_usd=3)
    assert r.json()["monthly_budget_usd"] == 3
    for body, param in [
        ({"external_id": "v1", "name": "x", "monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"external_id": "v2", "name": "x", "monthly_budget_usd": "ten"}, "monthly_budget_usd"),
        ({"external_id": "v3"}, "name"),
        ({"name": "x"}, "external_id"),
        ({"external_id": "v4", "name": "x", "markup": -0.5}, "markup"),
        ({"external_id": "v5", "name": "x", "email": "nope"}, "email"),
        ({"external_id": "v6", "name": "x", "bogus": 1}, "bogus"),
        ({"external_id": 5, "name": "x"}, "external_id"),
        ({"external_id": "v7", "name": "x", "prepaid": "yes"}, "prepaid"),
        ({"external_id": "org/42", "name": "x"}, "external_id"),
    ]:
        r = await client.post("/v1/customers", json=body, headers=admin())
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())


async def test_list_pagination_and_filters(client: Any) -> None:
    ids = []
    for i in range(5):
        r = await create(
            client, external_id=f"p{i}", name=f"Person {i}", email=f"p{i}@corp.example"
        )
        ids.append(r.json()["id"])
    r = await client.get("/v1/customers?limit=2", headers=admin())
    page1 = r.json()
    assert page1["object"] == "list" and page1["has_more"] is True and len(page1["data"]) == 2
    seen = [c["id"] for c in page1["data"]]
    cursor = seen[-1]
    while True:
        page = (
            await client.get(f"/v1/customers?limit=2&starting_after={cursor}", headers=admin())
        ).json()
        seen += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    r = await client.get("/v1/customers?search=person%203", headers=admin())
    assert [c["external_id"] for c in r.json()["data"]] == ["p3"]
    await client.patch(f"/v1/customers/{ids[0]}", json={"status": "suspended"}, headers=admin())
    r = await client.get("/v1/customers?status=suspended", headers=admin())
    assert [c["id"] for c in r.json()["data"]] == [ids[0]]
    r = await client.get("/v1/customers?limit=0", headers=admin())
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


async def test_unknown_customer_is_404(client: Any) -> None:
    r = await client.get("/v1/customers/cus_nope", headers=admin())
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "customer_not_found"


async def test_keys_scope_and_revocation(client: Any) -> None:
    r = await client.post("/v1/keys", json={"name": "backend"}, headers=admin())
    assert r.status_code == 201
    key = r.json()
    assert key["key"].startswith("rs_") and key["id"].startswith("key_")
    app = {"Authorization": f"Bearer {key['key']}"}
    listed = (await client.get("/v1/keys", headers=admin())).json()["data"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    # app key: proxy routes yes, management no
    assert (await client.get("/v1/models", headers=app)).status_code == 200
    r = await client.get("/v1/customers", headers=app)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_permissions"
    # bad keys
    for h in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer rs_wrong"},
    ):
        r = await client.get("/v1/customers", headers=h)
        assert r.status_code == 401, h
        assert r.json()["error"]["type"] == "authentication_error"
    assert (await client.delete(f"/v1/keys/{key['id']}", headers=admin())).status_code == 200
    assert (await client.get("/v1/models", headers=app)).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/customers", b"{not json", 400),
        ("POST", "/v1/customers", b"[1,2]", 400),
        ("POST", "/v1/customers", b"", 400),
        ("POST", "/v1/customers", b'"string"', 400),
        ("POST", "/v1/customers", b"\xff\xfe", 400),
        ("GET", "/v1/nope", None, 404),
        ("PUT", "/v1/customers", b"{}", 405),
        ("POST", "/v1/chat/completions", b'{"model": 5}', 400),
        ("POST", "/v1/chat/completions", b'{"model": "fc:mock/mock-fast", "messages": []}', 400),
        ("POST", "/v1/customers", b'{"external_id": "' + b"a" * 300 + b'", "name": "x"}', 400),
        ("POST", "/v1/customers", b"[" * 100_000, 400),
    ],
)
async def test_hostile_inputs_get_envelopes(
    client: Any, method: str, path: str, body: bytes | None, status: int
) -> None:
    r = await client.request(method, path, content=body, headers=admin({"FC-Customer": "x"}))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"type", "code", "message", "param"}
    assert "Traceback" not in r.text


async def test_oversized_body_is_413(gateway_factory: Any) -> None:
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    gw = gateway_factory("[server]\nmax_body_bytes = 2048\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        r = await c.post("/v1/customers", content=b"{" + b" " * 5000 + b"}", headers=admin())
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"


async def test_openapi_document(client: Any) -> None:
    r = await client.get("/schema/openapi.json", headers=admin())
    assert r.status_code == 200
    doc = r.json()
    assert "/v1/chat/completions" in doc["paths"] and "/v1/customers" in doc["paths"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Every test in this module runs on SQLite and on PostgreSQL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_server")()
    return f"sqlite:///{tmp_path / 'ringside.db'}"


async def test_unexpected_errors_are_a_500_envelope_without_details(
    client: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    gateway.services.customers.list = boom
    r = await client.get("/v1/customers", headers=admin())
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "internal_error" and err["request_id"].startswith("err_")
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    assert "secret internal detail" in caplog.text  # the details stay in the log


async def test_app_key_last_used_is_recorded(client: Any) -> None:
    import asyncio

    key = (await client.post("/v1/keys", json={"name": "k"}, headers=admin())).json()
    assert (await client.get("/v1/keys", headers=admin())).json()["data"][0]["last_used_at"] is None
    await client.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"})
    for _ in range(50):
        listed = (await client.get("/v1/keys", headers=admin())).json()["data"][0]
        if listed["last_used_at"]:
            break
        await asyncio.sleep(0.05)
    assert listed["last_used_at"] is not None


async def test_ending_before_returns_the_page_before_the_cursor(client: Any) -> None:
    ids = []
    for i in range(6):
        r = await create(client, external_id=f"eb{i}", name=f"EB {i}")
        ids.append(r.json()["id"])
    page = (
        await client.get(f"/v1/customers?limit=2&ending_before={ids[0]}&search=eb", headers=admin())
    ).json()
    assert [c["id"] for c in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
