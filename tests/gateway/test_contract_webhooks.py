"""The contract of the webhook and Stripe-sync routes, held against the running app.

Every operation of `gateway.api.contract.webhooks` is called for real (in-process app,
loopback webhook receivers, the fake Stripe) and its answer must convert to the
operation's response Struct and validate against the generated OpenAPI schema; the error
answers met on the way must be documented statuses in the error envelope.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, get_args

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate as validate_openapi

from gateway.api import stripe as stripe_api
from gateway.api import webhooks as webhooks_api
from gateway.api.auth import route_scope
from gateway.api.contract import OPERATIONS, Op, openapi_document
from gateway.api.contract import webhook_models as w
from gateway.api.contract import webhooks as contract
from gateway.api.contract.models import ErrorBody
from gateway.app import create_app
from gateway.event_types import ALL_EVENT_TYPES
from gateway.stripe_sync.engine import RetryPolicy
from gateway.stripe_sync.models import BATCH_STATES
from gateway.stripe_sync.service import RESOLUTIONS
from gateway.stripe_sync.units import UNITS
from gateway.webhooks.service import CREATE_FIELDS, DELIVERY_STATUSES, MAX_GRACE_S, UPDATE_FIELDS
from gateway.wiring import Gateway
from tests.conftest import MutableClock, admin
from tests.fakes.fake_stripe import API_KEY, FakeStripe
from tests.gateway.test_webhooks import Receiver

try:
    import jsonschema  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - the Struct check still runs
    jsonschema = None

DOC = openapi_document(OPERATIONS, version="test", description="test")
BY_ID: dict[str, Op] = {op.operation_id: op for op in OPERATIONS}


def _closed(node: Any) -> Any:
    """The schemas with every described object closed: an answer carrying a field the
    contract does not name fails too (the document itself leaves answers open)."""
    if isinstance(node, dict):
        out = {k: _closed(v) for k, v in node.items()}
        if "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


CLOSED_COMPONENTS = _closed(DOC["components"])

PRICES = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 3.33
output_usd_per_mtok = 41.7
max_output_tokens = 4000
"""
WEBHOOKS = PRICES + "\n[webhooks]\ninitial_retry_delay_s = 0.05\npoll_interval_s = 0.2\n"

WEBHOOK_OPS = {
    "listWebhookEndpoints",
    "createWebhookEndpoint",
    "getWebhookEndpoint",
    "updateWebhookEndpoint",
    "deleteWebhookEndpoint",
    "rotateWebhookSecret",
    "listEvents",
    "getEvent",
    "retryEvent",
    "listWebhookDeliveries",
    "retryWebhookDelivery",
}
STRIPE_OPS = {
    "syncStripe",
    "listStripeSyncRuns",
    "getStripeSyncRun",
    "listStripeCustomerStates",
    "getStripeCustomerState",
    "listStripeBatches",
    "resolveStripeBatch",
}


# ---------------------------------------------------------------------------- helpers


class Caller:
    """Calls operations by operationId and holds each answer to the contract."""

    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.client = client
        self.ok: set[str] = set()

    async def call(
        self,
        op_id: str,
        *,
        path: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        body: Any = None,
        status: int | None = None,
        code: str | None = None,
    ) -> Any:
        op = BY_ID[op_id]
        url = op.path.format(**(path or {}))
        documented = {p.name for p in op.params if p.where == "query"}
        assert set(params or {}) <= documented, (op_id, set(params or {}) - documented)
        expected = op.status if status is None else status
        if body is not None:
            assert op.request is not None, f"{op_id} takes no body"
            if expected == op.status:  # a valid call sends what the contract allows
                msgspec.convert(body, type=op.request)
        r = await self.client.request(
            op.method,
            url,
            params={k: str(v) for k, v in (params or {}).items()},
            json=body,
            headers=admin(),
        )
        assert r.status_code == expected, (op_id, r.status_code, r.text)
        responses = DOC["paths"][op.path][op.method.lower()]["responses"]
        assert str(expected) in responses, f"{op_id}: {expected} is not documented"
        answer = r.json()
        if expected != op.status:
            err = msgspec.convert(answer, type=ErrorBody)
            if code is not None:
                assert err.error.code == code, answer
            return answer
        assert op.response is not None
        msgspec.convert(answer, type=op.response, strict=False)
        schema = responses[str(expected)]["content"]["application/json"]["schema"]
        if jsonschema is not None:  # also checks that no field goes undocumented
            jsonschema.validate(
                answer,
                {**schema, "components": CLOSED_COMPONENTS},
                cls=jsonschema.Draft202012Validator,
            )
        self.ok.add(op_id)
        return answer


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 10) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def new_customer(c: AsyncTestClient[Any], external_id: str, stripe_id: str = "") -> str:
    body: dict[str, Any] = {"external_id": external_id, "name": external_id.title()}
    if stripe_id:
        body["stripe_customer_id"] = stripe_id
    r = await c.post("/v1/customers", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def spend(c: AsyncTestClient[Any], customer: str, tokens: int = 1500) -> None:
    r = await c.post(
        "/v1/chat/completions",
        json={
            "model": "fc:mock/mock-fast",
            "messages": [{"role": "user", "content": f"go [mock:tokens={tokens}]"}],
        },
        headers=admin({"FC-Customer": customer}),
    )
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------- the document


def _litestar_path(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def test_document_is_valid_openapi_and_matches_the_routes() -> None:
    validate_openapi(DOC)
    routes: dict[tuple[str, str], Any] = {}
    for handler in [*webhooks_api.ROUTES, *stripe_api.ROUTES]:
        for path in handler.paths:
            for method in handler.http_methods:
                routes[(method, _litestar_path(path))] = handler
    ops = {(op.method, op.path): op for op in contract.OPS}
    assert set(ops) == set(routes)
    assert {op.operation_id for op in contract.OPS} == WEBHOOK_OPS | STRIPE_OPS
    for key, op in ops.items():
        handler = routes[key]
        assert op.scope == route_scope(handler, op.method, op.path), op.operation_id
        assert op.scope == ("read" if op.method == "GET" else "admin"), op.operation_id
        in_path = set(re.findall(r"\{(\w+)\}", op.path))
        assert in_path == {p.name for p in op.params if p.where == "path"}, op.operation_id
        assert op.status == (201 if op.operation_id == "createWebhookEndpoint" else 200)
    links = DOC["paths"]["/v1/webhook_endpoints"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"]: link["parameters"] for link in links.values()}
    for target in ("rotateWebhookSecret", "getWebhookEndpoint"):
        assert targets[target] == {"endpoint_id": "$response.body#/id"}


def test_the_contract_repeats_the_code_s_fixed_sets() -> None:
    assert set(w.EVENT_TYPES) == {t.value for t in ALL_EVENT_TYPES}
    assert set(get_args(w.DeliveryStatus)) == set(DELIVERY_STATUSES)
    assert set(get_args(w.BatchState)) == set(BATCH_STATES)
    assert set(get_args(w.ValueUnit)) == set(UNITS)
    outcome = w.StripeBatchResolve.__annotations__["outcome"]
    assert "pushed" in outcome and "resend" in outcome and len(RESOLUTIONS) == 2
    assert set(w.WebhookEndpointCreate.__struct_fields__) == CREATE_FIELDS
    assert set(w.WebhookEndpointUpdate.__struct_fields__) == UPDATE_FIELDS
    grace = DOC["components"]["schemas"]["WebhookSecretRotate"]["properties"]["grace_period_s"]
    assert grace["maximum"] == MAX_GRACE_S and grace["minimum"] == 0


URL = "http://127.0.0.1:9/hooks"
# Rules only the document states (msgspec does not check `extra_json_schema`).
DOCUMENT_ONLY = [{"url": URL, "events": ["*", "wallet.low"]}]


def _allowed(op: Op, body: Any) -> bool:
    """Whether the contract takes this body: the Struct and the document must agree."""
    assert op.request is not None
    try:
        msgspec.convert(body, type=op.request)
        by_struct = True
    except msgspec.ValidationError:
        by_struct = False
    if jsonschema is None:
        return by_struct
    schema = {"$ref": f"#/components/schemas/{op.request.__name__}", **DOC}
    by_document: bool = jsonschema.Draft202012Validator(schema).is_valid(body)
    assert by_struct == by_document or body in DOCUMENT_ONLY, (op.operation_id, body)
    return by_document


BODIES: list[tuple[str, Any]] = [
    ("createWebhookEndpoint", {"url": URL}),
    ("createWebhookEndpoint", {"url": URL, "events": ["*"], "description": "", "enabled": None}),
    ("createWebhookEndpoint", {"url": URL, "events": ["wallet.low", "wallet.low"]}),
    ("createWebhookEndpoint", {"url": "HTTPS://127.0.0.1/", "events": None, "enabled": False}),
    ("createWebhookEndpoint", {}),
    ("createWebhookEndpoint", {"url": None}),
    ("createWebhookEndpoint", {"url": "ftp://127.0.0.1/"}),
    ("createWebhookEndpoint", {"url": "http:///nohost"}),
    ("createWebhookEndpoint", {"url": "http://127.0.0.1/ x"}),
    ("createWebhookEndpoint", {"url": "http://127.0.0.1/" + "x" * 2048}),
    ("createWebhookEndpoint", {"url": URL, "events": []}),
    ("createWebhookEndpoint", {"url": URL, "events": ["*", "wallet.low"]}),
    ("createWebhookEndpoint", {"url": URL, "events": ["wallet.lowish"]}),
    ("createWebhookEndpoint", {"url": URL, "events": "wallet.low"}),
    ("createWebhookEndpoint", {"url": URL, "description": "x" * 1001}),
    ("createWebhookEndpoint", {"url": URL, "description": "a\x00b"}),
    ("createWebhookEndpoint", {"url": URL, "enabled": "yes"}),
    ("createWebhookEndpoint", {"url": URL, "secret": "whsec_x"}),
    ("updateWebhookEndpoint", {}),
    ("updateWebhookEndpoint", {"events": None, "description": None, "enabled": True}),
    ("updateWebhookEndpoint", {"url": None}),
    ("updateWebhookEndpoint", {"enabled": None}),
    ("updateWebhookEndpoint", {"status": "disabled"}),
    ("rotateWebhookSecret", {}),
    ("rotateWebhookSecret", {"grace_period_s": 0}),
    ("rotateWebhookSecret", {"grace_period_s": 604800}),
    ("rotateWebhookSecret", {"grace_period_s": 604801}),
    ("rotateWebhookSecret", {"grace_period_s": -1}),
    ("rotateWebhookSecret", {"grace_period_s": None}),
    ("rotateWebhookSecret", {"grace_period_s": "60"}),
    ("rotateWebhookSecret", {"grace": 60}),
    ("retryEvent", {}),
    ("retryEvent", {"endpoint_id": None}),
    ("retryEvent", {"endpoint_id": "whe_nope"}),
    ("retryEvent", {"endpoint_id": 5}),
    ("retryEvent", {"delivery_id": "whd_x"}),
    ("resolveStripeBatch", {"outcome": "pushed"}),
    ("resolveStripeBatch", {"outcome": "resend"}),
    ("resolveStripeBatch", {}),
    ("resolveStripeBatch", {"outcome": "dropped"}),
    ("resolveStripeBatch", {"outcome": "pushed", "note": "x"}),
]


async def test_request_bodies_the_contract_takes_are_the_ones_the_server_takes(
    client: AsyncTestClient[Any],
) -> None:
    r = await client.post("/v1/webhook_endpoints", json={"url": URL}, headers=admin())
    endpoint = r.json()["id"]
    # Past validation the route answers 404 (no such event or batch) or succeeds.
    paths = {
        "createWebhookEndpoint": "/v1/webhook_endpoints",
        "updateWebhookEndpoint": f"/v1/webhook_endpoints/{endpoint}",
        "rotateWebhookSecret": f"/v1/webhook_endpoints/{endpoint}/rotate_secret",
        "retryEvent": "/v1/events/evt_nope/retry",
        "resolveStripeBatch": "/v1/stripe/batches/sbat_nope/resolve",
    }
    for op_id, body in BODIES:
        op = BY_ID[op_id]
        r = await client.request(op.method, paths[op_id], json=body, headers=admin())
        assert r.status_code != 500, r.text
        assert (r.status_code != 400) == _allowed(op, body), (op_id, body, r.status_code, r.text)


# ---------------------------------------------------------------------------- webhooks


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    ok = Receiver()
    gone = Receiver(responses=[500], default=410)  # fails once, then asks us to stop
    yield ok, gone
    ok.close()
    gone.close()


async def test_webhook_operations_answer_their_contract(
    gateway_factory: Callable[..., Gateway], receivers: tuple[Receiver, Receiver]
) -> None:
    ok, gone = receivers
    async with AsyncTestClient(app=create_app(gateway_factory(WEBHOOKS))) as c:
        api = Caller(c)
        # Endpoints.
        main = await api.call(
            "createWebhookEndpoint", body={"url": ok.url, "description": "billing"}
        )
        assert main["pending_deliveries"] == 0 and main["events"] is None
        flaky = await api.call(
            "createWebhookEndpoint",
            body={"url": gone.url, "events": ["wallet.topped_up", "wallet.low"], "enabled": True},
        )
        ep = {"endpoint_id": main["id"]}
        listed = await api.call("listWebhookEndpoints", params={"limit": 10, "enabled": "true"})
        assert [e["id"] for e in listed["data"]] == [main["id"], flaky["id"]]
        await api.call("getWebhookEndpoint", path=ep)
        await api.call(
            "updateWebhookEndpoint", path=ep, body={"description": "billing v2", "events": ["*"]}
        )
        rotated = await api.call("rotateWebhookSecret", path=ep, body={"grace_period_s": 3600})
        assert rotated["previous_secret_expires_at"] and "pending_deliveries" not in rotated
        await api.call("rotateWebhookSecret", path=ep)  # no body: the default grace period

        # An event: delivered to `main`; `flaky` answers 500, then 410 and is disabled,
        # which records a webhook_endpoint.disabled event (no customer) for `main`.
        cus = await new_customer(c, "hooked")
        r = await c.post(
            f"/v1/customers/{cus}/wallet/topup", json={"amount_usd": 5}, headers=admin()
        )
        assert r.status_code == 200, r.text

        async def disabled() -> Any:
            got = await api.call("getWebhookEndpoint", path={"endpoint_id": flaky["id"]})
            return got if got["status"] == "disabled" else None

        flaky_now = await eventually(disabled, "the 410 to disable the endpoint")
        assert flaky_now["disabled_reason"] and flaky_now["enabled"] is False

        topped = await api.call(
            "listEvents",
            params={
                "type": "wallet.topped_up",
                "customer_id": "hooked",
                "since": "2000-01-01",
                "limit": 5,
            },
        )
        [event] = topped["data"]
        evt = {"event_id": event["id"]}

        async def attempted() -> Any:
            detail = await api.call("getEvent", path=evt)
            by_ep = {d["endpoint_id"]: d for d in detail["deliveries"]}
            flaky_tries = by_ep.get(flaky["id"], {}).get("attempts", [])
            main_status = by_ep.get(main["id"], {}).get("status")
            done = len(flaky_tries) >= 2 and main_status == "delivered"
            return detail if done else None

        detail = await eventually(attempted, "both endpoints to be attempted")
        codes = [a["status_code"] for d in detail["deliveries"] for a in d["attempts"]]
        assert 500 in codes and 410 in codes and 200 in codes

        async def operator_event() -> Any:
            page = await api.call("listEvents", params={"type": "webhook_endpoint.disabled"})
            return page["data"]

        [disabled_event] = await eventually(operator_event, "the endpoint-disabled event")
        await api.call("getEvent", path={"event_id": disabled_event["id"]})
        await api.call("listEvents", params={"customer": cus, "until": "2999-01-01"})

        # Retries.
        await api.call("retryEvent", path=evt, body={"endpoint_id": main["id"]})
        again = await api.call("retryEvent", path=evt)  # every enabled subscribed endpoint
        assert {d["endpoint_id"] for d in again["deliveries"]} == {main["id"], flaky["id"]}
        deliveries = await api.call(
            "listWebhookDeliveries", params={"endpoint_id": main["id"], "limit": 50}
        )
        assert {d["event_type"] for d in deliveries["data"]} >= {
            "wallet.topped_up",
            "webhook_endpoint.disabled",
        }
        assert None in {d["customer_id"] for d in deliveries["data"]}
        mine = next(d for d in deliveries["data"] if d["event_id"] == event["id"])
        await api.call("listWebhookDeliveries", params={"status": mine["status"]})
        retried = await api.call("retryWebhookDelivery", path={"delivery_id": mine["id"]})
        assert retried["status"] == "pending" and retried["next_attempt_at"]

        # The errors the operations document.
        flaky_delivery = next(d for d in again["deliveries"] if d["endpoint_id"] == flaky["id"])
        await api.call(
            "retryWebhookDelivery",
            path={"delivery_id": flaky_delivery["id"]},
            status=409,
            code="webhook_endpoint_disabled",
        )
        await api.call(
            "retryEvent",
            path=evt,
            body={"endpoint_id": flaky["id"]},
            status=409,
            code="webhook_endpoint_disabled",
        )
        await api.call(
            "retryEvent",
            path=evt,
            body={"endpoint_id": "whe_nope"},
            status=404,
            code="webhook_endpoint_not_found",
        )
        await api.call(
            "retryWebhookDelivery",
            path={"delivery_id": "whd_nope"},
            status=404,
            code="webhook_delivery_not_found",
        )
        await api.call(
            "getEvent", path={"event_id": "evt_nope"}, status=404, code="event_not_found"
        )
        await api.call(
            "listEvents", params={"customer_id": "nobody"}, status=404, code="customer_not_found"
        )
        await api.call("listEvents", params={"type": "nope"}, status=400)
        await api.call("listWebhookDeliveries", params={"status": "lost"}, status=400)
        await api.call(
            "rotateWebhookSecret",
            path=ep,
            body={"grace_period_s": MAX_GRACE_S + 1},
            status=400,
        )
        await api.call(
            "createWebhookEndpoint",
            body={"url": "http://169.254.169.254/"},
            status=400,
            code="invalid_webhook_url",
        )

        # Re-enable, then delete.
        back = await api.call(
            "updateWebhookEndpoint", path={"endpoint_id": flaky["id"]}, body={"enabled": True}
        )
        assert back["status"] == "enabled" and back["disabled_reason"] is None
        await api.call("deleteWebhookEndpoint", path={"endpoint_id": flaky["id"]})
        await api.call(
            "getWebhookEndpoint",
            path={"endpoint_id": flaky["id"]},
            status=404,
            code="webhook_endpoint_not_found",
        )
        assert api.ok == WEBHOOK_OPS


# ---------------------------------------------------------------------------- Stripe


def stripe_config(*, create_customers: bool = False) -> str:
    return (
        PRICES
        + '\n[stripe]\nvalue = "price_cents"\nmeter_event_name = "ringside_usage"\n'
        + f"create_customers = {'true' if create_customers else 'false'}\n"
    )


@pytest.fixture
def fake(clock: MutableClock) -> Iterator[FakeStripe]:
    with FakeStripe(now=lambda: clock().timestamp()) as f:
        yield f


def stripe_gateway(
    gateway_factory: Callable[..., Gateway], fake: FakeStripe, *, create_customers: bool = False
) -> Gateway:
    gw = gateway_factory(
        stripe_config(create_customers=create_customers),
        env={"STRIPE_API_KEY": API_KEY, "RINGSIDE_STRIPE_API_BASE": fake.url},
    )
    gw.services.stripe.engine.retry = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=0.0)
    return gw


async def test_stripe_operations_answer_their_contract(
    gateway_factory: Callable[..., Gateway], fake: FakeStripe, clock: MutableClock
) -> None:
    async with AsyncTestClient(app=create_app(stripe_gateway(gateway_factory, fake))) as c:
        api = Caller(c)
        fake.add_customer("cus_good")
        good = await new_customer(c, "good", "cus_good")
        bad = await new_customer(c, "bad", "cus_typo")  # Stripe does not know it
        unmapped = await new_customer(c, "unmapped")
        clock.advance(days=-40)
        await spend(c, good)  # older than Stripe's window: unpushable
        clock.advance(days=40)
        for cid in (good, bad, unmapped):
            await spend(c, cid)

        run = await api.call("syncStripe")
        assert run["status"] == "partial"
        assert run["customers"] and run["failures"] and run["skipped"] and run["unpushable"]
        runs = await api.call("listStripeSyncRuns", params={"limit": 5})
        assert [r["id"] for r in runs["data"]] == [run["id"]]
        assert await api.call("getStripeSyncRun", path={"run_id": run["id"]}) == runs["data"][0]

        states = await api.call("listStripeCustomerStates", params={"limit": 10})
        by_id = {s["customer_id"]: s for s in states["data"]}
        assert by_id[good]["status"] == "synced" and by_id[unmapped]["status"] == "unmapped"
        state = await api.call("getStripeCustomerState", path={"customer_ref": "bad"})
        assert state["status"] == "error" and state["last_error"]["batch_id"]

        await api.call("listStripeBatches", params={"limit": 100})
        failed = await api.call(
            "listStripeBatches", params={"customer_id": "bad", "state": "failed"}
        )
        [batch] = failed["data"]
        assert batch["last_error"]["code"] == "stripe_customer_not_found"
        ref = {"batch_id": batch["id"]}
        resent = await api.call("resolveStripeBatch", path=ref, body={"outcome": "resend"})
        assert resent["state"] == "claimed" and resent["resolved_by"] == "operator"
        await api.call(
            "resolveStripeBatch",
            path=ref,
            body={"outcome": "pushed"},
            status=409,
            code="stripe_batch_not_resolvable",
        )
        again = await api.call("syncStripe")  # the resend fails the same way
        assert again["failures"][0]["batch_id"] == batch["id"]
        pushed = await api.call("resolveStripeBatch", path=ref, body={"outcome": "pushed"})
        assert pushed["state"] == "pushed" and pushed["pushed_at"]

        await api.call(
            "getStripeSyncRun",
            path={"run_id": "srun_nope"},
            status=404,
            code="stripe_sync_run_not_found",
        )
        await api.call(
            "getStripeCustomerState",
            path={"customer_ref": "nobody"},
            status=404,
            code="customer_not_found",
        )
        await api.call(
            "resolveStripeBatch",
            path={"batch_id": "sbat_nope"},
            body={"outcome": "pushed"},
            status=404,
            code="stripe_batch_not_found",
        )
        await api.call(
            "listStripeBatches",
            params={"customer_id": "nobody"},
            status=404,
            code="customer_not_found",
        )
        await api.call("listStripeBatches", params={"state": "bogus"}, status=400)
        await api.call("listStripeSyncRuns", params={"starting_after": "srun_nope"}, status=400)
        assert api.ok == STRIPE_OPS


async def test_stripe_run_with_created_customers_and_a_run_error(
    gateway_factory: Callable[..., Gateway], fake: FakeStripe
) -> None:
    # Without a Stripe key the sync is a documented 400.
    first = gateway_factory(PRICES)
    async with AsyncTestClient(app=create_app(first)) as c:
        api = Caller(c)
        await api.call("syncStripe", status=400, code="stripe_not_configured")
        later = await new_customer(c, "later")
        await spend(c, later)
    first.db.close()  # one open Database per process
    # The same database, now creating Stripe customers, against a meter Stripe lacks.
    fake.meters = {"another_meter"}
    gw = stripe_gateway(gateway_factory, fake, create_customers=True)
    async with AsyncTestClient(app=create_app(gw)) as c:
        api = Caller(c)
        run = await api.call("syncStripe")
        assert run["status"] == "failed" and run["error"]["code"] == "stripe_meter_not_found"
        assert [x["customer_id"] for x in run["created_stripe_customers"]] == [later]
        await api.call("getStripeSyncRun", path={"run_id": run["id"]})
        state = await api.call("getStripeCustomerState", path={"customer_ref": later})
        assert state["status"] in ("error", "pending")
