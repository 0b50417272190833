"""Concurrent writes to plans and customers (found in review, on PostgreSQL where writes
run in parallel): merges never lose a limit; a plan is never deleted under a customer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.conftest import admin, unique_id


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_server")())
    return f"sqlite:///{tmp_path / 'ringside.db'}"


@pytest.fixture
async def app(gateway_factory: Any) -> Any:
    async with AsyncTestClient(app=create_app(gateway_factory())) as c:
        yield c


async def test_concurrent_limit_merges_keep_every_limit(app: Any) -> None:
    for kind in ("customers", "plans"):
        for _ in range(8):
            body: dict[str, Any] = {"name": "Merge"}
            if kind == "customers":
                body["external_id"] = unique_id("m")
            r = await app.post(f"/v1/{kind}", json=body, headers=admin())
            ref = r.json()["id"]
            a, b = await asyncio.gather(
                app.patch(
                    f"/v1/{kind}/{ref}",
                    json={"limits": {"requests_per_minute": 5}},
                    headers=admin(),
                ),
                app.patch(
                    f"/v1/{kind}/{ref}", json={"limits": {"max_concurrent": 2}}, headers=admin()
                ),
            )
            assert a.status_code == b.status_code == 200
            limits = (await app.get(f"/v1/{kind}/{ref}", headers=admin())).json()["limits"]
            assert (limits["requests_per_minute"], limits["max_concurrent"]) == (5, 2), kind


async def test_a_plan_is_never_deleted_under_a_customer(app: Any) -> None:
    for _ in range(8):
        plan = (await app.post("/v1/plans", json={"name": "Race"}, headers=admin())).json()
        cus = (
            await app.post(
                "/v1/customers", json={"external_id": unique_id("r"), "name": "R"}, headers=admin()
            )
        ).json()
        deleted, attached = await asyncio.gather(
            app.delete(f"/v1/plans/{plan['id']}", headers=admin()),
            app.patch(f"/v1/customers/{cus['id']}", json={"plan": plan["id"]}, headers=admin()),
        )
        outcomes = (deleted.status_code, attached.status_code)
        assert outcomes in ((200, 400), (409, 200)), (outcomes, deleted.text, attached.text)
