"""The contract: the served document is valid OpenAPI, names every route the app serves,
and describes what the routes really answer."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from openapi_spec_validator import validate

from gateway.api.contract import OPERATIONS
from tests.conftest import admin, unique_id


async def test_the_document_is_valid_openapi(client: Any) -> None:
    r = await client.get("/schema/openapi.json", headers=admin())
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    create = doc["paths"]["/v1/customers"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CustomerCreate"}
    schema = doc["components"]["schemas"]["CustomerCreate"]
    assert set(schema["required"]) == {"external_id", "name"}
    assert schema["additionalProperties"] is False
    assert {"400", "401", "403", "409", "413"} <= set(create["responses"])
    error = create["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    listing = doc["paths"]["/v1/customers"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "starting_after", "status"}


async def test_every_route_is_in_the_contract_and_nothing_else(client: Any) -> None:
    served = set()
    for route in client.app.routes:
        for method in getattr(route, "methods", ()):
            if method in ("HEAD", "OPTIONS"):
                continue
            served.add((method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)))
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert served == documented


def _op(method: str, path: str) -> Any:
    return next(op for op in OPERATIONS if (op.method, op.path) == (method, path))


async def test_answers_match_their_models(client: Any) -> None:
    """The core routes' real answers decode into their response models (the full fuzzing
    runs against a real process in tests/e2e/test_schemathesis_e2e.py)."""
    plan = await client.post(
        "/v1/plans", json={"name": "P", "limits": {"max_concurrent": 2}}, headers=admin()
    )
    ext = unique_id("c")
    cus = await client.post(
        "/v1/customers",
        json={"external_id": ext, "name": "C", "prepaid": True, "plan": plan.json()["id"]},
        headers=admin(),
    )
    top = await client.post(
        f"/v1/customers/{ext}/wallet/topup", json={"amount_usd": 1.5}, headers=admin()
    )
    await client.post(
        "/v1/chat/completions",
        json={"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]},
        headers=admin({"FC-Customer": ext}),
    )
    key = await client.post("/v1/keys", json={"name": "k", "kind": "read"}, headers=admin())
    answers = [
        (("POST", "/v1/plans"), plan),
        (("POST", "/v1/customers"), cus),
        (("POST", "/v1/customers/{customer_ref}/wallet/topup"), top),
        (("POST", "/v1/keys"), key),
    ]
    for method, path, url in [
        ("GET", "/healthz", "/healthz"),
        ("GET", "/readyz", "/readyz"),
        ("GET", "/v1/models", "/v1/models"),
        ("GET", "/v1/customers", "/v1/customers"),
        ("GET", "/v1/customers/{customer_ref}", f"/v1/customers/{ext}"),
        ("GET", "/v1/customers/{customer_ref}/wallet", f"/v1/customers/{ext}/wallet"),
        ("GET", "/v1/plans", "/v1/plans"),
        ("GET", "/v1/plans/{plan_ref}", f"/v1/plans/{plan.json()['id']}"),
        ("GET", "/v1/keys", "/v1/keys"),
        ("GET", "/v1/usage", "/v1/usage?group_by=customer"),
        ("GET", "/v1/requests", "/v1/requests"),
        ("GET", "/v1/audit_log", "/v1/audit_log"),
    ]:
        answers.append(((method, path), await client.get(url, headers=admin())))
    for (method, path), r in answers:
        op = _op(method, path)
        assert r.status_code == op.status, (method, path, r.text)
        msgspec.convert(r.json(), type=op.response, strict=False)
