"""The fake Stripe behaves like the real one where Ringside depends on it, and the
engine's building blocks (units, error classification) hold their promises."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from gateway.stripe_sync.client import StripeApi, StripeFailure, classify
from gateway.stripe_sync.engine import day_end_s, identifier_for
from gateway.stripe_sync.units import MAX_EVENT_VALUE, UNITS
from tests.fakes import fake_stripe
from tests.fakes.fake_stripe import API_KEY, DROP, FakeStripe, parse_form

# The excerpt of Stripe's OpenAPI document lives beside the checkout (../shared/stripe-api).
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared/stripe-api/spec3.trimmed.json"
SPEC = Path(os.environ.get("RINGSIDE_STRIPE_SPEC", str(_BESIDE_CHECKOUT)))
NOW = 1_800_000_000.0


def post(fake: FakeStripe, path: str, body: str, **headers: str) -> Any:
    return fake.handle(
        "POST",
        path,
        {
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
            **headers,
        },
        body.encode(),
    )


def event_body(identifier: str = "id-1", value: str = "5", ts: int | None = None) -> str:
    ts = int(NOW) if ts is None else ts
    return (
        f"event_name=ringside_usage&identifier={identifier}&timestamp={ts}"
        f"&payload[stripe_customer_id]=cus_1&payload[value]={value}"
    )


@pytest.fixture
def fake() -> FakeStripe:
    clock = {"now": NOW}
    f = FakeStripe(now=lambda: clock["now"], customers=["cus_1"])
    f.clock = clock  # type: ignore[attr-defined]
    return f


# ---------------------------------------------------------------------------- the excerpt


@pytest.mark.skipif(not SPEC.exists(), reason="Stripe OpenAPI excerpt not available")
def test_fake_constraints_match_the_openapi_excerpt() -> None:
    doc = json.loads(SPEC.read_text())
    form = "application/x-www-form-urlencoded"
    meter = doc["paths"]["/v1/billing/meter_events"]["post"]["requestBody"]["content"][form]
    schema = meter["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == fake_stripe.METER_EVENT_PARAMS
    assert tuple(schema["required"]) == fake_stripe.METER_EVENT_REQUIRED
    for name, limit in fake_stripe.METER_EVENT_MAX_LENGTH.items():
        assert schema["properties"][name]["maxLength"] == limit
    assert schema["properties"]["timestamp"]["type"] == "integer"
    assert schema["properties"]["payload"]["additionalProperties"]["type"] == "string"
    assert meter["encoding"]["payload"] == {"explode": True, "style": "deepObject"}
    customers = doc["paths"]["/v1/customers"]["post"]["requestBody"]["content"][form]
    assert set(customers["schema"]["properties"]) == fake_stripe.CUSTOMER_PARAMS
    assert "name" in customers["schema"]["properties"]
    assert "metadata" in customers["schema"]["properties"]


# ---------------------------------------------------------------------------- the fake


def test_form_parsing_like_stripe() -> None:
    assert parse_form(b"a=1&payload[k]=v&payload[x]=") == {"a": "1", "payload": {"k": "v", "x": ""}}
    with pytest.raises(fake_stripe.FormError):
        parse_form(b"a=1&a=2")


def test_meter_event_is_validated_and_recorded(fake: FakeStripe) -> None:
    status, _, body = post(fake, "/v1/billing/meter_events", event_body())
    assert status == 200 and body["object"] == "billing.meter_event"
    assert fake.totals() == {"cus_1": 5}
    status, _, body = post(fake, "/v1/billing/meter_events", event_body("id-2") + "&bogus=1")
    assert status == 400 and body["error"]["code"] == "parameter_unknown"
    status, _, body = post(fake, "/v1/billing/meter_events", "payload[value]=1")
    assert status == 400 and body["error"]["param"] == "event_name"
    status, _, body = post(fake, "/v1/billing/meter_events", event_body("x" * 101))
    assert status == 400 and body["error"]["param"] == "identifier"
    status, _, body = post(fake, "/v1/billing/meter_events", event_body("id-3", "1.5"))
    assert status == 400 and body["error"]["param"] == "payload[value]"
    status, _, _ = post(fake, "/v1/billing/meter_events", event_body("id-4", "1" * 16))
    assert status == 400
    status, _, body = fake.handle("POST", "/v1/billing/meter_events", {}, b"")
    assert status == 401


def test_duplicate_identifiers_refused_for_24_hours_like_stripe(fake: FakeStripe) -> None:
    assert post(fake, "/v1/billing/meter_events", event_body())[0] == 200
    status, headers, body = post(fake, "/v1/billing/meter_events", event_body())
    assert status == 400
    assert body["error"]["message"] == "An event already exists with identifier id-1."
    assert body["error"]["type"] == "invalid_request_error"
    assert headers["Stripe-Should-Retry"] == "false"
    fake.clock["now"] += 25 * 3600  # type: ignore[attr-defined]
    # Past Stripe's window the same identifier is a new event: why Ringside's own
    # record, not Stripe, decides what was pushed.
    status, _, _ = post(fake, "/v1/billing/meter_events", event_body(ts=int(NOW) + 25 * 3600))
    assert status == 200
    assert fake.totals() == {"cus_1": 10}


def test_timestamp_window(fake: FakeStripe) -> None:
    too_old = int(NOW) - 35 * 86400 - 1
    assert post(fake, "/v1/billing/meter_events", event_body("a", ts=too_old))[0] == 400
    assert post(fake, "/v1/billing/meter_events", event_body("b", ts=int(NOW) + 301))[0] == 400
    assert post(fake, "/v1/billing/meter_events", event_body("c", ts=int(NOW) + 299))[0] == 200


def test_faults_on_demand(fake: FakeStripe) -> None:
    fake.fail_next(1, 503)
    fake.drop_next(1)
    fake.drop_next(1, after_record=True)
    assert post(fake, "/v1/billing/meter_events", event_body())[0] == 503
    assert post(fake, "/v1/billing/meter_events", event_body()) is DROP
    assert fake.events == []
    assert post(fake, "/v1/billing/meter_events", event_body()) is DROP
    assert len(fake.events) == 1
    assert [a.status for a in fake.meter_attempts()] == [503, None, None]


def test_customers_and_idempotency(fake: FakeStripe) -> None:
    status, _, first = post(
        fake, "/v1/customers", "name=Acme&metadata[k]=v", **{"Idempotency-Key": "k1"}
    )
    assert status == 200 and first["metadata"] == {"k": "v"}
    status, headers, again = post(fake, "/v1/customers", "name=Acme", **{"Idempotency-Key": "k1"})
    assert again["id"] == first["id"] and headers.get("idempotent-replayed") == "true"
    status, _, body = fake.handle(
        "GET", "/v1/customers/cus_nope", {"Authorization": f"Bearer {API_KEY}"}, b""
    )
    assert status == 404 and body["error"]["code"] == "resource_missing"


async def test_the_real_sdk_against_the_fake_over_loopback() -> None:
    with FakeStripe(customers=["cus_1"]) as fake:
        api = StripeApi(API_KEY, fake.url, timeout_s=5)
        now = int(fake.now())
        event = await api.create_meter_event(
            event_name="ringside_usage",
            stripe_customer_id="cus_1",
            value=42,
            identifier="ringside-test-1",
            timestamp=now,
        )
        assert event["payload"] == {"stripe_customer_id": "cus_1", "value": "42"}
        with pytest.raises(StripeFailure) as dup:
            await api.create_meter_event(
                event_name="ringside_usage",
                stripe_customer_id="cus_1",
                value=42,
                identifier="ringside-test-1",
                timestamp=now,
            )
        assert dup.value.kind == "duplicate"
        fake.drop_next(1)
        with pytest.raises(StripeFailure) as dropped:
            await api.create_meter_event(
                event_name="ringside_usage",
                stripe_customer_id="cus_1",
                value=1,
                identifier="ringside-test-2",
                timestamp=now,
            )
        assert dropped.value.kind == "transient" and dropped.value.maybe_received
        cid = await api.create_customer(
            name="Acme", email=None, metadata={"ringside_customer_id": "cus_x"}, idempotency_key="k"
        )
        assert fake.customers[cid]["metadata"] == {"ringside_customer_id": "cus_x"}
        assert fake.totals() == {"cus_1": 42}
        await api.aclose()


# ---------------------------------------------------------------------------- building blocks


def _stripe_error(status: int, message: str, code: str | None = None) -> stripe.StripeError:
    body = {"error": {"type": "invalid_request_error", "message": message, "code": code}}
    if status == 429:
        return stripe.RateLimitError(message, json.dumps(body), status, body, {})
    if status >= 500:
        return stripe.APIError(message, json.dumps(body), status, body, {})
    if status == 401:
        return stripe.AuthenticationError(message, json.dumps(body), status, body, {})
    return stripe.InvalidRequestError(message, None, code, json.dumps(body), status, body, {})


@pytest.mark.parametrize(
    ("status", "message", "code", "kind", "ours"),
    [
        (400, "An event already exists with identifier x.", None, "duplicate", None),
        (429, "Too many requests", "rate_limit", "transient", "stripe_rate_limited"),
        (500, "boom", None, "transient", "stripe_unavailable"),
        (503, "boom", None, "transient", "stripe_unavailable"),
        (401, "Invalid API Key", None, "global", "stripe_authentication_failed"),
        (
            400,
            "No active meter found for event_name 'x'.",
            None,
            "global",
            "stripe_meter_not_found",
        ),
        (
            400,
            "No such customer: 'cus_x'",
            "resource_missing",
            "permanent",
            "stripe_customer_not_found",
        ),
        (400, "Invalid integer", "parameter_invalid_integer", "permanent", None),
    ],
)
def test_error_classification(
    status: int, message: str, code: str | None, kind: str, ours: str | None
) -> None:
    failure = classify(_stripe_error(status, message, code))
    assert failure.kind == kind
    if ours:
        assert failure.code == ours
    assert failure.maybe_received is (status >= 500)


def test_connection_errors_know_whether_the_request_left() -> None:
    refused = stripe.APIConnectionError("x")
    refused.__cause__ = httpx.ConnectError("refused")
    assert classify(refused).maybe_received is False
    lost = stripe.APIConnectionError("x")
    lost.__cause__ = httpx.ReadTimeout("slow")
    assert classify(lost).maybe_received is True


@given(
    unit=st.sampled_from(sorted(UNITS)),
    amounts=st.lists(st.integers(min_value=0, max_value=10**13), max_size=30),
)
def test_carry_never_loses_or_invents_usage(unit: str, amounts: list[int]) -> None:
    u = UNITS[unit]
    carry = pushed = 0
    for amount in amounts:
        value, carry = u.split(carry + amount)
        assert 0 <= value <= MAX_EVENT_VALUE
        assert 0 <= carry < u.divisor or value == MAX_EVENT_VALUE
        pushed += value
    assert pushed * u.divisor + carry == sum(amounts)


def test_identifiers_and_day_boundaries() -> None:
    ident = identifier_for("cus_0mwzhyhj31rjs6rod2jw5alhb", "2026-01-31", 12)
    assert len(ident) <= 100 and ident == "ringside-cus_0mwzhyhj31rjs6rod2jw5alhb-2026-01-31-12"
    assert day_end_s("2026-01-31") == 1769903999  # 2026-01-31T23:59:59Z
