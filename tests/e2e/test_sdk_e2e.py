"""The official SDKs as clients of a running `ringside serve`, with a recording fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.upstream import FakeUpstream

pytestmark = pytest.mark.e2e

CONFIG = """
[billing]
markup = 1.25

[prices."openai/gpt-4o"]
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10

[prices."anthropic/claude-sonnet-4-5"]
input_usd_per_mtok = 3
output_usd_per_mtok = 15
"""


@pytest.fixture
def stack(ringside_server: Any) -> Iterator[tuple[Any, FakeUpstream, str]]:
    up = FakeUpstream().start()
    server = ringside_server(
        CONFIG,
        env={
            "OPENAI_BASE_URL": f"{up.url}/v1",
            "OPENAI_API_KEY": "sk-upstream",
            "ANTHROPIC_BASE_URL": up.url,
            "ANTHROPIC_API_KEY": "ak-upstream",
        },
    )
    r = httpx.post(
        f"{server.base_url}/v1/customers",
        headers=server.headers(),
        json={"external_id": "sdk-user", "name": "SDK"},
    )
    assert r.status_code == 201
    key = httpx.post(
        f"{server.base_url}/v1/keys", headers=server.headers(), json={"name": "sdk"}
    ).json()["key"]
    yield server, up, key
    up.stop()


def client(server: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1",
        api_key=key,
        default_headers={"FC-Customer": "sdk-user"},
        max_retries=0,
    )


@pytest.mark.parametrize(
    ("model", "in_rate", "out_rate"),
    [("fc:openai/gpt-4o", "2.5", "10"), ("fc:anthropic/claude-sonnet-4-5", "3", "15")],
)
def test_non_stream(stack: Any, model: str, in_rate: str, out_rate: str) -> None:
    server, up, key = stack
    oc = client(server, key)
    raw = oc.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "abcd [tokens=7]"}], max_tokens=20
    )
    resp = raw.parse()
    text = "abcd [tokens=7]"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == len(text) and resp.usage.completion_tokens == 7
    cost = (len(text) * Decimal(in_rate) + 7 * Decimal(out_rate)) / 1_000_000
    assert Decimal(raw.headers["FC-Cost-USD"]) == cost
    assert Decimal(raw.headers["FC-Price-USD"]) == cost * Decimal("1.25")
    extra = resp.usage.model_extra or {}
    assert Decimal(str(extra["cost_usd"])) == cost
    sent = up.requests[-1]
    if "anthropic" in model:
        assert sent["path"] == "/v1/messages"
        assert sent["headers"]["x-api-key"] == "ak-upstream"
        assert sent["body"]["model"] == "claude-sonnet-4-5" and sent["body"]["max_tokens"] == 20
    else:
        assert sent["headers"]["authorization"] == "Bearer sk-upstream"
        assert sent["body"]["model"] == "gpt-4o"


@pytest.mark.parametrize("model", ["fc:openai/gpt-4o", "fc:anthropic/claude-sonnet-4-5"])
def test_stream_with_usage(stack: Any, model: str) -> None:
    server, up, key = stack
    oc = client(server, key)
    chunks = list(
        oc.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hi [tokens=5]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.count("tok") == 5
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == 5
    assert (usage[0].model_extra or {})["cost_usd"] > 0
    assert up.requests[-1]["body"].get("stream") is True


def test_stream_without_usage_and_totals(stack: Any) -> None:
    server, up, key = stack
    oc = client(server, key)
    chunks = list(
        oc.chat.completions.create(
            model="fc:openai/gpt-4o",
            messages=[{"role": "user", "content": "x [tokens=3]"}],
            stream=True,
        )
    )
    assert all(c.usage is None for c in chunks)
    assert up.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    oc.chat.completions.create(
        model="fc:openai/gpt-4o", messages=[{"role": "user", "content": "y [tokens=4]"}]
    )
    usage = httpx.get(
        f"{server.base_url}/v1/usage?customer_id=sdk-user", headers=server.headers()
    ).json()
    log = httpx.get(
        f"{server.base_url}/v1/requests?customer_id=sdk-user", headers=server.headers()
    ).json()["data"]
    assert usage["requests"] == 2 == len(log)
    assert Decimal(str(usage["total_cost_usd"])) == sum(Decimal(str(r["cost_usd"])) for r in log)


def test_errors_are_typed_in_the_sdk(stack: Any) -> None:
    server, up, key = stack
    oc = client(server, key)
    with pytest.raises(openai.InternalServerError) as info:
        oc.chat.completions.create(
            model="fc:openai/gpt-4o", messages=[{"role": "user", "content": "[fail=500]"}]
        )
    assert info.value.status_code == 502
    with pytest.raises(openai.RateLimitError):
        oc.chat.completions.create(
            model="fc:openai/gpt-4o", messages=[{"role": "user", "content": "[fail=429]"}]
        )
    httpx.patch(
        f"{server.base_url}/v1/customers/sdk-user", headers=server.headers(), json={"budget_usd": 0}
    )
    calls_before = up.count()
    strict = openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=key, default_headers={"FC-Customer": "sdk-user"}
    )  # default retries
    with pytest.raises(openai.APIStatusError) as info402:
        strict.chat.completions.create(
            model="fc:openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert info402.value.status_code == 402
    assert info402.value.code == "customer_budget_exceeded"
    assert up.count() == calls_before  # refused calls never reach the upstream
    models = [m.id for m in oc.models.list()]
    assert "fc:openai/gpt-4o" in models


def test_anthropic_sdk_through_messages_passthrough(stack: Any) -> None:
    import anthropic

    server, up, key = stack
    ac = anthropic.Anthropic(
        base_url=server.base_url,
        api_key=key,
        max_retries=0,
        default_headers={"FC-Customer": "sdk-user"},
    )
    raw = ac.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=30,
        messages=[{"role": "user", "content": "abc [tokens=6]"}],
    )
    msg = raw.parse()
    assert msg.usage.output_tokens == 6 and msg.content[0].type == "text"
    cost = (len("abc [tokens=6]") * Decimal(3) + 6 * Decimal(15)) / 1_000_000
    assert Decimal(raw.headers["FC-Cost-USD"]) == cost
    sent = up.requests[-1]
    assert sent["path"] == "/v1/messages" and sent["body"]["model"] == "claude-sonnet-4-5"
    assert sent["headers"]["x-api-key"] == "ak-upstream"  # the upstream key, not the app key
    with ac.messages.stream(
        model="fc:anthropic/claude-sonnet-4-5",
        max_tokens=30,
        messages=[{"role": "user", "content": "hi [tokens=4]"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.count("tok") == 4 and final.usage.output_tokens == 4
    log = httpx.get(
        f"{server.base_url}/v1/requests?customer_id=sdk-user", headers=server.headers()
    ).json()["data"]
    assert [r["status"] for r in log[:2]] == ["ok", "ok"] and log[0]["output_tokens"] == 4
    with pytest.raises(anthropic.APIStatusError) as info:
        ac.messages.create(
            model="fc:openai/gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 400
