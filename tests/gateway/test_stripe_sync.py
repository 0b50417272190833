"""Stripe usage sync through the real app, the real `stripe` SDK and a fake Stripe on loopback.

Usage is generated with real proxy calls (mock provider); what reaches the fake must match
`GET /v1/usage` exactly in the configured unit, once, whatever fails on the way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.stripe_sync.engine import RetryPolicy, SyncEngine
from gateway.stripe_sync.errors import StripeSyncInProgress
from gateway.stripe_sync.service import StripeSyncService
from gateway.stripe_sync.units import UNITS
from gateway.wiring import Gateway
from tests.conftest import MutableClock, admin
from tests.fakes.fake_stripe import API_KEY, FakeStripe

# Prices high enough that one call is worth a few cents plus a sub-cent remainder.
PRICES = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 3.33
output_usd_per_mtok = 41.7
"""
FAST = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


def stripe_config(value: str = "price_cents", *, create_customers: bool = False) -> str:
    return (
        PRICES
        + f'\n[stripe]\nvalue = "{value}"\nmeter_event_name = "ringside_usage"\n'
        + f"create_customers = {'true' if create_customers else 'false'}\n"
    )


@pytest.fixture
def fake(clock: MutableClock) -> Iterator[FakeStripe]:
    with FakeStripe(now=lambda: clock().timestamp()) as f:
        yield f


@pytest.fixture
def make_gateway(
    gateway_factory: Callable[..., Gateway], fake: FakeStripe
) -> Callable[..., Gateway]:
    def make(value: str = "price_cents", *, create_customers: bool = False) -> Gateway:
        gw = gateway_factory(
            stripe_config(value, create_customers=create_customers),
            env={"STRIPE_API_KEY": API_KEY, "RINGSIDE_STRIPE_API_BASE": fake.url},
        )
        service(gw).engine.retry = FAST
        return gw

    return make


def service(gw: Gateway) -> StripeSyncService:
    svc: StripeSyncService = gw.services.stripe
    return svc


_GATEWAYS: dict[int, Gateway] = {}


@pytest.fixture
async def app(make_gateway: Callable[..., Gateway]) -> AsyncIterator[AsyncTestClient[Any]]:
    gw = make_gateway()
    app = create_app(gw)
    _GATEWAYS[id(app)] = gw
    try:
        async with AsyncTestClient(app=app) as c:
            yield c
    finally:
        del _GATEWAYS[id(app)]


def gw_of(client: AsyncTestClient[Any]) -> Gateway:
    return _GATEWAYS[id(client.app)]


def body(r: Any) -> Any:
    return json.loads(r.text, parse_float=Decimal)


async def new_customer(client: Any, external_id: str, stripe_id: str | None = None) -> str:
    payload: dict[str, Any] = {"external_id": external_id, "name": external_id.title()}
    if stripe_id:
        payload["stripe_customer_id"] = stripe_id
    r = await client.post("/v1/customers", json=payload, headers=admin())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def spend(client: Any, customer: str, tokens: int, calls: int = 1) -> None:
    for i in range(calls):
        r = await client.post(
            "/v1/chat/completions",
            json={
                "model": "fc:mock/mock-fast",
                "messages": [{"role": "user", "content": f"call {i} [mock:tokens={tokens}]"}],
            },
            headers=admin({"FC-Customer": customer}),
        )
        assert r.status_code == 200, r.text


async def usage_base(client: Any, customer: str, unit: str = "price_cents") -> int:
    """The customer's usage from /v1/usage in the unit's base measure (nanos or tokens)."""
    r = await client.get("/v1/usage", params={"customer_id": customer}, headers=admin())
    u = body(r)
    measure = UNITS[unit].measure
    if measure == "tokens":
        return int(u["input_tokens"]) + int(u["output_tokens"])
    usd = u["total_price_usd"] if measure == "price" else u["total_cost_usd"]
    return int(Decimal(usd) * 1_000_000_000)


async def sync(client: Any, status: int = 200) -> Any:
    r = await client.post("/v1/stripe/sync", headers=admin())
    assert r.status_code == status, r.text
    return body(r)


async def states(client: Any) -> dict[str, Any]:
    r = await client.get("/v1/stripe/customers", headers=admin())
    assert r.status_code == 200, r.text
    return {s["customer_id"]: s for s in body(r)["data"]}


# ---------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("unit", ["price_cents", "cost_cents", "price_microusd", "tokens"])
async def test_totals_pushed_equal_usage_totals(
    make_gateway: Callable[..., Gateway], fake: FakeStripe, unit: str
) -> None:
    async with AsyncTestClient(app=create_app(make_gateway(unit))) as client:
        fake.add_customer("cus_stripe_a")
        fake.add_customer("cus_stripe_b")
        a = await new_customer(client, "alice", "cus_stripe_a")
        b = await new_customer(client, "bob", "cus_stripe_b")
        await spend(client, a, 900, calls=3)
        await spend(client, b, 2500, calls=2)

        result = await sync(client)

        assert result["status"] == "succeeded", result
        assert result["unit"] == unit and result["failures"] == []
        divisor = UNITS[unit].divisor
        states_now = await states(client)
        for cid, stripe_id in ((a, "cus_stripe_a"), (b, "cus_stripe_b")):
            base = await usage_base(client, cid, unit)
            assert fake.totals()[stripe_id] == base // divisor
            # Nothing is lost: what was pushed plus the carried remainder is the usage.
            carry = states_now[cid]["carry"]
            assert Decimal(fake.totals()[stripe_id]) + carry == Decimal(base) / divisor
            assert states_now[cid]["status"] == "synced"
            assert states_now[cid]["pending_value"] == 0
        assert result["customers_pushed"] == 2
        assert result["events"] == len(fake.events) == 2
        assert result["total_value"] == sum(fake.totals().values())
        for event in fake.events:
            assert event["event_name"] == "ringside_usage"
            assert event["identifier"].startswith("ringside-cus_")


async def test_rerun_pushes_nothing_new(app: Any, fake: FakeStripe) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1200, calls=2)
    first = await sync(app)
    assert first["events"] == 1
    second = await sync(app)
    assert second["events"] == 0 and second["total_value"] == 0 and second["failures"] == []
    assert len(fake.events) == 1
    assert len(fake.meter_attempts()) == 1  # the rerun did not even ask Stripe


async def test_new_usage_after_a_push_gets_a_new_identifier(app: Any, fake: FakeStripe) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1200)
    await sync(app)
    await spend(app, cid, 1200)
    again = await sync(app)
    assert again["events"] == 1
    ids = [e["identifier"] for e in fake.events]
    assert len(set(ids)) == 2
    assert fake.totals()["cus_s1"] == await usage_base(app, cid) // 10_000_000


# ---------------------------------------------------------------------------- failures


async def test_500_on_first_attempt_is_retried_with_the_same_identifier(
    app: Any, fake: FakeStripe
) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    fake.fail_next(1, 500)
    result = await sync(app)
    assert result["status"] == "succeeded", result
    attempts = fake.meter_attempts()
    assert [a.status for a in attempts] == [500, 200]
    assert attempts[0].identifier == attempts[1].identifier
    assert attempts[0].params == attempts[1].params  # the very same event, resent
    assert len(fake.events) == 1


async def test_429_and_dropped_connection_are_retried(app: Any, fake: FakeStripe) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    fake.rate_limit_next(1)
    # Stripe recorded the event, then the connection died: the retry is a duplicate.
    fake.drop_next(1, after_record=True)
    result = await sync(app)
    assert result["status"] == "succeeded", result
    attempts = fake.meter_attempts()
    assert [a.status for a in attempts] == [429, None, 400]
    assert len({a.identifier for a in attempts}) == 1
    assert len(fake.events) == 1
    assert fake.totals()["cus_s1"] == await usage_base(app, cid) // 10_000_000
    batches = body(await app.get("/v1/stripe/batches", headers=admin()))["data"]
    assert batches[0]["state"] == "pushed" and batches[0]["duplicate"] is True


async def test_batches_filter_by_customer_id_or_external_id(app: Any, fake: FakeStripe) -> None:
    fake.add_customer("cus_s1")
    fake.add_customer("cus_s2")
    first = await new_customer(app, "c1", "cus_s1")
    second = await new_customer(app, "c2", "cus_s2")
    await spend(app, first, 1500)
    await spend(app, second, 1500)
    assert (await sync(app))["status"] == "succeeded"
    for ref in (first, "c1"):
        r = await app.get("/v1/stripe/batches", params={"customer_id": ref}, headers=admin())
        assert r.status_code == 200, r.text
        rows = body(r)["data"]
        assert rows and {b["customer_id"] for b in rows} == {first}


async def test_transient_failures_exhausting_retries_leave_the_batch_for_the_next_run(
    app: Any, fake: FakeStripe
) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    fake.fail_next(3, 503)
    first = await sync(app)
    assert first["status"] == "partial"
    assert first["failures"][0]["code"] == "stripe_unavailable"
    assert first["failures"][0]["retryable"] is True
    assert fake.events == []
    state = (await states(app))[cid]
    assert state["status"] == "error" and state["last_error"]["code"] == "stripe_unavailable"
    assert state["pending_value"] == await usage_base(app, cid) // 10_000_000
    # More usage meanwhile: it waits behind the outstanding batch, then follows it.
    await spend(app, cid, 1500)
    second = await sync(app)
    assert second["status"] == "succeeded" and second["events"] == 2
    ids = [a.identifier for a in fake.meter_attempts()]
    assert ids[:4] == [ids[0]] * 4  # 3 failed attempts + the successful resend
    assert fake.totals()["cus_s1"] == await usage_base(app, cid) // 10_000_000
    assert (await states(app))[cid]["last_error"] is None


async def test_crash_between_send_and_mark_does_not_double_bill(
    app: Any, fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 2000, calls=2)
    original = SyncEngine._mark_pushed_sync
    calls = {"n": 0}

    def crash_once(self: SyncEngine, *args: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated crash after Stripe accepted the event")
        return original(self, *args)

    monkeypatch.setattr(SyncEngine, "_mark_pushed_sync", crash_once)
    first = await sync(app)
    assert first["status"] == "partial"
    assert first["failures"][0]["code"] == "mark_failed"
    assert len(fake.events) == 1  # Stripe has it; Ringside does not know yet

    second = await sync(app)
    assert second["status"] == "succeeded", second
    assert second["events"] == 1  # completed, not pushed again
    assert len(fake.events) == 1
    attempts = fake.meter_attempts()
    assert attempts[0].identifier == attempts[1].identifier
    assert attempts[1].status == 400  # Stripe: "already exists" -> counts as pushed
    assert fake.totals()["cus_s1"] == await usage_base(app, cid) // 10_000_000
    third = await sync(app)
    assert third["events"] == 0 and len(fake.meter_attempts()) == 2


async def test_remainders_carry_across_runs(
    make_gateway: Callable[..., Gateway], fake: FakeStripe
) -> None:
    async with AsyncTestClient(app=create_app(make_gateway())) as app:
        fake.add_customer("cus_s1")
        cid = await new_customer(app, "c1", "cus_s1")
        # ~0.4 cents per call: nothing to push after one call, the remainder is kept.
        await spend(app, cid, 90)
        first = await sync(app)
        assert first["events"] == 0 and fake.events == []
        state = (await states(app))[cid]
        base = await usage_base(app, cid)
        assert 0 < base < 10_000_000
        assert state["carry"] == Decimal(base) / 10_000_000
        assert state["pending_value"] == 0 and state["pending"] == state["carry"]
        pushed = 0
        for _ in range(6):
            await spend(app, cid, 90)
            await sync(app)
            base = await usage_base(app, cid)
            pushed = fake.totals().get("cus_s1", 0)
            carry = (await states(app))[cid]["carry"]
            assert pushed == base // 10_000_000
            assert Decimal(pushed) + carry == Decimal(base) / 10_000_000
        assert pushed >= 2  # whole cents were pushed as the remainders added up
        values = [int(e["payload"]["value"]) for e in fake.events]
        assert all(v >= 1 for v in values)


async def test_customer_without_stripe_id_is_skipped_and_reported(
    app: Any, fake: FakeStripe
) -> None:
    fake.add_customer("cus_s1")
    mapped = await new_customer(app, "mapped", "cus_s1")
    unmapped = await new_customer(app, "unmapped")
    idle = await new_customer(app, "idle")
    await spend(app, mapped, 1500)
    await spend(app, unmapped, 1500)
    result = await sync(app)
    assert [s["customer_id"] for s in result["skipped"]] == [unmapped]
    skipped = result["skipped"][0]
    assert skipped["reason"] == "no_stripe_customer_id"
    assert skipped["pending_value"] == await usage_base(app, unmapped) // 10_000_000
    assert list(fake.totals()) == ["cus_s1"]
    st = await states(app)
    assert st[unmapped]["status"] == "unmapped"
    assert st[idle]["status"] == "unmapped" and st[idle]["pending_value"] == 0
    # Mapping it later pushes everything it used.
    fake.add_customer("cus_s2")
    r = await app.patch(
        f"/v1/customers/{unmapped}", json={"stripe_customer_id": "cus_s2"}, headers=admin()
    )
    assert r.status_code == 200
    again = await sync(app)
    assert again["skipped"] == []
    assert fake.totals()["cus_s2"] == await usage_base(app, unmapped) // 10_000_000


async def test_unknown_stripe_customer_is_a_visible_permanent_error(
    app: Any, fake: FakeStripe
) -> None:
    fake.add_customer("cus_good")
    good = await new_customer(app, "good", "cus_good")
    bad = await new_customer(app, "bad", "cus_typo")
    await spend(app, good, 1500)
    await spend(app, bad, 1500)
    result = await sync(app)
    assert result["status"] == "partial"
    assert [f["customer_id"] for f in result["failures"]] == [bad]
    failure = result["failures"][0]
    assert failure["code"] == "stripe_customer_not_found"
    assert failure["retryable"] is False and "cus_typo" in failure["message"]
    assert len(fake.meter_attempts()) == 2  # a permanent error is not retried in the run
    assert fake.totals() == {"cus_good": await usage_base(app, good) // 10_000_000}

    st = (await states(app))[bad]
    assert st["status"] == "error"
    assert st["last_error"]["code"] == "stripe_customer_not_found"
    assert st["pending_value"] == await usage_base(app, bad) // 10_000_000
    r = await app.get(f"/v1/stripe/customers/{bad}", headers=admin())
    assert body(r)["last_error"]["code"] == "stripe_customer_not_found"
    runs = body(await app.get("/v1/stripe/sync_runs", headers=admin()))["data"]
    assert runs[0]["failures"][0]["code"] == "stripe_customer_not_found"

    # The operator fixes the mapping: the same batch (same identifier) goes to the new id.
    fake.add_customer("cus_fixed")
    await app.patch(
        f"/v1/customers/{bad}", json={"stripe_customer_id": "cus_fixed"}, headers=admin()
    )
    fixed = await sync(app)
    assert fixed["status"] == "succeeded", fixed
    first_id = fake.meter_attempts()[1].identifier
    assert fake.events[-1]["identifier"] == first_id
    assert fake.totals()["cus_fixed"] == await usage_base(app, bad) // 10_000_000
    assert (await states(app))[bad]["status"] == "synced"


async def test_missing_meter_fails_the_run_visibly(
    make_gateway: Callable[..., Gateway], fake: FakeStripe
) -> None:
    fake.meters = {"another_meter"}
    async with AsyncTestClient(app=create_app(make_gateway())) as app:
        fake.add_customer("cus_s1")
        fake.add_customer("cus_s2")
        a = await new_customer(app, "a", "cus_s1")
        b = await new_customer(app, "b", "cus_s2")
        await spend(app, a, 1500)
        await spend(app, b, 1500)
        result = await sync(app)
        assert result["status"] == "failed"
        assert result["error"]["code"] == "stripe_meter_not_found"
        assert len(fake.meter_attempts()) == 1  # stopped at the first refusal
        fake.meters = {"ringside_usage"}
        result = await sync(app)
        assert result["status"] == "succeeded" and result["events"] == 2


async def test_old_usage_is_reported_unpushable(
    app: Any, fake: FakeStripe, clock: MutableClock
) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    clock.advance(days=-40)
    await spend(app, cid, 1500)
    old_base = await usage_base(app, cid)
    clock.advance(days=40)
    await spend(app, cid, 1500)
    result = await sync(app)
    assert result["status"] == "succeeded"
    [entry] = result["unpushable"]
    assert entry["customer_id"] == cid and entry["days"] == 1
    assert entry["value"] == old_base // 10_000_000 and entry["value"] > 0
    # Only the recent usage reached Stripe; the old usage is accounted, not dropped.
    recent = await usage_base(app, cid) - old_base
    assert fake.totals()["cus_s1"] == recent // 10_000_000
    assert all(e["timestamp"] >= clock().timestamp() - 35 * 86400 for e in fake.events)
    st = (await states(app))[cid]
    assert st["unpushable_value"] == entry["value"]
    assert (await sync(app))["unpushable"] == []  # reported once, not on every run


async def test_event_timestamps_fall_in_the_usage_day(
    app: Any, fake: FakeStripe, clock: MutableClock
) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    clock.advance(days=-3)
    await spend(app, cid, 1500)
    day = clock().strftime("%Y-%m-%d")
    clock.advance(days=3)
    await spend(app, cid, 1500)
    await sync(app)
    assert len(fake.events) == 2
    old, new = sorted(fake.events, key=lambda e: e["timestamp"])
    from gateway.stripe_sync.engine import day_end_s

    assert old["timestamp"] == day_end_s(day)
    assert new["timestamp"] <= clock().timestamp()


async def test_outcome_unknown_after_the_dedupe_window_waits_for_the_operator(
    app: Any, fake: FakeStripe, clock: MutableClock
) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    fake.fail_next(3, 500, after_record=True)  # Stripe keeps it; we never hear back
    first = await sync(app)
    assert first["failures"][0]["code"] == "stripe_unavailable"
    assert len(fake.events) == 1
    clock.advance(hours=25)  # Stripe's de-duplication of that identifier is gone
    second = await sync(app)
    assert second["failures"][0]["code"] == "stripe_outcome_unknown"
    assert len(fake.meter_attempts()) == 3  # nothing resent blindly
    st = (await states(app))[cid]
    assert st["status"] == "action_required"
    batch_id = second["failures"][0]["batch_id"]
    r = await app.post(
        f"/v1/stripe/batches/{batch_id}/resolve", json={"outcome": "pushed"}, headers=admin()
    )
    assert r.status_code == 200 and r.json()["state"] == "pushed"
    audit = await app.get("/v1/audit_log?action=stripe.batch_resolved", headers=admin())
    entry = audit.json()["data"][0]
    assert entry["target_id"] == batch_id and entry["changes"]["outcome"] == [None, "pushed"]
    third = await sync(app)
    assert third["status"] == "succeeded" and third["failures"] == []
    assert len(fake.events) == 1
    assert (await states(app))[cid]["status"] == "synced"


# ---------------------------------------------------------------------------- API & wiring


async def test_sync_runs_history_is_newest_first_and_paginated(app: Any, fake: FakeStripe) -> None:
    ids = [(await sync(app))["id"] for _ in range(3)]
    r = await app.get("/v1/stripe/sync_runs", params={"limit": 2}, headers=admin())
    page = body(r)
    assert [run["id"] for run in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    r = await app.get(
        "/v1/stripe/sync_runs",
        params={"limit": 2, "starting_after": page["data"][-1]["id"]},
        headers=admin(),
    )
    assert [run["id"] for run in body(r)["data"]] == [ids[0]]
    r = await app.get(f"/v1/stripe/sync_runs/{ids[0]}", headers=admin())
    assert r.status_code == 200 and r.json()["id"] == ids[0]
    r = await app.get("/v1/stripe/sync_runs/srun_nope", headers=admin())
    assert r.status_code == 404 and r.json()["error"]["code"] == "stripe_sync_run_not_found"


async def test_stripe_routes_need_the_admin_key(app: Any) -> None:
    r = await app.post("/v1/keys", json={"name": "app"}, headers=admin())
    app_key = r.json()["key"]
    for method, path in (
        ("post", "/v1/stripe/sync"),
        ("get", "/v1/stripe/sync_runs"),
        ("get", "/v1/stripe/customers"),
    ):
        r = await getattr(app, method)(path)
        assert r.status_code == 401
        r = await getattr(app, method)(path, headers={"Authorization": f"Bearer {app_key}"})
        assert r.status_code == 403


async def test_sync_without_api_key_is_a_clear_error(
    gateway_factory: Callable[..., Gateway],
) -> None:
    async with AsyncTestClient(app=create_app(gateway_factory(PRICES))) as app:
        r = await app.post("/v1/stripe/sync", headers=admin())
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "stripe_not_configured"
        r = await app.get("/v1/stripe/customers", headers=admin())
        assert r.status_code == 200


async def test_concurrent_sync_in_one_process_is_refused(app: Any, fake: FakeStripe) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    first, second = await asyncio.gather(
        app.post("/v1/stripe/sync", headers=admin()),
        app.post("/v1/stripe/sync", headers=admin()),
    )
    codes = sorted([first.status_code, second.status_code])
    assert codes in ([200, 200], [200, 409])
    if codes == [200, 409]:
        busy = first if first.status_code == 409 else second
        assert busy.json()["error"]["code"] == "stripe_sync_in_progress"
    assert len(fake.events) == 1


async def test_create_customers_creates_and_maps_the_stripe_customer(
    make_gateway: Callable[..., Gateway], fake: FakeStripe
) -> None:
    async with AsyncTestClient(app=create_app(make_gateway(create_customers=True))) as app:
        r = await app.post(
            "/v1/customers",
            json={"external_id": "acme", "name": "Acme", "email": "billing@acme.test"},
            headers=admin(),
        )
        cid = r.json()["id"]
        stripe_id = None
        for _ in range(200):  # created off the request path (on the app's own loop)
            r = await app.get(f"/v1/customers/{cid}", headers=admin())
            stripe_id = r.json()["stripe_customer_id"]
            if stripe_id:
                break
            await asyncio.sleep(0.02)
        assert stripe_id in fake.customers
        created = fake.customers[stripe_id]
        assert created["name"] == "Acme" and created["email"] == "billing@acme.test"
        assert created["metadata"]["ringside_customer_id"] == cid
        await spend(app, cid, 1500)
        await sync(app)
        assert fake.totals()[stripe_id] == await usage_base(app, cid) // 10_000_000


async def test_register_jobs_schedules_the_cron_in_utc(
    make_gateway: Callable[..., Gateway],
) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from gateway.stripe_sync import RECOVERY_JOB_ID, SYNC_JOB_ID, register_jobs

    gw = make_gateway()
    scheduler = AsyncIOScheduler(timezone="UTC")
    register_jobs(scheduler, service(gw), gw.settings.stripe)
    job = scheduler.get_job(SYNC_JOB_ID)
    assert job is not None
    assert str(job.trigger.timezone) == "UTC"
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert fields["hour"] == "2" and fields["minute"] == "0"
    assert scheduler.get_job(RECOVERY_JOB_ID) is not None


async def test_recovery_pass_resends_only_claimed_batches(app: Any, fake: FakeStripe) -> None:
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    svc = service(gw_of(app))
    assert await svc.engine.run("recovery", claim_new=False) is None  # nothing outstanding
    fake.fail_next(3, 500)
    await sync(app)
    assert fake.events == []
    await spend(app, cid, 1500)  # new usage is left for the nightly run
    result = await svc.engine.run("recovery", claim_new=False)
    assert result is not None and result["trigger"] == "recovery"
    assert result["events"] == 1 and len(fake.events) == 1
    assert (await states(app))[cid]["pending_value"] > 0


# ---------------------------------------------------------------------------- PostgreSQL

# Another Ringside instance: its own process (the database proxy is per process), the
# same PostgreSQL database and the same Stripe. It reports "ready", waits for "go" on
# stdin so every instance starts syncing at once, then prints its outcome as JSON.
INSTANCE = """
import asyncio, json, sys
from gateway.wiring import build_gateway
from gateway.config import load_settings
from gateway.db.database import Database
from gateway.stripe_sync.engine import RetryPolicy, SyncEngine
from gateway.stripe_sync.errors import StripeSyncInProgress
from gateway.stripe_sync.errors import StripeSyncInProgress

config, env, no_lease = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
if no_lease:
    SyncEngine._acquire_lease_sync = lambda self, holder: True
    SyncEngine._renew_lease_sync = lambda self, holder: True
settings = load_settings(config, env=env)
db = Database(settings.database_url)
gw = build_gateway(settings, db, admin_key=env["RINGSIDE_ADMIN_KEY"])
svc = gw.services.stripe
svc.engine.retry = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)
print("ready", flush=True)
sys.stdin.readline()

async def main():
    try:
        out = {"result": await svc.sync_now()}
    except StripeSyncInProgress:
        out = {"busy": True}
    await svc.aclose()
    return out

print(json.dumps(asyncio.run(main()), default=str), flush=True)
db.close()
"""


async def sync_in_other_instances(
    gw: Gateway, tmp_path: Any, fake: FakeStripe, n: int, *, no_lease: bool = False
) -> list[dict[str, Any]]:
    """Run `n` other instances' syncs concurrently with this one's; all their outcomes."""
    import sys

    from tests.conftest import ADMIN_KEY

    config = tmp_path / "instance.toml"
    config.write_text(stripe_config())
    env = {
        "RINGSIDE_ADMIN_KEY": ADMIN_KEY,
        "RINGSIDE_DATABASE_URL": gw.settings.database_url,
        "RINGSIDE_DATA_DIR": str(tmp_path / "instance"),
        "STRIPE_API_KEY": API_KEY,
        "RINGSIDE_STRIPE_API_BASE": fake.url,
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            INSTANCE,
            str(config),
            json.dumps(env),
            "1" if no_lease else "0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        assert (await asyncio.wait_for(p.stdout.readline(), 60)).strip() == b"ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        await p.stdin.drain()

    async def here() -> dict[str, Any]:
        try:
            return {"result": await service(gw).sync_now()}
        except StripeSyncInProgress:
            return {"busy": True}

    async def there(p: Any) -> dict[str, Any]:
        out, _ = await asyncio.wait_for(p.communicate(), 120)
        assert p.returncode == 0
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    outcomes = await asyncio.gather(here(), *(there(p) for p in procs))
    return list(outcomes)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("no_lease", [False, True], ids=["lease", "row-locks-only"])
async def test_concurrent_instances_on_postgres_do_not_double_push(
    make_gateway: Callable[..., Gateway],
    fake: FakeStripe,
    tmp_path: Any,
    no_lease: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "row-locks-only" takes the lease away: the per-customer row lock in the claim must
    # still keep two overlapping runs from claiming the same usage.
    if no_lease:
        monkeypatch.setattr(SyncEngine, "_acquire_lease_sync", lambda self, holder: True)
        monkeypatch.setattr(SyncEngine, "_renew_lease_sync", lambda self, holder: True)
    gw = make_gateway()
    async with AsyncTestClient(app=create_app(gw)) as app:
        ids = []
        for i in range(6):
            fake.add_customer(f"cus_pg{i}")
            ids.append(await new_customer(app, f"pg{i}", f"cus_pg{i}"))
            await spend(app, ids[-1], 1500, calls=2)
        outcomes = await sync_in_other_instances(gw, tmp_path, fake, 2, no_lease=no_lease)
        results = [o["result"] for o in outcomes if "result" in o]
        assert results, outcomes
        if not no_lease:
            assert len(results) + sum(1 for o in outcomes if o.get("busy")) == 3
        for i, cid in enumerate(ids):
            assert fake.totals()[f"cus_pg{i}"] == await usage_base(app, cid) // 10_000_000
        identifiers = [e["identifier"] for e in fake.events]
        assert len(identifiers) == len(set(identifiers)) == 6
        assert sum(r["events"] for r in results) == 6
        # Whatever ran where, the next run finds nothing left to push.
        rerun = await sync(app)
        assert rerun["events"] == 0 and rerun["failures"] == []


async def test_a_finished_run_is_announced_on_the_event_bus(app: Any, fake: FakeStripe) -> None:
    seen: list[Any] = []
    gw_of(app).bus.subscribe(lambda event: seen.append(event))
    fake.add_customer("cus_s1")
    cid = await new_customer(app, "c1", "cus_s1")
    await spend(app, cid, 1500)
    result = await sync(app)
    [event] = [e for e in seen if e.kind == "stripe.sync_finished"]
    assert event.data["run_id"] == result["id"]
    assert event.data["events"] == 1 and event.data["status"] == "succeeded"
