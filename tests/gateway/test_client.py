"""The Python client: retries, idempotency keys, typed errors and money parsing against
scripted transports, then the real app in-process for budgets, wallets and pagination."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient, TestClient

from gateway.app import create_app
from gateway.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncRingside,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CustomerArchived,
    CustomerBudgetExceeded,
    CustomerExists,
    CustomerNotFound,
    CustomerRateLimited,
    CustomerRequired,
    CustomerSuspended,
    CustomerWalletEmpty,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InternalServerError,
    InvalidAmount,
    KeyRateLimited,
    LedgerUnavailable,
    ModelNotAllowed,
    ModelNotFound,
    ModelPriceUnknown,
    NotFoundError,
    PaymentRequired,
    PermissionDeniedError,
    PlanInUse,
    RateLimitError,
    Ringside,
    RingsideError,
    RingsideObject,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from gateway.wiring import Gateway
from tests.conftest import ADMIN_KEY

BASE = "http://ringside.test"


def envelope(
    status: int, code: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    err = {"type": "api_error", "code": code, "message": f"{code} happened", "param": None}
    return httpx.Response(status, json={"error": {**err, **extra}}, headers=headers)


class Script:
    """A scripted transport: answers (or raises) in order and records every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        # A fresh copy each time: a response's stream can be consumed once.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def sync(self, **kw: Any) -> tuple[Ringside, list[float]]:
        client = Ringside(
            BASE, "test-key", http_client=httpx.Client(transport=httpx.MockTransport(self)), **kw
        )
        sleeps: list[float] = []
        client._sleep = sleeps.append
        return client, sleeps

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


OK_CUSTOMER = httpx.Response(200, json={"id": "cus_1", "object": "customer"})
OK_WALLET = httpx.Response(200, json={"object": "wallet", "balance_usd": 5})
OK_CHAT = httpx.Response(
    200,
    json={
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "cost_usd": 0.000002},
    },
    headers={"FC-Request-Id": "req_1", "FC-Cost-USD": "0.000002", "FC-Price-USD": "0.0000025"},
)
CHAT = {"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------------------- retries


def test_safe_calls_retry_5xx_with_growing_jittered_backoff() -> None:
    script = Script(
        envelope(503, "ledger_unavailable"), envelope(500, "internal_error"), OK_CUSTOMER
    )
    client, sleeps = script.sync()
    assert client.customers.retrieve("cus_1").id == "cus_1"
    assert len(script.requests) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_retries_stop_at_max_retries() -> None:
    script = Script(envelope(502, "upstream_error"))
    client, sleeps = script.sync(max_retries=3)
    with pytest.raises(UpstreamError):
        client.usage.retrieve()
    assert len(script.requests) == 4 and len(sleeps) == 3
    script = Script(envelope(500, "internal_error"))
    client, _ = script.sync(max_retries=0)
    with pytest.raises(InternalServerError):
        client.usage.retrieve()
    assert len(script.requests) == 1


def test_retry_after_header_sets_the_delay() -> None:
    script = Script(envelope(429, "upstream_rate_limited", {"Retry-After": "1.5"}), OK_CHAT)
    client, sleeps = script.sync()
    client.chat.completions.create(**CHAT)
    assert sleeps == [1.5]


def test_topup_keeps_one_idempotency_key_across_retries() -> None:
    script = Script(httpx.ReadError("connection reset"), envelope(503, "x"), OK_WALLET)
    client, _ = script.sync()
    assert client.wallets.topup("cus_1", 5).balance_usd == Decimal(5)
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(script.requests) == 3 and len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    client.customers.wallet.topup("cus_1", 5, idempotency_key="pay_123")
    assert script.requests[-1].headers["Idempotency-Key"] == "pay_123"
    client.wallets.topup("cus_1", 5)
    client.wallets.topup("cus_1", 5)
    assert (
        script.requests[-1].headers["Idempotency-Key"]
        != script.requests[-2].headers["Idempotency-Key"]
    )


def test_keyed_post_is_retried_while_the_key_is_in_progress() -> None:
    script = Script(envelope(409, "idempotency_key_in_progress"), OK_CUSTOMER)
    client, _ = script.sync()
    client.customers.create(external_id="u1", name="U")
    assert len(script.requests) == 2
    assert (
        script.requests[0].headers["Idempotency-Key"]
        == script.requests[1].headers["Idempotency-Key"]
    )


@pytest.mark.parametrize(
    "answer",
    [
        envelope(402, "customer_budget_exceeded", {"x-should-retry": "false"}),
        envelope(402, "customer_wallet_empty"),
        envelope(400, "invalid_request"),
        envelope(401, "invalid_api_key"),
        envelope(403, "customer_suspended"),
        envelope(404, "customer_not_found"),
        envelope(409, "idempotency_key_reused"),
        envelope(503, "ledger_unavailable", {"x-should-retry": "false"}),
    ],
)
def test_4xx_and_should_retry_false_are_never_retried(answer: httpx.Response) -> None:
    script = Script(answer, OK_CHAT)
    client, _ = script.sync()
    with pytest.raises(RingsideError):
        client.chat.completions.create(**CHAT)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("answer", "attempts", "error"),
    [
        # Never left the process: resending cannot double-charge.
        (httpx.ConnectError("refused"), 3, APIConnectionError),
        (httpx.ConnectTimeout("slow connect"), 3, APITimeoutError),
        # Ringside answered that it charged nothing: resending is safe.
        (envelope(429, "upstream_rate_limited"), 3, UpstreamRateLimited),
        (envelope(502, "upstream_error"), 3, UpstreamError),
        (envelope(504, "upstream_timeout"), 3, UpstreamTimeout),
        (envelope(503, "ledger_unavailable"), 3, LedgerUnavailable),
        # It may have been charged: never resent.
        (httpx.ReadTimeout("no answer"), 1, APITimeoutError),
        (httpx.RemoteProtocolError("dropped"), 1, APIConnectionError),
        (envelope(500, "internal_error"), 1, InternalServerError),
        (httpx.Response(502, text="<html>bad gateway</html>"), 1, InternalServerError),
    ],
)
def test_proxy_calls_are_resent_only_when_they_cannot_double_charge(
    answer: httpx.Response | Exception, attempts: int, error: type[RingsideError]
) -> None:
    script = Script(answer)
    client, _ = script.sync()
    with pytest.raises(error):
        client.chat.completions.create(**CHAT)
    assert len(script.requests) == attempts
    script = Script(answer)
    client, _ = script.sync()
    with pytest.raises(error):
        client.embeddings.create(model="fc:mock/mock-embed", input="x")
    assert len(script.requests) == attempts


def test_key_creation_is_not_resent_after_it_may_have_arrived() -> None:
    script = Script(httpx.ReadError("reset"))
    client, _ = script.sync()
    with pytest.raises(APIConnectionError):
        client.keys.create("app")
    assert len(script.requests) == 1
    script = Script(httpx.ConnectError("refused"), httpx.Response(201, json={"id": "key_1"}))
    client, _ = script.sync()
    assert client.keys.create("app").id == "key_1"


def test_reads_are_resent_after_transport_errors() -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x"), OK_CUSTOMER)
    client, _ = script.sync()
    assert client.customers.update("cus_1", name="N").id == "cus_1"
    assert len(script.requests) == 3


# ---------------------------------------------------------------------------- typed errors


@pytest.mark.parametrize(
    ("status", "code", "cls", "base"),
    [
        (400, "invalid_amount", InvalidAmount, BadRequestError),
        (400, "model_price_unknown", ModelPriceUnknown, BadRequestError),
        (400, "customer_required", CustomerRequired, BadRequestError),
        (400, "invalid_json", BadRequestError, RingsideError),
        (401, "invalid_api_key", AuthenticationError, RingsideError),
        (403, "insufficient_permissions", PermissionDeniedError, RingsideError),
        (403, "customer_suspended", CustomerSuspended, PermissionDeniedError),
        (403, "customer_archived", CustomerArchived, PermissionDeniedError),
        (402, "customer_budget_exceeded", CustomerBudgetExceeded, PaymentRequired),
        (402, "customer_wallet_empty", CustomerWalletEmpty, PaymentRequired),
        (404, "customer_not_found", CustomerNotFound, NotFoundError),
        (404, "model_not_found", ModelNotFound, NotFoundError),
        (404, "not_found", NotFoundError, RingsideError),
        (409, "customer_exists", CustomerExists, ConflictError),
        (409, "idempotency_key_reused", IdempotencyKeyReused, ConflictError),
        (409, "idempotency_key_in_progress", IdempotencyKeyInProgress, ConflictError),
        (409, "plan_in_use", PlanInUse, ConflictError),
        (403, "model_not_allowed", ModelNotAllowed, PermissionDeniedError),
        (429, "customer_rate_limited", CustomerRateLimited, RateLimitError),
        (429, "key_rate_limited", KeyRateLimited, RateLimitError),
        (429, "upstream_rate_limited", UpstreamRateLimited, RateLimitError),
        (502, "upstream_error", UpstreamError, InternalServerError),
        (504, "upstream_timeout", UpstreamTimeout, UpstreamError),
        (503, "ledger_unavailable", LedgerUnavailable, InternalServerError),
        (500, "internal_error", InternalServerError, RingsideError),
        (422, "something_new", BadRequestError, RingsideError),
        (402, "something_new", PaymentRequired, RingsideError),
    ],
)
def test_each_error_code_has_its_type(
    status: int, code: str, cls: type[RingsideError], base: type[RingsideError]
) -> None:
    script = Script(envelope(status, code, {"FC-Request-Id": "req_9"}, param="amount_usd"))
    client, _ = script.sync(max_retries=0)
    with pytest.raises(cls) as info:
        client.customers.retrieve("cus_1")
    err = info.value
    assert type(err) is cls and isinstance(err, base)
    assert (err.code, err.status_code, err.param, err.request_id) == (
        code,
        status,
        "amount_usd",
        "req_9",
    )
    assert err.message == f"{code} happened" and code in str(err)


def test_402_carries_the_servers_fields_as_exact_money() -> None:
    answer = envelope(
        402,
        "customer_budget_exceeded",
        customer_id="cus_1",
        external_id="u1",
        monthly_budget_usd=25,
        spent_usd=24.999999999,
        remaining_usd=0.000000001,
        period="2026-04",
    )
    client, _ = Script(answer).sync()
    with pytest.raises(CustomerBudgetExceeded) as info:
        client.chat.completions.create(**CHAT)
    err = info.value
    assert err.customer_id == "cus_1" and err.external_id == "u1" and err.period == "2026-04"
    assert err.monthly_budget_usd == Decimal(25) and isinstance(err.monthly_budget_usd, Decimal)
    assert err.spent_usd == Decimal("24.999999999")
    assert err.remaining_usd == Decimal("0.000000001")
    assert err.fields["spent_usd"] == Decimal("24.999999999")
    assert err.balance_usd is None  # not a wallet refusal


def test_an_answer_without_the_envelope_is_still_typed() -> None:
    client, _ = Script(httpx.Response(404, text="nothing here")).sync()
    with pytest.raises(NotFoundError) as info:
        client.customers.retrieve("x")
    assert info.value.message == "nothing here" and info.value.code is None


def test_a_missing_key_is_named_in_the_401(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGSIDE_API_KEY", raising=False)
    script = Script(envelope(401, "invalid_api_key"))
    client = Ringside(BASE, http_client=httpx.Client(transport=httpx.MockTransport(script)))
    with pytest.raises(AuthenticationError, match="RINGSIDE_API_KEY"):
        client.usage.retrieve()
    assert "authorization" not in script.requests[0].headers


# ---------------------------------------------------------------------------- wire format


def test_configuration_comes_from_arguments_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RINGSIDE_BASE_URL", "http://env.test:9/v1/")
    monkeypatch.setenv("RINGSIDE_API_KEY", "env-key")
    script = Script(OK_CUSTOMER)
    client = Ringside(http_client=httpx.Client(transport=httpx.MockTransport(script)))
    client.customers.retrieve("org/42 ü")
    request = script.requests[0]
    assert str(request.url) == "http://env.test:9/v1/customers/org%2F42%20%C3%BC"
    assert request.headers["authorization"] == "Bearer env-key"
    monkeypatch.delenv("RINGSIDE_BASE_URL")
    assert Ringside(api_key="k").base_url == "http://127.0.0.1:8787"
    assert Ringside("http://other:1", "arg-key").api_key == "arg-key"


def test_money_is_sent_and_parsed_exactly() -> None:
    # Written as text: a Python float could not even hold these amounts.
    body = (
        '{"object": "usage", "requests": 3, "total_cost_usd": 0.1,'
        ' "total_price_usd": 12345678.123456789, "margin_usd": 0,'
        ' "breakdown": [{"day": "2026-04-01", "total_cost_usd": 0.1, "share": 0.5}]}'
    )
    script = Script(httpx.Response(200, content=body), OK_CUSTOMER)
    client, _ = script.sync()
    usage = client.usage.retrieve(customer_id="cus_1", since="2026-04-01", group_by="day")
    assert usage.total_cost_usd == Decimal("0.1")
    assert usage.total_price_usd == Decimal("12345678.123456789")
    assert usage.margin_usd == 0 and isinstance(usage.margin_usd, Decimal)
    assert usage.requests == 3 and isinstance(usage.requests, int)
    assert usage.breakdown[0].share == 0.5 and isinstance(usage.breakdown[0].share, float)
    assert int(usage.total_price_usd * 100) == 1234567812
    assert dict(script.requests[0].url.params) == {
        "customer_id": "cus_1",
        "since": "2026-04-01",
        "group_by": "day",
    }
    client.customers.create(
        external_id=42,
        name="N",
        budget_usd=0.1 + 0.2,
        low_balance_threshold_usd=Decimal("1.000000001"),
        metadata={"ratio": 0.7},
    )
    raw = script.requests[-1].content.decode()
    assert '"budget_usd":0.3,' in raw and '"low_balance_threshold_usd":1.000000001' in raw
    assert '"external_id":"42"' in raw and '"ratio":0.7' in raw


def test_results_read_like_the_openai_sdks() -> None:
    client, _ = Script(OK_CHAT).sync()
    resp = client.chat.completions.create(**CHAT, extra_headers={"FC-Customer": "u1"})
    assert resp.choices[0].message.content == "hi" and resp["choices"][0]["index"] == 0
    assert resp.choices[0].message.tool_calls is None and resp.choices[0].finish_reason is None
    assert resp.usage.cost_usd == Decimal("0.000002")
    assert resp.request_id == "req_1" and resp.price_usd == Decimal("0.0000025")
    assert resp.wallet_balance_usd is None
    assert "request_id" not in resp.to_dict() and resp.to_dict()["usage"]["prompt_tokens"] == 3
    with pytest.raises(AttributeError, match="no field 'nope'"):
        _ = resp.nope
    nested = resp.to_dict()
    nested["choices"][0]["message"]["content"] = "changed"
    assert resp.choices[0].message.content == "hi"
    assert RingsideObject({"a": 1}) == {"a": 1} and dict(RingsideObject({"a": 1})) == {"a": 1}
    assert json.loads(resp.usage.to_json())["cost_usd"] == 0.000002


def test_customer_header_and_extra_body_reach_the_request() -> None:
    script = Script(OK_CHAT)
    client, _ = script.sync()
    client.chat.completions.create(**CHAT, customer=42, max_tokens=5, extra_body={"seed": 1})
    request = script.requests[0]
    assert request.headers["FC-Customer"] == "42"
    assert script.bodies()[0] == {**CHAT, "max_tokens": 5, "seed": 1}


def sse(*events: dict[str, Any] | str) -> httpx.Response:
    text = "".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events
    ).encode()
    return httpx.Response(
        200,
        content=text,
        headers={
            "content-type": "text/event-stream",
            "FC-Request-Id": "req_s",
            "FC-Wallet-Balance-USD": "4.5",
        },
    )


def chunk(content: str | None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta}],
        **extra,
    }


def test_a_stream_yields_chunks_and_its_usage() -> None:
    usage = {"object": "chat.completion.chunk", "choices": [], "usage": {"cost_usd": 0.25}}
    client, _ = Script(sse(chunk("Hel"), chunk("lo"), chunk(None), usage, "[DONE]")).sync()
    stream = client.chat.completions.create(**CHAT, stream=True)
    texts = [c.choices[0].delta.content for c in stream if c.choices]
    assert texts == ["Hel", "lo", None]
    assert stream.request_id == "req_s" and stream.wallet_balance_usd == Decimal("4.5")
    assert stream.cost_usd == Decimal("0.25") and stream.usage.cost_usd == Decimal("0.25")


def test_a_cut_stream_raises_its_error_and_an_unfinished_one_says_so() -> None:
    cut = {"error": {"type": "api_error", "code": "upstream_error", "message": "cut"}}
    client, _ = Script(sse(chunk("a"), cut)).sync()
    seen: list[str] = []
    with pytest.raises(UpstreamError, match="cut"):
        for c in client.chat.completions.create(**CHAT, stream=True):
            seen.append(c.choices[0].delta.content)
    assert seen == ["a"]
    client, _ = Script(sse(chunk("a"))).sync()
    with pytest.raises(APIConnectionError, match=r"before \[DONE\]"):
        list(client.chat.completions.create(**CHAT, stream=True))


def test_a_refused_stream_raises_before_iterating() -> None:
    script = Script(envelope(402, "customer_wallet_empty", balance_usd=0))
    client, _ = script.sync()
    with pytest.raises(CustomerWalletEmpty) as info:
        client.chat.completions.create(**CHAT, stream=True)
    assert info.value.balance_usd == Decimal(0)
    assert script.requests[0].headers["accept"] == "text/event-stream"


async def test_the_async_twin_retries_with_one_key() -> None:
    script = Script(httpx.ReadError("reset"), envelope(502, "bad"), OK_WALLET)
    client = AsyncRingside(
        BASE, "k", http_client=httpx.AsyncClient(transport=httpx.MockTransport(script))
    )
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client._sleep = sleep
    wallet = await client.wallets.topup("cus_1", Decimal("2.50"), "card")
    assert wallet.balance_usd == Decimal(5) and len(sleeps) == 2
    assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1
    assert script.bodies()[0] == {"amount_usd": 2.5, "description": "card"}
    script.answers = [httpx.ReadTimeout("slow")]
    with pytest.raises(APITimeoutError):
        await client.chat.completions.create(**CHAT)
    await client.close()


def test_the_client_imports_only_httpx_and_the_standard_library() -> None:
    code = (
        "import sys\n"
        "import httpx\n"
        "before = set(sys.modules)\n"
        "import gateway.client\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'gateway'}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('gateway')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "['gateway', 'gateway.client']"]


# ---------------------------------------------------------------------------- the real app

MOCK = "fc:mock/mock-fast"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def ringside(gateway: Gateway) -> Iterator[Ringside]:
    with TestClient(app=create_app(gateway)) as http:
        yield Ringside(str(http.base_url), ADMIN_KEY, http_client=http)


def test_budget_and_wallet_refusals_are_typed(ringside: Ringside) -> None:
    tiny = ringside.customers.create(external_id="tiny", name="Tiny", budget_usd=0.00001)
    with pytest.raises(CustomerBudgetExceeded) as budget:
        ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=tiny.id)
    err = budget.value
    assert err.status_code == 402 and err.customer_id == tiny.id and err.external_id == "tiny"
    assert err.monthly_budget_usd == Decimal("0.00001") and err.spent_usd == 0
    assert err.required_usd > err.remaining_usd
    assert err.headers["x-should-retry"] == "false"

    empty = ringside.customers.create(external_id="empty", name="Empty", prepaid=True)
    with pytest.raises(CustomerWalletEmpty) as wallet:
        ringside.chat.completions.create(model=MOCK, messages=HELLO, customer="empty")
    assert wallet.value.balance_usd == 0 and wallet.value.customer_id == empty.id

    ringside.wallets.topup(empty.id, 1)
    resp = ringside.chat.completions.create(model=MOCK, messages=HELLO, customer="empty")
    assert resp.wallet_balance_usd == Decimal(1) - resp.price_usd
    assert resp.usage.price_usd == resp.price_usd and resp.request_id.startswith("req_")


def test_management_round_trip_and_its_errors(ringside: Ringside) -> None:
    cus = ringside.customers.create(
        external_id="acme", name="Acme", budget_usd=25.00, metadata={"plan": "pro"}
    )
    assert cus.monthly_budget_usd == Decimal(25) and cus.metadata.plan == "pro"
    assert ringside.customers.retrieve("acme").id == cus.id
    with pytest.raises(CustomerExists):
        ringside.customers.create(external_id="acme", name="Again")
    with pytest.raises(CustomerNotFound):
        ringside.customers.retrieve("nobody")
    for bad in (0, -1, float("nan"), float("inf"), "ten", 1_000_001):
        with pytest.raises(InvalidAmount):
            ringside.wallets.topup(cus.id, bad)
    first = ringside.wallets.topup(cus.id, 10, idempotency_key="pay-1")
    again = ringside.wallets.topup(cus.id, 10, idempotency_key="pay-1")
    assert again.transaction.id == first.transaction.id and again.idempotent_replayed
    with pytest.raises(IdempotencyKeyReused):
        ringside.wallets.topup(cus.id, 11, idempotency_key="pay-1")
    assert ringside.wallets.retrieve(cus.id).balance_usd == Decimal(10)

    assert ringside.customers.update(cus.id, status="suspended").status == "suspended"
    with pytest.raises(CustomerSuspended):
        ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=cus.id)
    ringside.customers.archive(cus.id)
    with pytest.raises(CustomerArchived):
        ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=cus.id)
    with pytest.raises(CustomerRequired):
        ringside.chat.completions.create(model=MOCK, messages=HELLO)
    with pytest.raises(ModelPriceUnknown):
        ringside.chat.completions.create(
            model="fc:openai/no-such-model-xyz", messages=HELLO, customer="acme"
        )

    app_key = ringside.keys.create("backend")
    assert app_key.key.startswith("rs_") and [k.id for k in ringside.keys.list()] == [app_key.id]
    app = Ringside(ringside.base_url, app_key.key, http_client=ringside._http)
    with pytest.raises(PermissionDeniedError):
        app.customers.list()
    assert ringside.keys.revoke(app_key.id).deleted is True
    with pytest.raises(AuthenticationError):
        app.models.list()


def test_iterating_a_list_walks_every_page(ringside: Ringside) -> None:
    made = [ringside.customers.create(external_id=f"p{i}", name=f"P{i}").id for i in range(5)]
    page = ringside.customers.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [c.id for c in page] == made[::-1]
    assert [c.id for c in ringside.customers.list(limit=100)] == made[::-1]
    for cid in made[:3]:
        ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=cid)
    requests = ringside.requests.list(limit=1)
    assert len(requests.data) == 1 and len(list(requests)) == 3
    models = {m.id for m in ringside.models.list()}
    assert MOCK in models and "fc:mock/mock-embed" in models


def test_usage_and_streams_against_the_app(ringside: Ringside) -> None:
    cus = ringside.customers.create(external_id="u", name="U", budget_usd=25)
    resp = ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=cus.id)
    stream = ringside.chat.completions.create(
        model=MOCK,
        messages=HELLO,
        customer=cus.id,
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == resp.choices[0].message.content
    assert stream.cost_usd == resp.cost_usd and stream.request_id != resp.request_id
    emb = ringside.embeddings.create(model="fc:mock/mock-embed", input=["a", "b"], customer="u")
    assert len(emb.data) == 2 and isinstance(emb.data[0].embedding[0], float)
    usage = ringside.usage.retrieve(customer_id=cus.id, since="2026-01-01")
    assert usage.requests == 3
    assert usage.total_cost_usd == resp.cost_usd * 2 + emb.cost_usd
    assert isinstance(int(usage.total_cost_usd * 100), int)


async def test_the_async_twin_against_the_app(client: AsyncTestClient[Any]) -> None:
    rs = AsyncRingside(str(client.base_url), ADMIN_KEY, http_client=client)
    made = [(await rs.customers.create(external_id=f"a{i}", name="A")).id for i in range(3)]
    assert [c.id async for c in await rs.customers.list(limit=2)] == made[::-1]
    await rs.customers.update(made[0], prepaid=True)
    with pytest.raises(CustomerWalletEmpty):
        await rs.chat.completions.create(model=MOCK, messages=HELLO, customer=made[0])
    await rs.customers.wallet.topup(made[0], 1)
    stream = await rs.chat.completions.create(
        model=MOCK, messages=HELLO, customer=made[0], stream=True
    )
    assert [c async for c in stream][-1].choices[0].finish_reason == "stop"
    assert (await rs.usage.retrieve(customer_id=made[0])).requests == 1
    assert (await rs.health()).status == "ok"


def test_plans_limits_and_allow_lists_through_the_client(ringside: Ringside) -> None:
    plan = ringside.plans.create(
        name="Free",
        external_id="free",
        allowed_models=["mock/mock-fast"],
        limits={"requests_per_minute": 1},
    )
    assert plan.id.startswith("plan_") and plan.limits.requests_per_minute == 1
    cus = ringside.customers.create(external_id="planned", name="On a plan", plan="free")
    assert cus.plan == plan.id and cus.effective.limits.requests_per_minute == 1
    ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=cus.id)
    with pytest.raises(CustomerRateLimited) as limited:
        ringside.chat.completions.create(model=MOCK, messages=HELLO, customer=cus.id)
    assert limited.value.status_code == 429 and limited.value.limit == "requests_per_minute"
    with pytest.raises(ModelNotAllowed):
        ringside.chat.completions.create(
            model="fc:mock/mock-smart", messages=HELLO, customer=cus.id
        )
    with pytest.raises(PlanInUse):
        ringside.plans.delete("free")
    updated = ringside.plans.update("free", limits={"requests_per_minute": None})
    assert updated.limits.requests_per_minute is None
    assert [p.id for p in ringside.plans.list()] == [plan.id]
    key = ringside.keys.create("limited", limits={"max_concurrent": 2})
    assert key.limits.max_concurrent == 2


def test_scoped_keys_and_the_audit_log_through_the_client(ringside: Ringside) -> None:
    billing = ringside.keys.create("finance", kind="billing")
    assert billing.kind == "billing" and billing.expires_at is None
    as_billing = Ringside(ringside.base_url, billing.key, http_client=ringside._http)
    cus = as_billing.customers.create(external_id="audited", name="Audited", prepaid=True)
    as_billing.wallets.topup(cus.id, Decimal("1.000000001"), idempotency_key="pay-77")
    with pytest.raises(PermissionDeniedError) as denied:
        as_billing.keys.list()
    assert denied.value.required_scope == "admin"
    entry = next(iter(ringside.audit_log.list(customer_id="audited", action="wallet.topup")))
    assert entry.key_id == billing.id and entry.key_kind == "billing"
    assert entry.changes.balance_usd == [Decimal(0), Decimal("1.000000001")]
    assert entry.idempotency_key == "pay-77"
