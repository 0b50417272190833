"""Webhooks through the real app: endpoints, signing, the outbox worker, retries, disabling.

A real HTTP receiver runs on loopback in a thread and checks signatures the way an
operator's billing service would, with the `standardwebhooks` package.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gateway.app import create_app
from gateway.db.models import WebhookDelivery, WebhookEndpoint
from gateway.tasks import BackgroundTasks
from gateway.webhooks import urlpolicy
from gateway.wiring import Gateway
from tests.conftest import admin

# $1 / $2 per million tokens: one output token = 2000 nanos, so 1000 tokens = $0.002.
PRICES = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 4000
"""
FAST = PRICES + "\n[webhooks]\ninitial_retry_delay_s = 0.05\npoll_interval_s = 0.2\n"


# ---------------------------------------------------------------------------- receiver


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server recording every request. `responses` are popped one per
    request (an int status, or (status, headers)); when empty it answers `default`."""

    responses: list[Any] = field(default_factory=list)
    default: int = 200
    hits: list[Hit] = field(default_factory=list)
    delay_s: float = 0.0
    busy: int = 0  # requests that started waiting out delay_s
    reply: bytes = b"ok"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.delay_s:
                    with receiver._lock:
                        receiver.busy += 1
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    spec = receiver.responses.pop(0) if receiver.responses else receiver.default
                    status, headers = spec if isinstance(spec, tuple) else (spec, {})
                    receiver.hits.append(
                        Hit(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                            time.monotonic(),
                        )
                    )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A sender killed mid-request leaves a broken pipe: expected here, not worth a trace.
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def ok_hits(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def of_type(self, type_: str) -> list[Hit]:
        return [h for h in self.hits if h.json()["type"] == type_]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


async def wait_until(pred: Callable[[], Any], within: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


async def eventually(check: Callable[[], Any], within: float = 5.0, what: str = "") -> Any:
    """Like wait_until, for an async check (API or database state)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
async def make_client(gateway_factory: Any) -> AsyncIterator[Callable[..., Any]]:
    """make_client(config) -> an AsyncTestClient on a fresh gateway (lifespan running)."""
    stack: list[AsyncTestClient[Any]] = []

    async def make(config: str = FAST, **kw: Any) -> Any:
        gw = gateway_factory(config, **kw)
        c = AsyncTestClient(app=create_app(gw))
        await c.__aenter__()
        c.gw = gw  # type: ignore[attr-defined]
        stack.append(c)
        return c

    yield make
    for c in reversed(stack):
        await c.__aexit__(None, None, None)


async def register(c: Any, url: str, **body: Any) -> dict[str, Any]:
    r = await c.post("/v1/webhook_endpoints", json={"url": url, **body}, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


async def customer(c: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("external_id", f"w-{time.monotonic_ns()}")
    body.setdefault("name", "Webhook Co")
    r = await c.post("/v1/customers", json=body, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


async def topup(c: Any, customer_id: str, amount: float) -> dict[str, Any]:
    r = await c.post(
        f"/v1/customers/{customer_id}/wallet/topup", json={"amount_usd": amount}, headers=admin()
    )
    assert r.status_code == 200, r.text
    return r.json()


async def chat(c: Any, customer_id: str, tokens: int = 1000) -> Any:
    body = {
        "model": "fc:mock/mock-fast",
        "messages": [{"role": "user", "content": f"go [mock:tokens={tokens}]"}],
        "max_tokens": tokens,
    }
    return await c.post(
        "/v1/chat/completions", json=body, headers=admin({"FC-Customer": customer_id})
    )


async def event_detail(c: Any, event_id: str) -> dict[str, Any]:
    r = await c.get(f"/v1/events/{event_id}", headers=admin())
    assert r.status_code == 200, r.text
    return r.json()


async def events_of(c: Any, type_: str) -> list[dict[str, Any]]:
    r = await c.get("/v1/events", params={"type": type_, "limit": 100}, headers=admin())
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def delivered(c: Any, event_id: str) -> dict[str, Any]:
    """The event once every one of its deliveries is recorded as delivered."""

    async def check() -> Any:
        detail = await event_detail(c, event_id)
        ok = detail["deliveries"] and all(d["status"] == "delivered" for d in detail["deliveries"])
        return detail if ok else None

    return await eventually(check, what=f"{event_id} delivered")  # type: ignore[no-any-return]


def verify(secret: str, hit: Hit) -> Any:
    return Webhook(secret).verify(hit.body, hit.headers)


def db(c: Any) -> Gateway:
    return c.gw  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- endpoints


async def test_endpoint_lifecycle_and_secret_shown_once(make_client: Any) -> None:
    c = await make_client()
    ep = await register(c, "http://127.0.0.1:9/a", description="billing")
    assert ep["id"].startswith("whe_") and ep["object"] == "webhook_endpoint"
    assert ep["url"] == "http://127.0.0.1:9/a" and ep["events"] is None
    assert ep["description"] == "billing" and ep["enabled"] is True
    secret = ep["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    Webhook(secret)  # a valid Standard Webhooks secret

    got = (await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())).json()
    assert got["secret"] != secret and secret not in json.dumps(got)
    assert got["secret"].startswith("whsec_****") and got["secret"].endswith(secret[-4:])
    listed = (await c.get("/v1/webhook_endpoints", headers=admin())).json()
    assert listed["object"] == "list" and [e["id"] for e in listed["data"]] == [ep["id"]]
    assert secret not in json.dumps(listed)

    r = await c.patch(
        f"/v1/webhook_endpoints/{ep['id']}",
        json={"url": "https://127.0.0.1:9/b", "events": ["wallet.low", "budget_exceeded"]},
        headers=admin(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["url"] == "https://127.0.0.1:9/b"
    assert r.json()["events"] == ["wallet.low", "budget_exceeded"]
    r = await c.patch(f"/v1/webhook_endpoints/{ep['id']}", json={"enabled": False}, headers=admin())
    assert r.json()["enabled"] is False and r.json()["status"] == "disabled"

    r = await c.post(f"/v1/webhook_endpoints/{ep['id']}/rotate_secret", headers=admin())
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("whsec_") and r.json()["secret"] != secret

    r = await c.delete(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())
    assert r.status_code == 200 and r.json() == {
        "id": ep["id"],
        "object": "webhook_endpoint",
        "deleted": True,
    }
    r = await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "webhook_endpoint_not_found"


async def test_endpoint_validation_and_auth(make_client: Any) -> None:
    c = await make_client()
    bad = [
        ({}, "url"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "127.0.0.1:9/x"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://127.0.0.1:99999/"}, "url"),
        ({"url": "http://127.0.0.1/ x"}, "url"),
        ({"url": "http://127.0.0.1/", "events": []}, "events"),
        ({"url": "http://127.0.0.1/", "events": ["wallet.lowish"]}, "events"),
        ({"url": "http://127.0.0.1/", "events": "wallet.low"}, "events"),
        ({"url": "http://127.0.0.1/", "bogus": 1}, "bogus"),
    ]
    for body, param in bad:
        r = await c.post("/v1/webhook_endpoints", json=body, headers=admin())
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())
    r = await c.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1/"})
    assert r.status_code == 401
    key = (await c.post("/v1/keys", json={"name": "app"}, headers=admin())).json()["key"]
    r = await c.get("/v1/webhook_endpoints", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
    # ["*"] is the explicit spelling of "all events"
    ep = await register(c, "http://127.0.0.1:9/", events=["*"])
    assert ep["events"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1:8080/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "https://0.0.0.0/",
    ],
)
async def test_ssrf_metadata_addresses_always_refused(make_client: Any, url: str) -> None:
    c = await make_client()
    r = await c.post("/v1/webhook_endpoints", json={"url": url}, headers=admin())
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_webhook_url"
    assert r.json()["error"]["param"] == "url"


async def test_ssrf_private_networks_allowed_by_default(make_client: Any) -> None:
    c = await make_client(FAST)
    for url in ("http://127.0.0.1:9/", "http://10.1.2.3/", "http://[::1]:9/", "http://localhost/"):
        await register(c, url)


async def test_ssrf_private_networks_refused_when_disallowed(make_client: Any) -> None:
    closed = await make_client(FAST + "allow_private_networks = false\n")
    for url in (
        "http://127.0.0.1:9/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://[::1]:9/",
        "http://localhost/",
        "http://100.64.0.1/",
    ):
        r = await closed.post("/v1/webhook_endpoints", json={"url": url}, headers=admin())
        assert r.status_code == 400, url
        assert "allow_private_networks" in r.json()["error"]["message"]
    # A public address literal passes (nothing is sent at registration).
    ep = await register(closed, "https://93.184.216.34/hooks")
    r = await closed.patch(
        f"/v1/webhook_endpoints/{ep['id']}", json={"url": "http://10.0.0.1/"}, headers=admin()
    )
    assert r.status_code == 400


async def test_hostname_resolving_to_metadata_is_refused_at_delivery(
    make_client: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name looked harmless when registered, then points at metadata."""
    answers: dict[str, list[str]] = {"hooks.example.test": ["127.0.0.1"]}

    async def fake_resolve(host: str, port: int) -> list[Any]:
        import ipaddress

        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(urlpolicy, "resolve", fake_resolve)
    c = await make_client()
    # Registering a name that resolves to metadata is refused at once...
    answers["meta.example.test"] = ["169.254.169.254"]
    r = await c.post(
        "/v1/webhook_endpoints", json={"url": "http://meta.example.test/"}, headers=admin()
    )
    assert r.status_code == 400 and "169.254.169.254" in r.json()["error"]["message"]
    # ...and a good name is delivered to the vetted address, Host header intact.
    ep = await register(c, f"http://hooks.example.test:{receiver.port}/in")
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    hit = await wait_until(lambda: receiver.hits and receiver.hits[0], what="first delivery")
    assert hit.headers["host"] == f"hooks.example.test:{receiver.port}"
    verify(ep["secret"], hit)
    # Then the name starts answering with the metadata address: nothing is sent.
    answers["hooks.example.test"] = ["169.254.169.254"]
    await topup(c, cus["id"], 2)
    [event] = [e for e in await events_of(c, "wallet.topped_up") if e["data"]["amount_usd"] == 2]

    async def refused() -> bool:
        d = (await event_detail(c, event["id"]))["deliveries"][0]
        return bool(d["attempts"]) and "refused" in (d["attempts"][0]["error"] or "")

    deadline = time.monotonic() + 5
    while not await refused():
        assert time.monotonic() < deadline, "no refused attempt recorded"
        await asyncio.sleep(0.02)
    assert len(receiver.hits) == 1


# ---------------------------------------------------------------------------- delivery


async def test_delivery_is_signed_and_shaped(make_client: Any, receiver: Receiver) -> None:
    c = await make_client()
    ep = await register(c, receiver.url)
    cus = await customer(c, low_balance_threshold_usd=0.5)
    await topup(c, cus["id"], 2.5)
    hit = await wait_until(lambda: receiver.hits and receiver.hits[0], what="delivery")

    payload = verify(ep["secret"], hit)  # the receiver's side, with the reference package
    assert hit.path == "/hooks"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["webhook-signature"].startswith("v1,")
    assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 60
    assert hit.id == payload["id"] and payload["id"].startswith("evt_")
    assert payload["object"] == "event" and payload["type"] == "wallet.topped_up"
    assert isinstance(payload["created"], int)
    data = payload["data"]
    assert data["customer"]["id"] == cus["id"] and data["customer"]["external_id"]
    assert data["amount_usd"] == 2.5 and data["balance_usd"] == 2.5
    assert data["transaction_id"].startswith("txn_")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(hit.body, hit.headers)
    tampered = hit.body.replace(b"2.5", b"9.5")
    with pytest.raises(WebhookVerificationError):
        Webhook(ep["secret"]).verify(tampered, hit.headers)

    # The stored event is what was delivered, and the delivery is recorded on it.
    detail = await delivered(c, payload["id"])
    assert {k: detail[k] for k in payload} == payload
    [d] = detail["deliveries"]
    assert d["endpoint_id"] == ep["id"] and d["status"] == "delivered"
    assert d["attempt_count"] == 1 and d["attempts"][0]["status_code"] == 200
    got = (await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())).json()
    assert got["last_success_at"] and got["failing_since_at"] is None


async def test_subscriptions_filter_event_types(make_client: Any, receivers: Any) -> None:
    c = await make_client()
    everything, low_only = receivers(), receivers()
    await register(c, everything.url)
    await register(c, low_only.url, events=["wallet.low"])
    cus = await customer(c, low_balance_threshold_usd=0.005)
    await topup(c, cus["id"], 0.006)
    assert (await chat(c, cus["id"], 1000)).status_code == 200  # 0.006 -> ~0.004: crosses
    await wait_until(lambda: len(everything.hits) == 2 and low_only.hits, what="deliveries")
    assert sorted(h.json()["type"] for h in everything.hits) == ["wallet.low", "wallet.topped_up"]
    assert [h.json()["type"] for h in low_only.hits] == ["wallet.low"]
    low = low_only.hits[0].json()["data"]
    assert low["low_balance_threshold_usd"] == 0.005 and 0 < low["balance_usd"] < 0.005


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_one_wallet_low_per_crossing_under_concurrency(
    make_client: Any, receiver: Receiver
) -> None:
    c = await make_client()
    ep = await register(c, receiver.url, events=["wallet.low", "wallet.empty"])
    cus = await customer(c, low_balance_threshold_usd=0.03)
    await topup(c, cus["id"], 0.05)
    results = await asyncio.gather(*(chat(c, cus["id"]) for _ in range(20)))
    assert [r.status_code for r in results] == [200] * 20
    balance = (await c.get(f"/v1/customers/{cus['id']}/wallet", headers=admin())).json()
    assert balance["balance_usd"] < 0.01  # 20 x ~$0.002: crossed $0.03 once
    await wait_until(lambda: receiver.hits, what="wallet.low")
    assert len(await events_of(c, "wallet.low")) == 1
    await _quiet(c)
    assert [h.json()["type"] for h in receiver.hits] == ["wallet.low"]
    verify(ep["secret"], receiver.hits[0])
    # Topping up above the threshold re-arms it: the next crossing fires again, once.
    await topup(c, cus["id"], 0.03)
    results = await asyncio.gather(*(chat(c, cus["id"]) for _ in range(12)))
    assert all(r.status_code == 200 for r in results)
    await wait_until(lambda: len(receiver.hits) == 2, what="second wallet.low")
    assert len({h.id for h in receiver.hits}) == 2


async def test_one_budget_event_per_crossing_under_concurrency(
    make_client: Any, receiver: Receiver
) -> None:
    c = await make_client()
    await register(c, receiver.url, events=["budget.warning", "budget_exceeded"])
    cus = await customer(c, monthly_budget_usd=0.02)
    results = await asyncio.gather(*(chat(c, cus["id"]) for _ in range(30)))
    codes = [r.status_code for r in results]
    assert codes.count(200) >= 5 and set(codes) <= {200, 402}
    # More refused calls after the cap: still no second event.
    assert (await chat(c, cus["id"])).status_code == 402
    await wait_until(lambda: len(receiver.hits) >= 2, what="budget events")
    await _quiet(c)
    types = sorted(h.json()["type"] for h in receiver.hits)
    assert types == ["budget.warning", "budget_exceeded"]
    warning = receiver.of_type("budget.warning")[0].json()["data"]
    assert warning["monthly_budget_usd"] == 0.02 and warning["share"] >= 0.8
    assert warning["customer"]["id"] == cus["id"]


async def test_receiver_failing_first_attempts_then_succeeding(
    make_client: Any, receivers: Any
) -> None:
    receiver = receivers(responses=[500, 503, (302, {"location": "http://127.0.0.1:1/"}), 404])
    c = await make_client()
    ep = await register(c, receiver.url)
    cus = await customer(c)
    started = time.monotonic()
    await topup(c, cus["id"], 1)
    await wait_until(lambda: receiver.ok_hits(), what="the fifth attempt")
    elapsed = time.monotonic() - started
    assert [h.status for h in receiver.hits] == [500, 503, 302, 404, 200]
    assert len({h.id for h in receiver.hits}) == 1  # webhook-id is the same on every retry
    for hit in receiver.hits:
        verify(ep["secret"], hit)
    gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    # 0.05 s doubling, with up to 25% jitter: 0.05, 0.1, 0.2, 0.4 (timer granularity aside)
    assert gaps[0] >= 0.045 and gaps[3] >= 0.38, gaps
    assert gaps[3] > gaps[0]
    assert elapsed < 3, elapsed

    detail = await delivered(c, receiver.hits[0].id)
    [d] = detail["deliveries"]
    assert d["status"] == "delivered" and d["attempt_count"] == 5
    assert [a["status_code"] for a in d["attempts"]] == [500, 503, 302, 404, 200]
    assert "redirect not followed" in d["attempts"][2]["error"]
    assert d["attempts"][0]["response_body"] == "ok"
    got = (await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())).json()
    assert got["enabled"] and got["failing_since_at"] is None and got["last_success_at"]


@pytest.mark.parametrize(
    "database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_odd_response_bodies_are_recorded(make_client: Any, receivers: Any) -> None:
    """A NUL byte (PostgreSQL text refuses it) or a huge body must not stop the recording."""
    receiver = receivers(reply=b"bad\x00body" + b"x" * 5000)
    c = await make_client()
    await register(c, receiver.url)
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: receiver.hits, what="delivery")
    detail = await delivered(c, receiver.hits[0].id)
    body = detail["deliveries"][0]["attempts"][0]["response_body"]
    assert body.startswith("bad\ufffdbody") and len(body) == 1024


async def test_unreachable_receiver_is_retried(make_client: Any, receivers: Any) -> None:
    import socket

    with socket.socket() as s:  # a port with nobody listening (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = await make_client()
    await register(c, f"http://127.0.0.1:{port}/late")
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    [event] = await events_of(c, "wallet.topped_up")

    async def attempts() -> list[dict[str, Any]]:
        return list((await event_detail(c, event["id"]))["deliveries"][0]["attempts"])

    deadline = time.monotonic() + 5
    while len(await attempts()) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    first = (await attempts())[0]
    assert first["status_code"] is None and "Connect" in first["error"]


async def test_410_gone_disables_the_endpoint_at_once(make_client: Any, receivers: Any) -> None:
    gone = receivers(default=410)
    watcher = receivers()
    c = await make_client()
    ep = await register(c, gone.url)
    await register(c, watcher.url, events=["webhook_endpoint.disabled"])
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: watcher.hits, what="the disabled event")
    got = (await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())).json()
    assert got["enabled"] is False and "410" in got["disabled_reason"]
    assert got["pending_deliveries"] == 1
    disabled = watcher.hits[0].json()
    assert disabled["type"] == "webhook_endpoint.disabled"
    assert disabled["data"]["webhook_endpoint"]["id"] == ep["id"]
    assert len(await events_of(c, "webhook_endpoint.disabled")) == 1
    # Nothing more goes to it while disabled...
    await topup(c, cus["id"], 1)
    await _quiet(c)
    assert len(gone.hits) == 1
    # ...and re-enabling sends what waited, with a fresh failure history.
    gone.default = 200
    r = await c.patch(f"/v1/webhook_endpoints/{ep['id']}", json={"enabled": True}, headers=admin())
    assert r.json()["enabled"] and r.json()["disabled_reason"] is None
    await wait_until(lambda: len(gone.ok_hits()) == 2, what="the backlog after re-enabling")
    assert len({h.id for h in gone.ok_hits()}) == 2


async def test_endpoint_failing_for_disable_after_h_is_disabled(
    make_client: Any, receivers: Any
) -> None:
    failing = receivers(default=500)
    watcher = receivers()
    c = await make_client(FAST + "disable_after_h = 120\n")
    ep = await register(c, failing.url)
    await register(c, watcher.url, events=["webhook_endpoint.disabled"])
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: len(failing.hits) >= 2, what="two failures")
    got = (await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())).json()
    assert got["enabled"] and got["failing_since_at"]  # failing, but not for long enough
    # Pretend the first failure was 121 hours ago.
    long_ago = int(time.time() * 1000) - 121 * 3600 * 1000
    await db(c).db.write(
        lambda: (
            WebhookEndpoint.update(failing_since_ms=long_ago)
            .where(WebhookEndpoint.id == ep["id"])
            .execute()
        )
    )
    await wait_until(lambda: watcher.hits, what="the disabled event")
    got = (await c.get(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())).json()
    assert got["enabled"] is False and "120 h" in got["disabled_reason"]
    data = watcher.hits[0].json()["data"]
    assert data["webhook_endpoint"]["url"] == failing.url and "120 h" in data["reason"]
    n = len(failing.hits)
    await _quiet(c)
    assert len(failing.hits) == n


async def test_retries_stop_after_max_retry_age(make_client: Any, receivers: Any) -> None:
    failing = receivers(default=503)
    c = await make_client()
    await register(c, failing.url)
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: failing.hits, what="a failure")
    long_ago = int(time.time() * 1000) - 73 * 3600 * 1000
    await db(c).db.write(
        lambda: WebhookDelivery.update(window_start_ms=long_ago, created_ms=long_ago).execute()
    )
    [event] = await events_of(c, "wallet.topped_up")

    async def status() -> str:
        return str((await event_detail(c, event["id"]))["deliveries"][0]["status"])

    deadline = time.monotonic() + 5
    while await status() != "failed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    n = len(failing.hits)
    await _quiet(c)
    assert len(failing.hits) == n
    # A manual retry gives it a fresh window.
    failing.default = 200
    r = await c.post(f"/v1/events/{event['id']}/retry", headers=admin())
    assert r.status_code == 200
    await wait_until(lambda: failing.ok_hits(), what="the manual retry")
    await delivered(c, event["id"])


async def test_manual_retry(make_client: Any, receivers: Any) -> None:
    a, b = receivers(), receivers()
    c = await make_client()
    ep_a = await register(c, a.url)
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: a.hits, what="first delivery")
    event_id = a.hits[0].id
    ep_b = await register(c, b.url)  # registered after the event

    # One endpoint: sent again, same webhook-id (receivers dedupe on it).
    r = await c.post(
        f"/v1/events/{event_id}/retry", json={"endpoint_id": ep_a["id"]}, headers=admin()
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == event_id
    await wait_until(lambda: len(a.hits) == 2, what="the retry")
    assert a.hits[1].id == event_id and not b.hits
    verify(ep_a["secret"], a.hits[1])

    # All endpoints: includes the one registered since.
    r = await c.post(f"/v1/events/{event_id}/retry", headers=admin())
    assert r.status_code == 200
    assert {d["endpoint_id"] for d in r.json()["deliveries"]} == {ep_a["id"], ep_b["id"]}
    await wait_until(lambda: len(a.hits) == 3 and b.hits, what="retry to all")
    verify(ep_b["secret"], b.hits[0])
    detail = await delivered(c, event_id)
    by_ep = {d["endpoint_id"]: d for d in detail["deliveries"]}
    assert len(by_ep[ep_a["id"]]["attempts"]) == 3

    # Errors
    r = await c.post("/v1/events/evt_nope/retry", headers=admin())
    assert r.status_code == 404 and r.json()["error"]["code"] == "event_not_found"
    r = await c.post(
        f"/v1/events/{event_id}/retry", json={"endpoint_id": "whe_nope"}, headers=admin()
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "webhook_endpoint_not_found"
    await c.patch(f"/v1/webhook_endpoints/{ep_b['id']}", json={"enabled": False}, headers=admin())
    r = await c.post(
        f"/v1/events/{event_id}/retry", json={"endpoint_id": ep_b["id"]}, headers=admin()
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "webhook_endpoint_disabled"
    r = await c.post(f"/v1/events/{event_id}/retry", json={"bogus": 1}, headers=admin())
    assert r.status_code == 400


async def test_rotation_signs_with_both_secrets_during_grace(
    make_client: Any, receiver: Receiver
) -> None:
    c = await make_client()
    ep = await register(c, receiver.url)
    old = ep["secret"]
    r = await c.post(f"/v1/webhook_endpoints/{ep['id']}/rotate_secret", headers=admin())
    new = r.json()["secret"]
    assert r.json()["previous_secret_expires_at"]
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: receiver.hits, what="delivery")
    assert len(receiver.hits[0].headers["webhook-signature"].split(" ")) == 2
    verify(old, receiver.hits[0])
    verify(new, receiver.hits[0])
    # No grace: only the newest secret signs.
    r = await c.post(
        f"/v1/webhook_endpoints/{ep['id']}/rotate_secret",
        json={"grace_period_s": 0},
        headers=admin(),
    )
    newest = r.json()["secret"]
    await topup(c, cus["id"], 1)
    await wait_until(lambda: len(receiver.hits) == 2, what="second delivery")
    verify(newest, receiver.hits[1])
    with pytest.raises(WebhookVerificationError):
        verify(new, receiver.hits[1])
    r = await c.post(
        f"/v1/webhook_endpoints/{ep['id']}/rotate_secret",
        json={"grace_period_s": -1},
        headers=admin(),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "grace_period_s"


async def test_deleting_an_endpoint_drops_its_pending_deliveries(
    make_client: Any, receivers: Any
) -> None:
    failing = receivers(default=500)
    c = await make_client()
    ep = await register(c, failing.url)
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: failing.hits, what="a failure")
    await c.delete(f"/v1/webhook_endpoints/{ep['id']}", headers=admin())
    [event] = await events_of(c, "wallet.topped_up")
    [d] = (await event_detail(c, event["id"]))["deliveries"]
    assert d["status"] == "failed" and d["last_error"] == "endpoint deleted"
    n = len(failing.hits)
    await _quiet(c)
    assert len(failing.hits) == n


# ---------------------------------------------------------------------------- events API


async def test_events_list_filters_and_pagination(make_client: Any) -> None:
    c = await make_client()
    alice = await customer(c, external_id="alice")
    bob = await customer(c, external_id="bob")
    for amount in (1, 2, 3):
        await topup(c, alice["id"], amount)
    await topup(c, bob["id"], 4)
    r = await c.get("/v1/events", headers=admin())
    all_events = r.json()["data"]
    assert r.json()["object"] == "list" and r.json()["url"] == "/v1/events"
    assert [e["data"]["amount_usd"] for e in all_events] == [4, 3, 2, 1]  # newest first
    r = await c.get("/v1/events", params={"customer_id": "alice"}, headers=admin())
    assert [e["data"]["amount_usd"] for e in r.json()["data"]] == [3, 2, 1]
    r = await c.get("/v1/events", params={"customer": bob["id"]}, headers=admin())
    assert [e["data"]["customer"]["id"] for e in r.json()["data"]] == [bob["id"]]

    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "type": "wallet.topped_up"}
        if after:
            params["starting_after"] = after
        page = (await c.get("/v1/events", params=params, headers=admin())).json()
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == [e["id"] for e in all_events]

    r = await c.get("/v1/events", params={"type": "wallet.low"}, headers=admin())
    assert r.json()["data"] == []
    r = await c.get(
        "/v1/events", params={"since": "2000-01-01", "until": "2000-01-02"}, headers=admin()
    )
    assert r.json()["data"] == []
    r = await c.get("/v1/events", params={"since": "2000-01-01T00:00:00Z"}, headers=admin())
    assert len(r.json()["data"]) == 4
    for params in ({"type": "nope"}, {"since": "yesterday"}, {"starting_after": "evt_x"}):
        r = await c.get("/v1/events", params=params, headers=admin())
        assert r.status_code == 400, params
    r = await c.get("/v1/events/evt_missing", headers=admin())
    assert r.status_code == 404 and r.json()["error"]["code"] == "event_not_found"


# ---------------------------------------------------------------------------- dashboard


async def test_service_methods_for_the_dashboard(make_client: Any, receivers: Any) -> None:
    failing = receivers(default=500)
    c = await make_client()
    service = db(c).services.webhooks
    ep = await register(c, failing.url, description="billing")
    cus = await customer(c)
    await topup(c, cus["id"], 1)

    async def failed_twice() -> Any:
        rows = await service.recent_deliveries(10)
        return rows if rows and rows[0]["attempt_count"] >= 2 else None

    [d] = await eventually(failed_twice, what="two recorded failures")
    [listed] = await service.list_endpoints()
    assert listed["id"] == ep["id"] and listed["failing_since_at"] and listed["enabled"]
    assert listed["pending_deliveries"] == 1 and "****" in listed["secret"]
    assert d["status"] == "pending"
    assert d["event_type"] == "wallet.topped_up" and d["customer_id"] == cus["id"]
    assert d["endpoint_url"] == failing.url and d["next_attempt_at"] and d["last_error"]

    off = await service.set_endpoint_enabled(ep["id"], False)
    assert off["enabled"] is False
    n = len(failing.hits)
    await _quiet(c)
    assert len(failing.hits) == n
    failing.default = 200
    await service.set_endpoint_enabled(ep["id"], True)
    await wait_until(lambda: failing.ok_hits(), what="delivery after enabling")
    await delivered(c, d["event_id"])
    [d] = await service.recent_deliveries(10)
    again = await service.retry_delivery(d["id"])
    assert again["status"] == "pending"
    await wait_until(lambda: len(failing.ok_hits()) == 2, what="retry_delivery")
    out = await service.retry_event(d["event_id"])
    assert out["id"] == d["event_id"]
    await wait_until(lambda: len(failing.ok_hits()) == 3, what="retry_event")
    await delivered(c, d["event_id"])
    r = await c.get("/v1/webhook_deliveries", params={"status": "delivered"}, headers=admin())
    assert [x["id"] for x in r.json()["data"]] == [d["id"]]
    assert r.json()["data"][0]["attempt_count"] >= 4


# ---------------------------------------------------------------------------- several workers


@pytest.mark.parametrize("days", [-40, 40])
async def test_an_event_under_a_moved_business_clock_is_delivered_at_once(
    make_client: Any, receiver: Receiver, clock: Any, days: int
) -> None:
    """Deliveries run on the wall clock, whatever clock stamped the event."""
    c = await make_client()
    await register(c, receiver.url)
    clock.advance(days=days)
    cus = await customer(c)
    await topup(c, cus["id"], 1)
    await wait_until(lambda: receiver.ok_hits(), what="the delivery")
    [event] = await events_of(c, "wallet.topped_up")
    assert receiver.ok_hits()[0].json()["created"] == event["created"]
    assert abs(event["created"] - clock().timestamp()) < 5  # stamped by the business clock


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_an_event_and_its_deliveries_commit_or_roll_back_with_the_money(
    gateway_factory: Any, receiver: Receiver
) -> None:
    """The ledger records the event and the outbox queues its deliveries inside the money
    transaction: a crash before the commit leaves none of the three behind."""
    from gateway.db.models import Customer, Event, WalletTransaction

    gw = gateway_factory(FAST)
    await gw.services.webhooks.create_endpoint({"url": receiver.url})

    def create_customer() -> None:
        with gw.db.tx():
            Customer.create(id="cus_txn", external_id="txn", name="T", created_ms=0, updated_ms=0)

    def topup_then_crash() -> None:
        with gw.db.tx():
            gw.ledger.topup_sync("cus_txn", 1_000, None)
            raise RuntimeError("the process died before the commit")

    def counts() -> tuple[int, int, int]:
        return (
            WalletTransaction.select().count(),
            Event.select().count(),
            WebhookDelivery.select().count(),
        )

    await gw.db.write(create_customer)
    with pytest.raises(RuntimeError):
        await gw.db.write(topup_then_crash)
    assert await gw.db.read(counts) == (0, 0, 0)
    (_, txn), [event] = await gw.db.write(gw.ledger.topup_sync, "cus_txn", 1_000, None)
    assert await gw.db.read(counts) == (1, 1, 1)
    delivery = await gw.db.read(WebhookDelivery.get)
    assert delivery.event_id == event["id"] and delivery.status == "pending"
    assert event["data"]["transaction_id"] == txn.id


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_workers_on_postgres_send_each_delivery_once(
    gateway_factory: Any, receiver: Receiver
) -> None:
    from gateway.db.models import Customer
    from gateway.webhooks.delivery import DeliveryWorker

    gw = gateway_factory(FAST)
    service = gw.services.webhooks
    await service.create_endpoint({"url": receiver.url})

    def make_events() -> None:
        with gw.db.tx():
            Customer.create(
                id="cus_pgtwo", external_id="pg-two", name="PG", created_ms=0, updated_ms=0
            )
        for _ in range(60):  # one wallet.topped_up event each
            gw.ledger.topup_sync("cus_pgtwo", 1, None)

    await gw.db.write(make_events)
    settings = gw.settings.webhooks
    background = BackgroundTasks()
    workers = [
        DeliveryWorker(
            gw.db, settings, gw.bus, background=background, instance_id=f"worker-{i}", capacity=8
        )
        for i in range(2)
    ]
    claimed: dict[str, list[str]] = {w.instance_id: [] for w in workers}
    for w in workers:
        w.attach(asyncio.get_running_loop())

        def counting(limit: int, w: DeliveryWorker = w, inner: Any = w._claim_sync) -> Any:
            claims = inner(limit)
            claimed[w.instance_id] += [c.delivery_id for c in claims]
            return claims

        w._claim_sync = counting  # type: ignore[method-assign]

    async def drive() -> None:
        while len(receiver.hits) < 60:
            await asyncio.gather(*(w.tick() for w in workers))
            await asyncio.sleep(0.005)

    await asyncio.wait_for(drive(), 20)
    await background.drain(30)
    for w in workers:
        w.stop()
    await background.drain(30)
    ids = [h.id for h in receiver.hits]
    assert len(ids) == 60 and len(set(ids)) == 60
    # Both claimed, concurrently, and never the same row.
    assert all(claimed.values()), {k: len(v) for k, v in claimed.items()}
    a, b = claimed.values()
    assert not set(a) & set(b) and len(a) + len(b) == 60
    claimed_by = await gw.db.read(
        lambda: {a.locked_by for a in WebhookDelivery.select()}  # all released after sending
    )
    assert claimed_by == {None}
    statuses = await gw.db.read(lambda: {d.status for d in WebhookDelivery.select()})
    assert statuses == {"delivered"}


# ---------------------------------------------------------------------------- helpers


async def _quiet(c: Any, seconds: float = 0.3) -> None:
    """Let the worker run a few more polls: for asserting that nothing else is sent."""
    await asyncio.sleep(seconds)
