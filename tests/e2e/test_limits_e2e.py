"""Rate limits against the real `ringside serve` process: real concurrency on SQLite, two
instances sharing one PostgreSQL database, a SIGKILLed instance's concurrency slots, the
x-ratelimit headers (and the `openai` SDK's view of a 429), and per-key limits.

Calls that must stay in flight while others compete say `[gate]`: the fake upstream holds
them until the test has seen every other call refused, so the counts are exact without
any timing assumption."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.upstream import FakeUpstream

pytestmark = pytest.mark.e2e

CONFIG = """
[billing]
hold_ttl_s = 2

[providers.local]
base_url = "{url}/v1"
timeout_s = 30

[prices."local/model"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 400
"""

# OpenAI's duration format, as the contract pins it.
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")
REQUEST_TRIO = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
TOKEN_TRIO = (
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.gate.set()  # never leave a handler waiting
    up.stop()


def body(
    text: str = "hello [tokens=5]", max_tokens: int | None = 5, **extra: Any
) -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": "fc:local/model",
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if max_tokens is not None:
        b["max_tokens"] = max_tokens
    return b


def seconds(value: str) -> float:
    """An OpenAI duration (`1m0s`, `59.5s`, `20ms`) in seconds."""
    assert DURATION.match(value), value
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


async def post(base: str, headers: dict[str, str], path: str, payload: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        r = await c.post(path, json=payload)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())


async def make_customer(base: str, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    fields.setdefault("external_id", f"lim-{time.monotonic_ns()}")
    fields.setdefault("name", "Limited")
    return await post(base, headers, "/v1/customers", fields)


def clients(bases: list[str], headers: dict[str, str]) -> list[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return [
        httpx.AsyncClient(base_url=b, headers=headers, timeout=60, limits=limits) for b in bases
    ]


async def fire(
    bases: list[str], headers: dict[str, str], n: int, make: Callable[[int], dict[str, Any]]
) -> list[httpx.Response]:
    """`n` calls at once (one asyncio task each), spread round-robin over `bases`."""
    cs = clients(bases, headers)
    try:
        return list(
            await asyncio.gather(
                *(cs[i % len(cs)].post("/v1/chat/completions", json=make(i)) for i in range(n))
            )
        )
    finally:
        for c in cs:
            await c.aclose()


async def fire_gated(
    bases: list[str],
    headers: dict[str, str],
    n: int,
    make: Callable[[int], dict[str, Any]],
    upstream: FakeUpstream,
) -> tuple[int, list[httpx.Response]]:
    """`n` calls at once whose admitted ones wait at the upstream (`[gate]` in their text).
    Once every call is either answered (refused) or at the upstream, the number at the
    upstream is exactly how many were admitted while all of them were in flight; then the
    gate opens. Returns that number and every response."""
    upstream.gate.clear()
    before = upstream.count()
    cs = clients(bases, headers)
    try:
        tasks = [
            asyncio.create_task(cs[i % len(cs)].post("/v1/chat/completions", json=make(i)))
            for i in range(n)
        ]
        await until(
            lambda: sum(t.done() for t in tasks) + upstream.count() - before >= n,
            "every call refused or at the upstream",
        )
        in_flight = upstream.count() - before
        upstream.gate.set()
        return in_flight, list(await asyncio.gather(*tasks))
    finally:
        upstream.gate.set()
        for c in cs:
            await c.aclose()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


def error(r: httpx.Response) -> dict[str, Any]:
    return dict(r.json()["error"])


def assert_refused(r: httpx.Response, code: str, limit: str, value: int) -> None:
    assert r.status_code == 429, r.text
    err = error(r)
    assert (err["code"], err["limit"], err["limit_value"]) == (code, limit, value), err
    assert err["type"] == "rate_limit_error"
    retry = r.headers["Retry-After"]
    assert retry.isdigit() and int(retry) >= 1, retry


async def request_log(base: str, headers: dict[str, str], customer_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        r = await c.get(f"/v1/requests?customer_id={customer_id}&limit=500")
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["has_more"] is False
        return list(page["data"])


async def assert_refusals_uncharged(
    base: str, headers: dict[str, str], customer_id: str, ok: int, refused: int, code: str
) -> None:
    log = await request_log(base, headers, customer_id)
    statuses = [row["status"] for row in log]
    assert statuses.count("ok") == ok and statuses.count("refused") == refused, statuses
    assert len(log) == ok + refused
    for row in log:
        if row["status"] == "refused":
            assert (row["http_status"], row["error_code"]) == (429, code), row
            assert Decimal(str(row["cost_usd"])) == 0 and Decimal(str(row["price_usd"])) == 0
            assert row["input_tokens"] == 0 and row["output_tokens"] == 0
        else:
            assert Decimal(str(row["cost_usd"])) > 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        cus = (await c.get(f"/v1/customers/{customer_id}")).json()
    spent = Decimal(str(cus["budget"]["spent_usd"]))
    assert spent == sum(Decimal(str(row["cost_usd"])) for row in log)


# ---------------------------------------------------------------- 1. SQLite, one instance


async def test_requests_per_minute_under_real_concurrency_on_sqlite(
    ringside_server: Any, upstream: FakeUpstream
) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))
    h = server.headers()
    cus = await make_customer(server.base_url, h, limits={"requests_per_minute": 20})
    assert cus["effective"]["limits"]["requests_per_minute"] == 20
    before = upstream.count()
    responses = await fire([server.base_url], {**h, "FC-Customer": cus["id"]}, 60, lambda i: body())
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 20 and codes.count(429) == 40, codes
    for r in responses:
        if r.status_code == 429:
            assert_refused(r, "customer_rate_limited", "requests_per_minute", 20)
            assert error(r)["customer_id"] == cus["id"]
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # Each admitted call saw a different count: remaining 19..0, one each.
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(20))
    assert upstream.count() - before == 20  # refused calls never reached the upstream
    await assert_refusals_uncharged(server.base_url, h, cus["id"], 20, 40, "customer_rate_limited")


# ---------------------------------------------------------------- 2. two instances, PostgreSQL


@pytest.fixture
def two_instances(ringside_server: Any, upstream: FakeUpstream, pg_server: Any) -> list[Any]:
    url = pg_server()
    config = CONFIG.format(url=upstream.url)
    return [ringside_server(config, database_url=url), ringside_server(config, database_url=url)]


@pytest.mark.postgres
async def test_requests_per_minute_exact_across_two_instances(
    two_instances: list[Any], upstream: FakeUpstream
) -> None:
    a, b = two_instances
    h = a.headers()
    # The limit comes from a plan this time (created on one instance, used on both).
    plan = await post(
        a.base_url,
        h,
        "/v1/plans",
        {"name": "Twenty", "external_id": "twenty", "limits": {"requests_per_minute": 20}},
    )
    cus = await make_customer(b.base_url, h, plan="twenty")
    assert cus["plan"] == plan["id"]
    before = upstream.count()
    responses = await fire(
        [a.base_url, b.base_url], {**h, "FC-Customer": cus["id"]}, 60, lambda i: body()
    )
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 20 and codes.count(429) == 40, codes
    for r in responses:
        if r.status_code == 429:
            assert_refused(r, "customer_rate_limited", "requests_per_minute", 20)
            assert error(r)["plan"] == plan["id"]
    assert upstream.count() - before == 20
    await assert_refusals_uncharged(a.base_url, h, cus["id"], 20, 40, "customer_rate_limited")


@pytest.mark.postgres
async def test_max_concurrent_exact_across_two_instances(
    two_instances: list[Any], upstream: FakeUpstream
) -> None:
    a, b = two_instances
    h = a.headers()
    cus = await make_customer(a.base_url, h, limits={"max_concurrent": 5})
    ch = {**h, "FC-Customer": cus["id"]}
    bases = [a.base_url, b.base_url]

    def slow_stream(i: int) -> dict[str, Any]:
        # Held at the upstream until every call is placed, then ~1 s of chunks.
        return body("slow [gate] [tokens=10] [chunk_sleep=0.1]", 10, stream=True)

    in_flight, responses = await fire_gated(bases, ch, 60, slow_stream, upstream)
    assert in_flight == 5
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 5 and codes.count(429) == 55, codes
    for r in responses:
        if r.status_code == 429:
            assert_refused(r, "customer_rate_limited", "max_concurrent", 5)
        else:
            assert r.text.rstrip().endswith("data: [DONE]"), r.text[-200:]
            assert r.text.count('"content": "tok"') == 10, r.text

    # Settlement gave all five slots back: the next wave again admits exactly five.
    in_flight, responses = await fire_gated(bases, ch, 8, slow_stream, upstream)
    assert in_flight == 5
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429] * 3
    await assert_refusals_uncharged(a.base_url, h, cus["id"], 10, 58, "customer_rate_limited")


@pytest.mark.postgres
async def test_tokens_per_minute_exact_across_two_instances(
    two_instances: list[Any], upstream: FakeUpstream
) -> None:
    a, b = two_instances
    h = a.headers()
    limit, max_tokens = 1000, 100
    cus = await make_customer(a.base_url, h, limits={"tokens_per_minute": limit})
    text = "tpm [gate] [tokens=100]"
    payload = body(text, max_tokens)
    # What one call counts is its input bound (from the request's bytes) + max_tokens:
    # at least the text's bytes, at most the whole body's bytes.
    lower = len(text.encode()) + max_tokens
    upper = len(json.dumps(payload).encode()) + max_tokens
    assert 60 * lower > limit  # some must be refused

    admitted, responses = await fire_gated(
        [a.base_url, b.base_url], {**h, "FC-Customer": cus["id"]}, 60, lambda i: payload, upstream
    )
    codes = [r.status_code for r in responses]
    assert codes.count(200) == admitted and codes.count(429) == 60 - admitted, codes
    assert admitted * lower <= limit  # never more than the limit counted
    assert admitted >= limit // upper  # and not needlessly strict

    ok = [r for r in responses if r.status_code == 200]
    for r in ok:
        assert r.headers["x-ratelimit-limit-tokens"] == str(limit)
        assert DURATION.match(r.headers["x-ratelimit-reset-tokens"])
    left = sorted((int(r.headers["x-ratelimit-remaining-tokens"]) for r in ok), reverse=True)
    # Every admission took the same amount (`need`), one after another, from one window
    # shared by both instances...
    need = limit - left[0]
    assert lower <= need <= upper
    assert left == [limit - need * (k + 1) for k in range(admitted)]
    # ...and a refused call really did not fit: the limit admits floor(limit / need).
    assert admitted == limit // need
    for r in responses:
        if r.status_code == 429:
            assert_refused(r, "customer_rate_limited", "tokens_per_minute", limit)
            assert r.headers["x-ratelimit-remaining-tokens"] == str(left[-1])
    # The tokens the admitted calls used fit the limit too.
    log = await request_log(b.base_url, h, cus["id"])
    used = sum(row["input_tokens"] + row["output_tokens"] for row in log if row["status"] == "ok")
    assert 0 < used <= limit
    await assert_refusals_uncharged(
        a.base_url, h, cus["id"], admitted, 60 - admitted, "customer_rate_limited"
    )


# ---------------------------------------------------------------- 3. SIGKILL mid-stream


@pytest.mark.postgres
async def test_killed_instance_concurrency_slots_come_back(
    two_instances: list[Any], upstream: FakeUpstream
) -> None:
    a, b = two_instances  # [billing] hold_ttl_s = 2
    h = a.headers()
    cus = await make_customer(a.base_url, h, limits={"max_concurrent": 2})
    ch = {**h, "FC-Customer": cus["id"]}
    started = [asyncio.Event(), asyncio.Event()]

    async def stream_on_a(c: httpx.AsyncClient, i: int) -> str:
        # ~40 s of chunks: still streaming when A dies.
        payload = body("long [tokens=200] [chunk_sleep=0.2]", 200, stream=True)
        seen = ""
        async with c.stream("POST", "/v1/chat/completions", json=payload) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                seen += line
                if line.startswith("data:"):
                    started[i].set()
        return seen

    async with (
        httpx.AsyncClient(base_url=a.base_url, headers=ch, timeout=60) as ca,
        httpx.AsyncClient(base_url=b.base_url, headers=ch, timeout=60) as cb,
    ):
        streams = [asyncio.create_task(stream_on_a(ca, i)) for i in range(2)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)

        # Both slots are taken by A's streams: B refuses.
        r = await cb.post("/v1/chat/completions", json=body())
        assert_refused(r, "customer_rate_limited", "max_concurrent", 2)

        a.kill()  # SIGKILL: nobody will settle A's calls or give their slots back
        results = await asyncio.gather(*streams, return_exceptions=True)
        for res in results:  # cut off, never finished
            assert isinstance(res, Exception) or "[DONE]" not in res, res

        # Until the sweep releases the lapsed holds, B keeps refusing; then it admits.
        polled: list[httpx.Response] = []
        deadline = time.monotonic() + 30
        while True:
            r = await cb.post("/v1/chat/completions", json=body())
            polled.append(r)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert polled[-1].status_code == 200, polled[-1].text
        for r in polled[:-1]:
            assert_refused(r, "customer_rate_limited", "max_concurrent", 2)

    # Both slots came back: two calls in flight on B at once, a third refused.
    in_flight, responses = await fire_gated(
        [b.base_url], ch, 3, lambda i: body("again [gate]"), upstream
    )
    assert in_flight == 2
    assert sorted(r.status_code for r in responses) == [200, 200, 429]
    # A's two cut calls left no request log row (never settled) and no charge.
    log = await request_log(b.base_url, h, cus["id"])
    assert [row["status"] for row in log].count("ok") == 3


# ---------------------------------------------------------------- 4. headers and the SDK


def test_ratelimit_headers_and_the_openai_sdk(ringside_server: Any, upstream: FakeUpstream) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))
    h = server.headers()
    cus = httpx.post(
        f"{server.base_url}/v1/customers",
        headers=h,
        json={
            "external_id": "headers",
            "name": "Headers",
            "limits": {"requests_per_minute": 20, "tokens_per_minute": 100_000},
        },
    ).json()
    payload = body("hdr [tokens=5]", 5)
    with httpx.Client(
        base_url=server.base_url, headers={**h, "FC-Customer": cus["id"]}, timeout=30
    ) as c:
        remaining, tokens_left, used = [], [], 0
        for _ in range(20):
            r = c.post("/v1/chat/completions", json=payload)
            assert r.status_code == 200, r.text
            assert "retry-after" not in r.headers
            assert r.headers["x-ratelimit-limit-requests"] == "20"
            assert r.headers["x-ratelimit-limit-tokens"] == "100000"
            assert 0 < seconds(r.headers["x-ratelimit-reset-requests"]) <= 61
            assert 0 < seconds(r.headers["x-ratelimit-reset-tokens"]) <= 61
            remaining.append(int(r.headers["x-ratelimit-remaining-requests"]))
            tokens_left.append(int(r.headers["x-ratelimit-remaining-tokens"]))
            used += r.json()["usage"]["total_tokens"]
        assert remaining == list(range(19, -1, -1))
        assert all(x > y for x, y in itertools.pairwise(tokens_left))
        assert tokens_left[-1] < 100_000

        refused = c.post("/v1/chat/completions", json=payload)
        assert_refused(refused, "customer_rate_limited", "requests_per_minute", 20)
        for name in REQUEST_TRIO + TOKEN_TRIO:
            assert name in refused.headers, name
        assert refused.headers["x-ratelimit-limit-requests"] == "20"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        reset = seconds(refused.headers["x-ratelimit-reset-requests"])
        assert 0 < reset <= 61
        # The oldest call leaves the window no later than the newest one.
        assert int(refused.headers["Retry-After"]) <= math.ceil(reset)
        assert int(refused.headers["Retry-After"]) <= 61
        # Settlement trued each call's count down to the tokens it used (its bound was
        # counted at admission), and the refusal counted nothing.
        assert refused.headers["x-ratelimit-remaining-tokens"] == str(100_000 - used)

        # A customer with no limit gets no x-ratelimit headers at all.
        free = c.post(
            "/v1/customers", json={"external_id": "free", "name": "Free"}, headers=h
        ).json()
        r = c.post("/v1/chat/completions", json=payload, headers={"FC-Customer": free["id"]})
        assert r.status_code == 200
        assert not [k for k in r.headers if k.lower().startswith("x-ratelimit-")]

    before = upstream.count()
    oc = openai.OpenAI(
        base_url=f"{server.base_url}/v1",
        api_key=server.admin_key,
        default_headers={"FC-Customer": "headers"},
        max_retries=0,
    )
    messages: Any = payload["messages"]
    with pytest.raises(openai.RateLimitError) as exc:
        oc.chat.completions.create(model="fc:local/model", messages=messages, max_tokens=5)
    assert exc.value.status_code == 429
    assert exc.value.code == "customer_rate_limited"
    assert exc.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(exc.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError):
        oc.chat.completions.create(
            model="fc:local/model", messages=messages, max_tokens=5, stream=True
        )
    assert upstream.count() == before


# ---------------------------------------------------------------- 5. key limits


async def test_key_limits(ringside_server: Any, upstream: FakeUpstream) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))
    h = server.headers()
    base = server.base_url
    free = await make_customer(base, h)  # no limit of its own
    key = await post(base, h, "/v1/keys", {"name": "three", "limits": {"requests_per_minute": 3}})
    app = {"Authorization": f"Bearer {key['key']}"}
    before = upstream.count()
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for left in (2, 1, 0):
            r = await c.post(
                "/v1/chat/completions", json=body(), headers={**app, "FC-Customer": free["id"]}
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            assert r.headers["x-ratelimit-remaining-requests"] == str(left)
        r = await c.post(
            "/v1/chat/completions", json=body(), headers={**app, "FC-Customer": free["id"]}
        )
        assert_refused(r, "key_rate_limited", "requests_per_minute", 3)
        assert error(r)["key_id"] == key["id"]
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        # The customer itself is not limited: the admin key still gets through.
        r = await c.post(
            "/v1/chat/completions", json=body(), headers={**h, "FC-Customer": free["id"]}
        )
        assert r.status_code == 200
        assert "x-ratelimit-limit-requests" not in r.headers
    assert upstream.count() - before == 4
    await assert_refusals_uncharged(base, h, free["id"], 4, 1, "key_rate_limited")


async def test_key_and_customer_limits_together(
    ringside_server: Any, upstream: FakeUpstream
) -> None:
    server = ringside_server(CONFIG.format(url=upstream.url))
    h = server.headers()
    base = server.base_url
    tight = await make_customer(base, h, limits={"requests_per_minute": 2})
    free = await make_customer(base, h)
    key = await post(base, h, "/v1/keys", {"name": "three", "limits": {"requests_per_minute": 3}})
    app = {"Authorization": f"Bearer {key['key']}"}

    async def call(customer: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            return await c.post(
                "/v1/chat/completions",
                json=body(),
                headers={**app, "FC-Customer": customer["id"]},
            )

    # The headers report whichever limit has less left: the customer's (2) here.
    r = await call(tight)
    assert r.status_code == 200
    assert (
        r.headers["x-ratelimit-limit-requests"],
        r.headers["x-ratelimit-remaining-requests"],
    ) == (
        "2",
        "1",
    )
    r = await call(tight)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    r = await call(tight)
    assert_refused(r, "customer_rate_limited", "requests_per_minute", 2)
    # That refusal counted nothing on the key either: it has one call left (3 - 2).
    r = await call(free)
    assert r.status_code == 200
    assert (
        r.headers["x-ratelimit-limit-requests"],
        r.headers["x-ratelimit-remaining-requests"],
    ) == (
        "3",
        "0",
    )
    r = await call(free)
    assert_refused(r, "key_rate_limited", "requests_per_minute", 3)
    # Both exhausted: the key's limit is checked first.
    r = await call(tight)
    assert_refused(r, "key_rate_limited", "requests_per_minute", 3)
