"""Plans, rate limits and model allow-lists through the real app (SQLite; real
concurrency, two instances on one PostgreSQL and a killed instance are in
tests/e2e/test_limits_e2e.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.db.models import Event, Hold, RateWindow, RequestLog
from tests.conftest import MutableClock, admin, unique_id

PRICES = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 1000

[prices."mock/mock-big"]
input_usd_per_mtok = 10
output_usd_per_mtok = 20
max_output_tokens = 1000
"""


@pytest.fixture
async def app(gateway_factory: Any) -> Any:
    gw = gateway_factory(PRICES + "\n[billing]\nhold_ttl_s = 2\n")
    async with AsyncTestClient(app=create_app(gw)) as c:
        c.gw = gw  # type: ignore[attr-defined]
        yield c


async def plan(c: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Plan")
    r = await c.post("/v1/plans", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


async def customer(c: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("external_id", unique_id("p"))
    body.setdefault("name", "Planned")
    r = await c.post("/v1/customers", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


def call(tokens: int = 10, model: str = "fc:mock/mock-fast", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"hi [mock:tokens={tokens}]"}],
        **extra,
    }


def calls_logged(customer_id: str) -> list[RequestLog]:
    return list(RequestLog.select().where(RequestLog.customer_id == customer_id))


# ---------------------------------------------------------------- plans


async def test_plan_crud_and_customer_counts(app: Any) -> None:
    p = await plan(
        app,
        name="Free",
        external_id=unique_id("free"),
        monthly_budget_usd=5,
        allowed_models=["mock/mock-fast"],
        limits={"requests_per_minute": 20},
    )
    assert p["id"].startswith("plan_") and p["object"] == "plan"
    assert p["limits"] == {
        "requests_per_minute": 20,
        "tokens_per_minute": None,
        "max_concurrent": None,
    }
    assert p["monthly_budget_usd"] == 5 and p["customers"] == 0
    await customer(app, plan=p["external_id"])
    got = (await app.get(f"/v1/plans/{p['id']}", headers=admin())).json()
    assert got["customers"] == 1
    by_ext = (await app.get(f"/v1/plans/{p['external_id']}", headers=admin())).json()
    assert by_ext["id"] == p["id"]
    listed = (await app.get("/v1/plans", headers=admin())).json()
    assert listed["object"] == "list" and [x["id"] for x in listed["data"]] == [p["id"]]

    # PATCH merges limits; null removes one.
    r = await app.patch(
        f"/v1/plans/{p['id']}",
        json={"limits": {"tokens_per_minute": 1000, "requests_per_minute": None}},
        headers=admin(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == {
        "requests_per_minute": None,
        "tokens_per_minute": 1000,
        "max_concurrent": None,
    }

    # In use: 409 plan_in_use; unused: deleted.
    r = await app.delete(f"/v1/plans/{p['id']}", headers=admin())
    assert r.status_code == 409 and r.json()["error"]["code"] == "plan_in_use"
    other = await plan(app, name="Unused")
    r = await app.delete(f"/v1/plans/{other['id']}", headers=admin())
    assert r.status_code == 200 and r.json()["deleted"] is True
    r = await app.get(f"/v1/plans/{other['id']}", headers=admin())
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": "x", "limits": {"requests_per_minute": 0}}, "limits.requests_per_minute"),
        ({"name": "x", "limits": {"rpm": 5}}, "limits.rpm"),
        ({"name": "x", "limits": {"max_concurrent": True}}, "limits.max_concurrent"),
        ({"name": "x", "limits": [1]}, "limits"),
        ({"name": "x", "allowed_models": "openai/*"}, "allowed_models"),
        ({"name": "x", "allowed_models": ["no slash"]}, "allowed_models[0]"),
        ({"name": "x", "monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"name": "x", "markup": "abc"}, "markup"),
        ({"name": "x", "bogus": 1}, "bogus"),
    ],
)
async def test_plan_validation_is_a_400_naming_the_field(
    app: Any, body: dict[str, Any], param: str
) -> None:
    r = await app.post("/v1/plans", json=body, headers=admin())
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_customer_unknown_plan_is_a_400(app: Any) -> None:
    r = await app.post(
        "/v1/customers",
        json={"external_id": unique_id("c"), "name": "x", "plan": "no-such-plan"},
        headers=admin(),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "plan"


async def test_override_rules_field_by_field_and_limit_by_limit(app: Any) -> None:
    p = await plan(
        app,
        monthly_budget_usd=10,
        prepaid=True,
        low_balance_threshold_usd=2,
        markup=1.5,
        allowed_models=["mock/*"],
        limits={"requests_per_minute": 20, "tokens_per_minute": 5000, "max_concurrent": 3},
    )
    inherited = await customer(app, plan=p["id"])
    eff = inherited["effective"]
    assert inherited["plan"] == p["id"]
    assert inherited["monthly_budget_usd"] is None and inherited["prepaid"] is None
    assert eff["monthly_budget_usd"] == 10 and eff["prepaid"] is True
    assert eff["low_balance_threshold_usd"] == 2 and eff["markup"] == 1.5
    assert eff["allowed_models"] == ["mock/*"]
    assert eff["limits"] == {
        "requests_per_minute": 20,
        "tokens_per_minute": 5000,
        "max_concurrent": 3,
    }
    assert set(eff["sources"].values()) == {"plan"}

    own = await customer(
        app,
        plan=p["id"],
        monthly_budget_usd=1,
        prepaid=False,
        low_balance_threshold_usd=0.5,
        markup=2,
        allowed_models=["mock/mock-fast"],
        limits={"requests_per_minute": 7},
    )
    eff = own["effective"]
    assert eff["monthly_budget_usd"] == 1 and eff["prepaid"] is False
    assert eff["low_balance_threshold_usd"] == 0.5 and eff["markup"] == 2
    assert eff["allowed_models"] == ["mock/mock-fast"]
    # The customer's own requests_per_minute keeps the plan's other limits.
    assert eff["limits"] == {
        "requests_per_minute": 7,
        "tokens_per_minute": 5000,
        "max_concurrent": 3,
    }
    assert eff["sources"]["limits.requests_per_minute"] == "customer"
    assert eff["sources"]["limits.tokens_per_minute"] == "plan"
    assert eff["sources"]["monthly_budget_usd"] == "customer"

    # A plan change applies at once; null on the customer falls back to the plan.
    await app.patch(f"/v1/plans/{p['id']}", json={"monthly_budget_usd": 20}, headers=admin())
    r = await app.patch(
        f"/v1/customers/{own['id']}", json={"monthly_budget_usd": None}, headers=admin()
    )
    assert r.json()["effective"]["monthly_budget_usd"] == 20
    got = (await app.get(f"/v1/customers/{inherited['id']}", headers=admin())).json()
    assert got["effective"]["monthly_budget_usd"] == 20

    # Detaching the plan: defaults again.
    r = await app.patch(f"/v1/customers/{inherited['id']}", json={"plan": None}, headers=admin())
    eff = r.json()["effective"]
    assert r.json()["plan"] is None
    assert eff["monthly_budget_usd"] is None and eff["prepaid"] is False
    assert eff["allowed_models"] is None
    assert eff["limits"] == {
        "requests_per_minute": None,
        "tokens_per_minute": None,
        "max_concurrent": None,
    }
    assert set(eff["sources"].values()) == {"default"}


async def test_plan_budget_is_enforced_for_its_customers(app: Any) -> None:
    p = await plan(app, monthly_budget_usd=0.0001)  # 100,000 nanos
    cus = await customer(app, plan=p["id"])
    h = admin({"FC-Customer": cus["id"]})
    statuses = []
    for _ in range(30):
        r = await app.post("/v1/chat/completions", json=call(10, max_tokens=10), headers=h)
        statuses.append(r.status_code)
    assert 402 in statuses and statuses[0] == 200


async def test_plan_prepaid_needs_a_wallet(app: Any) -> None:
    p = await plan(app, prepaid=True)
    cus = await customer(app, plan=p["id"])
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(), headers=h)
    assert r.status_code == 402 and r.json()["error"]["code"] == "customer_wallet_empty"
    r = await app.post(
        f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 1}, headers=admin()
    )
    assert r.status_code == 200
    r = await app.post("/v1/chat/completions", json=call(), headers=h)
    assert r.status_code == 200 and "FC-Wallet-Balance-USD" in r.headers


async def test_plan_changed_event_is_recorded(app: Any) -> None:
    p = await plan(app, name="Evented")
    await app.patch(f"/v1/plans/{p['id']}", json={"name": "Renamed"}, headers=admin())
    events = list(Event.select().where(Event.type == "plan.changed").order_by(Event.created_ms))
    assert [e.data["action"] for e in events] == ["created", "updated"]
    assert events[-1].data["plan"]["name"] == "Renamed"


# ---------------------------------------------------------------- allow-lists


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/embeddings"])
async def test_model_outside_the_allow_list_is_403_never_forwarded(app: Any, route: str) -> None:
    p = await plan(app, name="Cheap", allowed_models=["mock/mock-fast"])
    cus = await customer(app, plan=p["id"], monthly_budget_usd=1)
    h = admin({"FC-Customer": cus["id"]})
    body: dict[str, Any] = (
        call(model="fc:mock/mock-big")
        if route.endswith("completions")
        else {"model": "fc:mock/mock-big", "input": "hello"}
    )
    r = await app.post(route, json=body, headers=h)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "model_not_allowed"
    assert err["model"] == "mock/mock-big" and err["plan"] == p["id"]
    assert "Cheap" in err["message"]
    rows = calls_logged(cus["id"])
    assert [(x.status, x.http_status, x.cost_nanos, x.price_nanos) for x in rows] == [
        ("refused", 403, 0, 0)
    ]
    assert Hold.select().where(Hold.customer_id == cus["id"]).count() == 0
    ok = dict(body, model="fc:mock/mock-fast")
    r = await app.post(route, json=ok, headers=h)
    assert r.status_code == 200, r.text


async def test_allow_list_holds_for_anthropic_messages(gateway_factory: Any) -> None:
    gw = gateway_factory(
        '[providers.anthropic]\nkind = "anthropic"\nbase_url = "http://127.0.0.1:9"\n'
        'api_key_env = "TEST_ANTHROPIC_KEY"\n',
        env={"TEST_ANTHROPIC_KEY": "x"},
    )
    async with AsyncTestClient(app=create_app(gw)) as c:
        p = await plan(c, allowed_models=["openai/*"])
        cus = await customer(c, plan=p["id"])
        r = await c.post(
            "/v1/messages",
            json={
                "model": "claude-3-5-haiku-latest",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers=admin({"FC-Customer": cus["id"]}),
        )
        # Refused before any upstream connection (the base_url is unreachable).
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "model_not_allowed"


async def test_models_list_shows_only_what_the_customer_may_use(app: Any) -> None:
    every = (await app.get("/v1/models", headers=admin())).json()["data"]
    assert {"fc:mock/mock-fast", "fc:mock/mock-big"} <= {m["id"] for m in every}
    p = await plan(app, allowed_models=["mock/mock-f*"])
    cus = await customer(app, plan=p["id"])
    mine = (await app.get("/v1/models", headers=admin({"FC-Customer": cus["id"]}))).json()
    assert {m["id"] for m in mine["data"]} == {
        m["id"] for m in every if m["id"].startswith("fc:mock/mock-f")
    }
    r = await app.get("/v1/models", headers=admin({"FC-Customer": "nobody-here"}))
    assert r.status_code == 404


# ---------------------------------------------------------------- rate limits


async def test_requests_per_minute_admits_exactly_the_limit_of_60_concurrent(app: Any) -> None:
    cus = await customer(app, limits={"requests_per_minute": 20})
    h = admin({"FC-Customer": cus["id"]})
    results = await asyncio.gather(
        *(app.post("/v1/chat/completions", json=call(5), headers=h) for _ in range(60))
    )
    codes = [r.status_code for r in results]
    assert codes.count(200) == 20 and codes.count(429) == 40
    refused = next(r for r in results if r.status_code == 429)
    err = refused.json()["error"]
    assert err["code"] == "customer_rate_limited" and err["type"] == "rate_limit_error"
    assert err["limit"] == "requests_per_minute" and err["limit_value"] == 20
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "20"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # Refused calls: logged as refused, never charged.
    rows = calls_logged(cus["id"])
    assert sum(1 for x in rows if x.status == "ok") == 20
    assert all(x.cost_nanos == 0 for x in rows if x.http_status == 429)


async def test_window_slides_with_the_clock(app: Any, clock: MutableClock) -> None:
    cus = await customer(app, limits={"requests_per_minute": 2})
    h = admin({"FC-Customer": cus["id"]})
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200
    clock.advance(seconds=30)
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200
    r = await app.post("/v1/chat/completions", json=call(), headers=h)
    assert r.status_code == 429
    # The first call leaves the window 61 s after its second began (never early).
    assert 30 <= int(r.headers["retry-after"]) <= 32
    clock.advance(seconds=29)
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 429
    clock.advance(seconds=3)
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200


async def test_success_answers_carry_openai_rate_limit_headers(app: Any) -> None:
    cus = await customer(app, limits={"requests_per_minute": 10, "tokens_per_minute": 100_000})
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(5, max_tokens=50), headers=h)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit-requests"] == "10"
    assert r.headers["x-ratelimit-remaining-requests"] == "9"
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    assert r.headers["x-ratelimit-limit-tokens"] == "100000"
    remaining = int(r.headers["x-ratelimit-remaining-tokens"])
    assert 100_000 - 50 - 200 < remaining < 100_000 - 50
    # Without a limit, no headers.
    plain = await customer(app)
    r = await app.post(
        "/v1/chat/completions", json=call(), headers=admin({"FC-Customer": plain["id"]})
    )
    assert "x-ratelimit-limit-requests" not in r.headers


async def test_tokens_per_minute_counts_the_bound_and_trues_up(app: Any) -> None:
    cus = await customer(app, limits={"tokens_per_minute": 1000})
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(10, max_tokens=400), headers=h)
    assert r.status_code == 200
    # Trued up at settlement: what is counted now is what the call really used.
    used = r.json()["usage"]["prompt_tokens"] + r.json()["usage"]["completion_tokens"]
    row = RateWindow.get_by_id(cus["id"])
    assert sum(b[1] for b in json.loads(row.tokens)) == used
    # A call whose bound does not fit what is left is refused on tokens.
    r = await app.post("/v1/chat/completions", json=call(10, max_tokens=990), headers=h)
    assert r.status_code == 429
    assert r.json()["error"]["limit"] == "tokens_per_minute"
    assert r.headers["x-ratelimit-limit-tokens"] == "1000"


async def test_tokens_per_minute_caps_output_when_the_client_gave_none(app: Any) -> None:
    cus = await customer(app, limits={"tokens_per_minute": 300})
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(1000), headers=h)
    assert r.status_code == 200, r.text
    # The model may write 1000 tokens; the limit leaves less, and max_tokens was injected.
    assert r.json()["usage"]["completion_tokens"] < 300


async def test_60_concurrent_against_tokens_per_minute(app: Any) -> None:
    cus = await customer(app, limits={"tokens_per_minute": 2000})
    h = admin({"FC-Customer": cus["id"]})
    # Each call is bounded at its input bound plus max_tokens=90: at most 2000 in a minute.
    results = await asyncio.gather(
        *(
            app.post("/v1/chat/completions", json=call(90, max_tokens=90), headers=h)
            for _ in range(60)
        )
    )
    ok = [r for r in results if r.status_code == 200]
    assert ok and len(ok) < 60
    assert all(r.status_code in (200, 429) for r in results)
    admitted = sum(
        r.json()["usage"]["prompt_tokens"] + r.json()["usage"]["completion_tokens"] for r in ok
    )
    assert admitted <= 2000


def estimate(gw: Any) -> Any:
    from gateway.ledger import CallEstimate

    return CallEstimate(
        provider="mock",
        model="mock-fast",
        endpoint="chat",
        stream=False,
        rates=gw.prices.rates("mock", "mock-fast"),
        input_tokens_bound=10,
        requested_output_tokens=10,
    )


async def test_max_concurrent_counts_calls_in_flight(app: Any) -> None:
    """(Concurrent slow streams against a real process: tests/e2e/test_limits_e2e.py.)"""
    from gateway.ledger import Outcome

    cus = await customer(app, limits={"max_concurrent": 5})
    h = admin({"FC-Customer": cus["id"]})
    in_flight = [await app.gw.ledger.reserve(cus["id"], estimate(app.gw)) for _ in range(5)]
    r = await app.post("/v1/chat/completions", json=call(), headers=h)
    assert r.status_code == 429 and r.json()["error"]["limit"] == "max_concurrent"
    assert r.json()["error"]["limit_value"] == 5
    await app.gw.ledger.settle(in_flight[0], Outcome("ok", 200, None))
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200
    for reservation in in_flight[1:]:
        await app.gw.ledger.settle(reservation, Outcome("ok", 200, None))
    assert RateWindow.get_by_id(cus["id"]).in_flight == 0


async def test_concurrency_slot_released_on_upstream_error(app: Any) -> None:
    cus = await customer(app, limits={"max_concurrent": 1})
    h = admin({"FC-Customer": cus["id"]})
    bad = call()
    bad["messages"][0]["content"] += " [mock:error=500]"
    r = await app.post("/v1/chat/completions", json=bad, headers=h)
    assert r.status_code >= 500
    assert r.headers.get("x-ratelimit-limit-requests") is None  # no request limit set
    assert RateWindow.get_by_id(cus["id"]).in_flight == 0
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200


async def test_lapsed_slot_expires_like_a_hold(app: Any, clock: MutableClock) -> None:
    """An instance that dies mid-call never settles: the sweep gives the slot back."""
    cus = await customer(app, limits={"max_concurrent": 1})
    gw = app.gw
    reservation = await gw.ledger.reserve(cus["id"], estimate(gw))  # then "the instance dies"
    assert reservation.slots == (cus["id"],)
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(), headers=h)
    assert r.status_code == 429 and r.json()["error"]["limit"] == "max_concurrent"
    clock.advance(seconds=5)  # past the 2 s hold TTL
    assert await gw.ledger.sweep_expired_holds() == 1
    assert RateWindow.get_by_id(cus["id"]).in_flight == 0
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200


async def test_refused_for_money_counts_but_holds_no_slot(app: Any) -> None:
    cus = await customer(app, prepaid=True, limits={"max_concurrent": 1, "requests_per_minute": 5})
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(), headers=h)
    assert r.status_code == 402
    assert r.headers["x-ratelimit-remaining-requests"] == "4"
    assert RateWindow.get_by_id(cus["id"]).in_flight == 0


async def test_rate_limited_event_at_most_once_a_minute_per_limit(
    app: Any, clock: MutableClock
) -> None:
    cus = await customer(app, limits={"requests_per_minute": 1})
    h = admin({"FC-Customer": cus["id"]})
    for _ in range(5):
        await app.post("/v1/chat/completions", json=call(), headers=h)

    def events() -> list[Event]:
        return list(
            Event.select().where(
                Event.type == "customer.rate_limited", Event.customer_id == cus["id"]
            )
        )

    assert len(events()) == 1
    data = events()[0].data
    assert data["limit"] == "requests_per_minute" and data["limit_value"] == 1
    assert data["customer"]["id"] == cus["id"]
    clock.advance(seconds=61)
    for _ in range(3):
        await app.post("/v1/chat/completions", json=call(), headers=h)
    assert len(events()) == 2


async def test_key_limits(app: Any) -> None:
    r = await app.post(
        "/v1/keys", json={"name": "limited", "limits": {"requests_per_minute": 3}}, headers=admin()
    )
    assert r.status_code == 201, r.text
    assert r.json()["limits"]["requests_per_minute"] == 3
    key = r.json()["key"]
    cus = await customer(app, limits={"requests_per_minute": 100})
    h = {"Authorization": f"Bearer {key}", "FC-Customer": cus["id"]}
    codes = []
    last = None
    for _ in range(5):
        last = await app.post("/v1/chat/completions", json=call(), headers=h)
        codes.append(last.status_code)
    assert codes == [200, 200, 200, 429, 429]
    assert last is not None
    assert last.json()["error"]["code"] == "key_rate_limited"
    # With both limits, the headers report the one with less remaining (the key's).
    assert last.headers["x-ratelimit-limit-requests"] == "3"


async def test_plan_limits_apply_to_every_customer_on_it_at_once(app: Any) -> None:
    p = await plan(app, limits={"requests_per_minute": 100})
    a = await customer(app, plan=p["id"])
    h = admin({"FC-Customer": a["id"]})
    for _ in range(3):
        assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200
    await app.patch(
        f"/v1/plans/{p['id']}", json={"limits": {"requests_per_minute": 3}}, headers=admin()
    )
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 429


async def test_suspended_comes_before_allow_list_and_limits(app: Any) -> None:
    p = await plan(app, allowed_models=["mock/mock-fast"], limits={"requests_per_minute": 1})
    cus = await customer(app, plan=p["id"])
    await app.patch(f"/v1/customers/{cus['id']}", json={"status": "suspended"}, headers=admin())
    r = await app.post(
        "/v1/chat/completions",
        json=call(model="fc:mock/mock-big"),
        headers=admin({"FC-Customer": cus["id"]}),
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "customer_suspended"
    # The allow-list comes before rate limits: a refused model counts nothing.
    await app.patch(f"/v1/customers/{cus['id']}", json={"status": "active"}, headers=admin())
    h = admin({"FC-Customer": cus["id"]})
    r = await app.post("/v1/chat/completions", json=call(model="fc:mock/mock-big"), headers=h)
    assert r.status_code == 403
    assert (await app.post("/v1/chat/completions", json=call(), headers=h)).status_code == 200


async def test_budget_events_of_a_plan_customer_carry_the_plans_budget(app: Any) -> None:
    p = await plan(app, monthly_budget_usd=0.00005)  # 50,000 nanos
    cus = await customer(app, plan=p["id"])
    h = admin({"FC-Customer": cus["id"]})
    for _ in range(20):
        r = await app.post("/v1/chat/completions", json=call(5, max_tokens=5), headers=h)
        if r.status_code == 402:
            break
    events = list(
        Event.select().where(
            Event.customer_id == cus["id"], Event.type.in_(["budget.warning", "budget_exceeded"])
        )
    )
    assert events, "the plan's budget never fired an event"
    for e in events:
        assert e.data["monthly_budget_usd"] == 0.00005
        assert e.data["customer"]["monthly_budget_usd"] == 0.00005
