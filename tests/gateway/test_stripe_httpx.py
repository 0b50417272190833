"""The Stripe sync with the real `stripe` SDK against pytest-httpx responses (no sockets).

Canned responses pin the exact requests the SDK sends (form-encoded meter events); the
callback variant runs the fake Stripe's logic in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from litestar.testing import AsyncTestClient
from pytest_httpx import HTTPXMock

from gateway.app import create_app
from gateway.stripe_sync.engine import RetryPolicy
from gateway.wiring import Gateway
from tests.conftest import MutableClock, admin
from tests.fakes.fake_stripe import API_KEY, FakeStripe
from tests.gateway.test_stripe_sync import (
    new_customer,
    service,
    spend,
    states,
    stripe_config,
    sync,
    usage_base,
)

BASE = "https://stripe.test"
METER_EVENTS = f"{BASE}/v1/billing/meter_events"
only_stripe = pytest.mark.httpx_mock(should_mock=lambda request: request.url.host == "stripe.test")


@pytest.fixture
async def app(gateway_factory: Callable[..., Gateway]) -> AsyncIterator[AsyncTestClient[Any]]:
    gw = gateway_factory(
        stripe_config(), env={"STRIPE_API_KEY": API_KEY, "RINGSIDE_STRIPE_API_BASE": BASE}
    )
    service(gw).engine.retry = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    async with AsyncTestClient(app=create_app(gw)) as client:
        yield client


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True, strict_parsing=True))


def meter_event(params: dict[str, str]) -> dict[str, Any]:
    return {
        "object": "billing.meter_event",
        "created": 1,
        "event_name": params["event_name"],
        "identifier": params["identifier"],
        "livemode": False,
        "payload": {
            "stripe_customer_id": params["payload[stripe_customer_id]"],
            "value": params["payload[value]"],
        },
        "timestamp": int(params["timestamp"]),
    }


@only_stripe
async def test_request_shape_and_retry_with_canned_responses(
    app: Any, httpx_mock: HTTPXMock
) -> None:
    cid = await new_customer(app, "alice", "cus_A")
    await spend(app, cid, 1800, calls=2)
    expected = await usage_base(app, cid) // 10_000_000
    httpx_mock.add_response(
        method="POST",
        url=METER_EVENTS,
        status_code=500,
        json={"error": {"type": "api_error", "message": "An unknown error occurred."}},
    )
    httpx_mock.add_callback(
        lambda request: httpx.Response(200, json=meter_event(form(request))),
        method="POST",
        url=METER_EVENTS,
    )

    result = await sync(app)

    assert result["status"] == "succeeded" and result["total_value"] == expected
    first, second = httpx_mock.get_requests(url=METER_EVENTS)
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    sent = form(first)
    # Exactly the documented parameters, with the payload flattened like Stripe expects.
    assert set(sent) == {
        "event_name",
        "identifier",
        "timestamp",
        "payload[stripe_customer_id]",
        "payload[value]",
    }
    assert sent["event_name"] == "ringside_usage"
    assert sent["payload[stripe_customer_id]"] == "cus_A"
    assert sent["payload[value]"] == str(expected)
    assert sent["identifier"].startswith(f"ringside-{cid}-") and len(sent["identifier"]) <= 100
    assert sent["timestamp"].isdigit()
    # The retry is the same event; only the SDK's per-request idempotency key differs.
    assert form(second) == sent
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]


@only_stripe
async def test_duplicate_answer_counts_as_pushed(app: Any, httpx_mock: HTTPXMock) -> None:
    cid = await new_customer(app, "alice", "cus_A")
    await spend(app, cid, 1800)

    def already_exists(request: httpx.Request) -> httpx.Response:
        identifier = form(request)["identifier"]
        return httpx.Response(
            400,
            headers={"Stripe-Should-Retry": "false"},
            json={
                "error": {
                    "type": "invalid_request_error",
                    "message": f"An event already exists with identifier {identifier}.",
                }
            },
        )

    httpx_mock.add_callback(already_exists, method="POST", url=METER_EVENTS)
    result = await sync(app)
    assert result["status"] == "succeeded" and result["events"] == 1
    assert len(httpx_mock.get_requests()) == 1  # not retried
    batches = (await app.get("/v1/stripe/batches", headers=admin())).json()["data"]
    assert batches[0]["state"] == "pushed" and batches[0]["duplicate"] is True
    assert (await states(app))[cid]["status"] == "synced"


@only_stripe
async def test_authentication_failure_stops_the_run(app: Any, httpx_mock: HTTPXMock) -> None:
    for name in ("a", "b"):
        cid = await new_customer(app, name, f"cus_{name}")
        await spend(app, cid, 1800)
    httpx_mock.add_response(
        method="POST",
        url=METER_EVENTS,
        status_code=401,
        json={
            "error": {
                "type": "invalid_request_error",
                "message": "Invalid API Key provided: sk_test_***",
            }
        },
    )
    result = await sync(app)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "stripe_authentication_failed"
    assert len(httpx_mock.get_requests()) == 1


@only_stripe
async def test_connection_refused_is_retried(app: Any, httpx_mock: HTTPXMock) -> None:
    cid = await new_customer(app, "alice", "cus_A")
    await spend(app, cid, 1800)
    httpx_mock.add_exception(httpx.ConnectError("refused"), method="POST", url=METER_EVENTS)
    httpx_mock.add_callback(
        lambda request: httpx.Response(200, json=meter_event(form(request))),
        method="POST",
        url=METER_EVENTS,
    )
    result = await sync(app)
    assert result["status"] == "succeeded" and result["events"] == 1
    batch = (await app.get("/v1/stripe/batches", headers=admin())).json()["data"][0]
    assert batch["attempts"] == 2 and batch["duplicate"] is False


@only_stripe
async def test_totals_match_usage_through_the_fake_as_a_callback(
    app: Any, httpx_mock: HTTPXMock, clock: MutableClock
) -> None:
    fake = FakeStripe(now=lambda: clock().timestamp(), customers=["cus_A", "cus_B"])
    httpx_mock.add_callback(fake.httpx_callback, is_reusable=True, is_optional=True)
    a = await new_customer(app, "alice", "cus_A")
    b = await new_customer(app, "bob", "cus_B")
    await spend(app, a, 700, calls=3)
    await spend(app, b, 2300, calls=2)
    fake.fail_next(1, 502)
    fake.drop_next(1, after_record=True)
    first = await sync(app)
    assert first["status"] == "succeeded", first
    assert fake.totals() == {
        "cus_A": await usage_base(app, a) // 10_000_000,
        "cus_B": await usage_base(app, b) // 10_000_000,
    }
    assert first["total_value"] == sum(fake.totals().values())
    assert (await sync(app))["events"] == 0
    assert len(fake.events) == 2
