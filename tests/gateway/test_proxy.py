"""The proxy routes through the real app: shapes, metering, upstream failures, customer rules."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.conftest import admin, unique_id
from tests.fakes.fake_upstream import FakeUpstream, sse_bytes


def local_config(base_url: str, timeout_s: float = 5) -> str:
    return f"""
[billing]
markup = 1.25

[providers.local]
base_url = "{base_url}/v1"
api_key_env = "LOCAL_API_KEY"
timeout_s = {timeout_s}

[prices."local/llama"]
input_usd_per_mtok = 0.20
output_usd_per_mtok = 0.60
cached_input_usd_per_mtok = 0.10
"""


def completion(prompt: int = 1000, completion: int = 500, cached: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "llama",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """The `local` provider: a real HTTP server on 127.0.0.1 answering what each test queues."""
    with FakeUpstream() as fake:
        yield fake
    assert fake.unexpected == [], "requests nobody queued a reply for"
    assert fake.pending() == 0, "queued replies nobody asked for"


@pytest.fixture
async def local(gateway_factory: Any, upstream: FakeUpstream) -> Any:
    gw = gateway_factory(local_config(upstream.url), env={"LOCAL_API_KEY": "sk-local"})
    async with AsyncTestClient(app=create_app(gw)) as c:
        c.gw = gw  # type: ignore[attr-defined]
        yield c


async def new_customer(client: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("external_id", unique_id("c"))
    body.setdefault("name", "Customer")
    r = await client.post("/v1/customers", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


def chat(model: str = "fc:local/llama", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}


async def test_non_stream_meters_exact_cost_price_and_margin(
    local: Any, upstream: FakeUpstream
) -> None:
    upstream.add(json=completion(1000, 500, cached=200))
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions", json=chat(), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 200, r.text
    # 800 x 0.20 + 200 x 0.10 + 500 x 0.60 per Mtok = 0.00048 USD; x1.25 = 0.0006
    usage = r.json()["usage"]
    assert Decimal(str(usage["cost_usd"])) == Decimal("0.00048")
    assert Decimal(str(usage["price_usd"])) == Decimal("0.0006")
    assert r.headers["FC-Cost-USD"] == "0.00048"
    assert r.headers["FC-Price-USD"] == "0.0006"
    assert r.headers["FC-Request-Id"].startswith("req_")
    sent = upstream.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-local"
    body = json.loads(sent.content)
    assert body["model"] == "llama"  # the upstream sees the bare model name
    # the request log and usage totals agree with the response
    log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
    assert log["id"] == r.headers["FC-Request-Id"]
    assert (log["input_tokens"], log["cached_tokens"], log["output_tokens"]) == (1000, 200, 500)
    assert log["margin_usd"] == pytest.approx(0.00012)
    total = (await local.get(f"/v1/usage?customer_id={cus['id']}", headers=admin())).json()
    assert total["requests"] == 1 and total["total_cost_usd"] == 0.00048
    assert total["margin_usd"] == 0.00012


async def test_markup_precedence(gateway_factory: Any, upstream: FakeUpstream) -> None:
    """customer markup > per-model markup > global markup."""
    config = local_config(upstream.url).replace(
        "[billing]\nmarkup = 1.25\n",
        '[billing]\nmarkup = 1.25\n[billing.model_markups]\n"local/llama" = 2\n',
    )
    config += '\n[prices."local/other"]\ninput_usd_per_mtok = 0.20\noutput_usd_per_mtok = 0\n'
    config += '\n[prices."local/third"]\ninput_usd_per_mtok = 0.20\noutput_usd_per_mtok = 0\n'
    config += "markup = 3\n"
    gw = gateway_factory(config)
    upstream.add(json=completion(1_000_000, 0), reusable=True)
    prices = {}
    async with AsyncTestClient(app=create_app(gw)) as c:
        await new_customer(c, external_id="plain")
        await new_customer(c, external_id="special", markup=4)
        for who, model in [
            ("plain", "llama"),
            ("plain", "other"),
            ("plain", "third"),
            ("special", "llama"),
        ]:
            r = await c.post(
                "/v1/chat/completions",
                json=chat(f"fc:local/{model}"),
                headers=admin({"FC-Customer": who}),
            )
            assert r.headers["FC-Cost-USD"] == "0.2"
            prices[(who, model)] = r.headers["FC-Price-USD"]
    assert prices == {
        ("plain", "llama"): "0.4",
        ("plain", "other"): "0.25",
        ("plain", "third"): "0.6",
        ("special", "llama"): "0.8",
    }


async def test_stream_relays_chunks_and_final_usage(local: Any, upstream: FakeUpstream) -> None:
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "llama",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
        }
        for word in ("Hel", "lo")
    ]
    usage_chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "llama",
        "choices": [],
        "usage": completion(100, 2)["usage"],
    }
    body = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in [*chunks, usage_chunk])
    upstream.add(pieces=[body, b"data: [DONE]\n\n"], reusable=True)
    cus = await new_customer(local)
    for wants_usage in (True, False):
        extra: dict[str, Any] = {"stream": True}
        if wants_usage:
            extra["stream_options"] = {"include_usage": True}
        r = await local.post(
            "/v1/chat/completions", json=chat(**extra), headers=admin({"FC-Customer": cus["id"]})
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        parsed = [json.loads(e) for e in events[:-1]]
        assert [p["choices"][0]["delta"]["content"] for p in parsed if p["choices"]] == [
            "Hel",
            "lo",
        ]
        usage = [p for p in parsed if p.get("usage")]
        if wants_usage:
            assert len(usage) == 1
            assert usage[0]["usage"]["cost_usd"] == pytest.approx(100 * 0.2e-6 + 2 * 0.6e-6)
        else:
            assert usage == []  # Ringside asked for usage itself and strips it again
    # Ringside always asked the upstream for usage
    assert len(upstream.requests) == 2
    for req in upstream.requests:
        assert req.json()["stream_options"] == {"include_usage": True}
    total = (await local.get(f"/v1/usage?customer_id={cus['id']}", headers=admin())).json()
    assert total["requests"] == 2 and total["output_tokens"] == 4


async def test_cut_stream_is_charged_for_what_was_produced(local: Any) -> None:
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions",
        json=chat(
            "fc:mock/mock-fast",
            stream=True,
            messages=[{"role": "user", "content": "go [mock:cut=5] [mock:tokens=40]"}],
        ),
        headers=admin({"FC-Customer": cus["id"]}),
    )
    assert r.status_code == 200
    assert '"upstream_error"' in r.text and "[DONE]" not in r.text
    log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
    assert log["status"] == "cut"
    assert log["output_tokens"] == 5 and log["cost_usd"] > 0


def refused_url() -> str:
    """A loopback address nothing listens on: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("500", 502, "upstream_error"),
        ("503", 502, "upstream_error"),
        ("429", 429, "upstream_rate_limited"),
        ("timeout", 504, "upstream_timeout"),
        ("connect", 502, "upstream_error"),
    ],
)
async def test_upstream_failures_are_mapped_and_not_charged(
    gateway_factory: Any, upstream: FakeUpstream, kind: str, status: int, code: str
) -> None:
    base_url, timeout_s = upstream.url, 5.0
    if kind == "timeout":
        upstream.add(hang=True)  # reads the request, never answers
        timeout_s = 0.3
    elif kind == "connect":
        base_url = refused_url()
    else:
        upstream.add(status=int(kind), json={"error": {"message": "boom"}})
    gw = gateway_factory(local_config(base_url, timeout_s), env={"LOCAL_API_KEY": "sk-local"})
    async with AsyncTestClient(app=create_app(gw)) as local:
        cus = await new_customer(local, budget_usd=1)
        r = await local.post(
            "/v1/chat/completions", json=chat(), headers=admin({"FC-Customer": cus["id"]})
        )
        assert r.status_code == status
        assert r.json()["error"]["code"] == code
        assert r.headers["FC-Request-Id"].startswith("req_")
        assert "sk-local" not in r.text
        log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
        assert log["status"] == "error" and log["cost_usd"] == 0 and log["error_code"] == code
        c = (await local.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
        assert c["budget"]["spent_usd"] == 0 and c["budget"]["held_usd"] == 0


async def test_stream_upstream_error_before_first_byte(local: Any, upstream: FakeUpstream) -> None:
    upstream.add(status=500, json={"error": {"message": "down"}})
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions", json=chat(stream=True), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"


async def test_customer_rules(local: Any) -> None:
    body = chat("fc:mock/mock-fast")
    r = await local.post("/v1/chat/completions", json=body, headers=admin())
    assert r.status_code == 400 and r.json()["error"]["code"] == "customer_required"
    r = await local.post("/v1/chat/completions", json=body, headers=admin({"FC-Customer": "ghost"}))
    assert r.status_code == 404 and r.json()["error"]["code"] == "customer_not_found"
    cus = await new_customer(local, external_id="ext-42")
    r = await local.post(
        "/v1/chat/completions", json=body, headers=admin({"FC-Customer": "ext-42"})
    )
    assert r.status_code == 200
    await local.patch(f"/v1/customers/{cus['id']}", json={"status": "suspended"}, headers=admin())
    r = await local.post(
        "/v1/chat/completions", json=body, headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "customer_suspended"
    await local.patch(f"/v1/customers/{cus['id']}", json={"status": "active"}, headers=admin())
    await local.delete(f"/v1/customers/{cus['id']}", headers=admin())
    r = await local.post(
        "/v1/chat/completions", json=body, headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "customer_archived"
    # its usage stays queryable
    total = (await local.get(f"/v1/usage?customer_id={cus['id']}", headers=admin())).json()
    assert total["requests"] == 1


async def test_untagged_allowed_when_configured(gateway_factory: Any) -> None:
    gw = gateway_factory('[billing]\nuntagged = "allow"\n')
    async with AsyncTestClient(app=create_app(gw)) as c:
        r = await c.post("/v1/chat/completions", json=chat("fc:mock/mock-fast"), headers=admin())
        assert r.status_code == 200
        log = (await c.get("/v1/requests", headers=admin())).json()["data"][0]
        assert log["customer_id"] is None and log["cost_usd"] > 0
        usage = (await c.get("/v1/usage?group_by=customer", headers=admin())).json()
        assert usage["requests"] == 1 and usage["breakdown"][0]["customer_id"] is None


async def test_unknown_price_and_model_errors(local: Any) -> None:
    cus = await new_customer(local)
    h = admin({"FC-Customer": cus["id"]})
    r = await local.post("/v1/chat/completions", json=chat("fc:local/unpriced"), headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_price_unknown"
    r = await local.post("/v1/chat/completions", json=chat("fc:nowhere/x"), headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = await local.post("/v1/chat/completions", json=chat("gpt-4o"), headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = await local.post(
        "/v1/chat/completions", json=chat("fc:mock/mock-fast", max_tokens=-1), headers=h
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


async def test_models_list_and_embeddings(local: Any) -> None:
    r = await local.get("/v1/models", headers=admin())
    ids = {m["id"] for m in r.json()["data"]}
    assert {"fc:mock/mock-fast", "fc:local/llama"} <= ids
    # the official APIs refuse calls without a key, so their catalogs are not advertised
    assert not any(i.startswith(("fc:openai/", "fc:anthropic/")) for i in ids)
    cus = await new_customer(local)
    r = await local.post(
        "/v1/embeddings",
        json={"model": "fc:mock/mock-embed", "input": ["a", "bb"]},
        headers=admin({"FC-Customer": cus["id"]}),
    )
    assert r.status_code == 200
    assert len(r.json()["data"]) == 2 and r.json()["usage"]["cost_usd"] > 0


async def test_usage_grouping_and_time_filters(local: Any) -> None:
    a = await new_customer(local, external_id="ga")
    b = await new_customer(local, external_id="gb")
    for cus, model in ((a, "mock-fast"), (a, "mock-smart"), (b, "mock-fast")):
        r = await local.post(
            "/v1/chat/completions",
            json=chat(f"fc:mock/{model}"),
            headers=admin({"FC-Customer": cus["id"]}),
        )
        assert r.status_code == 200
    by_model = (await local.get("/v1/usage?group_by=model", headers=admin())).json()
    assert {g["model"]: g["requests"] for g in by_model["breakdown"]} == {
        "fc:mock/mock-fast": 2,
        "fc:mock/mock-smart": 1,
    }
    by_customer = (await local.get("/v1/usage?group_by=customer", headers=admin())).json()
    assert sum(g["requests"] for g in by_customer["breakdown"]) == 3
    total = by_customer["total_cost_usd"]
    assert sum(Decimal(str(g["total_cost_usd"])) for g in by_customer["breakdown"]) == Decimal(
        str(total)
    )
    by_day = (
        await local.get("/v1/usage?group_by=day&since=2020-01-01T00:00:00Z", headers=admin())
    ).json()
    assert by_day["requests"] == 3 and len(by_day["breakdown"]) == 1
    precise = (await local.get("/v1/usage?since=2020-01-01T10:30:00Z", headers=admin())).json()
    assert precise["requests"] == 3  # served from the request log
    future = (await local.get("/v1/usage?since=2999-01-01", headers=admin())).json()
    assert future["requests"] == 0
    bad = await local.get("/v1/usage?since=yesterday", headers=admin())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    bad = await local.get("/v1/usage?group_by=week", headers=admin())
    assert bad.status_code == 400
    page = (await local.get(f"/v1/requests?customer_id={a['id']}&limit=1", headers=admin())).json()
    assert page["has_more"] is True and len(page["data"]) == 1
    nxt = (
        await local.get(
            f"/v1/requests?customer_id={a['id']}&limit=1&starting_after={page['data'][0]['id']}",
            headers=admin(),
        )
    ).json()
    assert nxt["has_more"] is False and nxt["data"][0]["id"] != page["data"][0]["id"]


@pytest.mark.parametrize("upstream_status", [401, 403])
async def test_upstream_auth_failure_has_its_own_code(
    local: Any, upstream: FakeUpstream, upstream_status: int
) -> None:
    # The upstream echoes the key it was given, as some do: it must not reach the client.
    upstream.add(status=upstream_status, json={"error": {"message": "bad key sk-local"}})
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions", json=chat(), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_auth_failed"
    # The upstream's own status is kept in the message, for the operator.
    assert f"({upstream_status})" in r.json()["error"]["message"]
    assert "sk-local" not in r.text
    log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
    assert log["status"] == "error" and log["cost_usd"] == 0


async def test_402_carries_the_request_id(local: Any) -> None:
    cus = await new_customer(local, prepaid=True)
    r = await local.post(
        "/v1/chat/completions",
        json=chat("fc:mock/mock-fast"),
        headers=admin({"FC-Customer": cus["id"]}),
    )
    assert r.status_code == 402
    refused = (await local.get("/v1/requests?status=refused", headers=admin())).json()["data"]
    assert r.headers["FC-Request-Id"] == refused[0]["id"]


async def test_models_list_includes_catalogs_of_configured_providers(gateway_factory: Any) -> None:
    gw = gateway_factory(env={"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "ak-x"})
    async with AsyncTestClient(app=create_app(gw)) as c:
        ids = {m["id"] for m in (await c.get("/v1/models", headers=admin())).json()["data"]}
    assert {"fc:openai/gpt-4o-mini", "fc:anthropic/claude-sonnet-4-5"} <= ids


async def test_usage_on_the_last_content_chunk_is_billed(
    local: Any, upstream: FakeUpstream
) -> None:
    last = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "llama",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": completion(40, 3)["usage"],
    }
    upstream.add(pieces=[*sse_bytes(last), b"data: [DONE]\n\n"])
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions", json=chat(stream=True), headers=admin({"FC-Customer": cus["id"]})
    )
    assert '"hi"' in r.text
    log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
    assert (log["input_tokens"], log["output_tokens"], log["status"]) == (40, 3, "ok")


async def test_bad_stream_options_are_400_and_leave_no_hold(local: Any) -> None:
    cus = await new_customer(local, budget_usd=0.01)
    for bad in ("yes", [1], 5):
        r = await local.post(
            "/v1/chat/completions",
            json=chat("fc:mock/mock-fast", stream=True, stream_options=bad),
            headers=admin({"FC-Customer": cus["id"]}),
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"
    c = (await local.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
    assert c["budget"]["held_usd"] == 0


async def test_usage_breakdown_uses_model_ids_and_plus_offsets(local: Any) -> None:
    cus = await new_customer(local)
    await local.post(
        "/v1/chat/completions",
        json=chat("fc:mock/mock-fast"),
        headers=admin({"FC-Customer": cus["id"]}),
    )
    u = (
        await local.get("/v1/usage?group_by=model&since=2020-01-01T10:00:00+00:00", headers=admin())
    ).json()
    assert [g["model"] for g in u["breakdown"]] == ["fc:mock/mock-fast"]


def content_chunk(text: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "llama",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


@pytest.mark.parametrize(("end", "code"), [("cut", "upstream_error"), ("hang", "upstream_timeout")])
async def test_real_upstream_stream_cut_is_charged_for_what_arrived(
    gateway_factory: Any, upstream: FakeUpstream, end: Literal["cut", "hang"], code: str
) -> None:
    """The connection drops (or goes silent) after three content chunks, before any usage."""
    upstream.add(
        pieces=sse_bytes(content_chunk("Hel"), content_chunk("lo wor"), content_chunk("ld!!")),
        end=end,
    )
    config = local_config(upstream.url, timeout_s=0.3 if end == "hang" else 5)
    gw = gateway_factory(config, env={"LOCAL_API_KEY": "sk-local"})
    async with AsyncTestClient(app=create_app(gw)) as local:
        cus = await new_customer(local)
        r = await local.post(
            "/v1/chat/completions",
            json=chat(stream=True),
            headers=admin({"FC-Customer": cus["id"]}),
        )
        assert r.status_code == 200
        events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
        assert "[DONE]" not in events
        relayed = [json.loads(e) for e in events[:-1]]
        assert [p["choices"][0]["delta"]["content"] for p in relayed] == ["Hel", "lo wor", "ld!!"]
        assert json.loads(events[-1])["error"]["code"] == code
        log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
        # One token per short chunk, as counted while relaying; input estimated from the bound.
        assert (log["status"], log["output_tokens"]) == ("cut", 3)
        assert log["cost_usd"] > 0
        c = (await local.get(f"/v1/customers/{cus['id']}", headers=admin())).json()
        assert c["budget"]["held_usd"] == 0


async def test_huge_slow_upstream_body_is_relayed_and_metered(
    local: Any, upstream: FakeUpstream
) -> None:
    body = completion(1000, 500)
    text = "lorem ipsum " * 250_000  # a 3 MB answer, written 8 KB at a time
    body["choices"][0]["message"]["content"] = text
    raw = json.dumps(body).encode()
    upstream.add(
        pieces=[raw[i : i + 8192] for i in range(0, len(raw), 8192)],
        headers={"content-type": "application/json"},
    )
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions", json=chat(), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == text
    assert r.headers["FC-Cost-USD"] == "0.0005"
    log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
    assert (log["input_tokens"], log["output_tokens"], log["status"]) == (1000, 500, "ok")


async def test_huge_stream_event_is_relayed_whole(local: Any, upstream: FakeUpstream) -> None:
    text = "z" * 1_000_000
    usage_chunk = {**content_chunk(""), "choices": [], "usage": completion(10, 7)["usage"]}
    raw = b"".join(sse_bytes(content_chunk(text), usage_chunk)) + b"data: [DONE]\n\n"
    upstream.add(pieces=[raw[i : i + 4096] for i in range(0, len(raw), 4096)])
    cus = await new_customer(local)
    r = await local.post(
        "/v1/chat/completions", json=chat(stream=True), headers=admin({"FC-Customer": cus["id"]})
    )
    assert r.status_code == 200
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == text
    log = (await local.get("/v1/requests", headers=admin())).json()["data"][0]
    assert (log["input_tokens"], log["output_tokens"], log["status"]) == (10, 7, "ok")
