"""Webhooks against the real `ringside serve` process: SIGKILL with a pending delivery, and
two instances on one PostgreSQL database."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e.conftest import ServerProcess
from tests.gateway.test_webhooks import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def api(server: ServerProcess, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, server.base_url + path, headers=server.headers(), timeout=10, **kw)
    assert r.status_code < 300, r.text
    return r.json()


def test_pending_delivery_survives_sigkill_and_restart(
    ringside_server: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    # A 2 s first retry: the delivery sits pending (not in flight) when the process dies.
    server = ringside_server(
        config="[webhooks]\ninitial_retry_delay_s = 2\npoll_interval_s = 0.2\n"
    )
    endpoint = api(server, "POST", "/v1/webhook_endpoints", json={"url": receiver.url})
    secret = endpoint["secret"]
    receiver.default = 503
    cus = api(server, "POST", "/v1/customers", json={"external_id": "kill", "name": "Kill"})
    api(server, "POST", f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 5})
    [event] = api(server, "GET", "/v1/events", params={"type": "wallet.topped_up"})["data"]

    def first_failure_recorded() -> bool:
        [d] = api(server, "GET", f"/v1/events/{event['id']}")["deliveries"]
        return d["status"] == "pending" and d["attempt_count"] == 1

    wait_for(first_failure_recorded, 10, "the first failed attempt")
    server.kill()  # SIGKILL: no shutdown code runs
    assert server.proc is not None and server.proc.returncode == -9
    receiver.default = 200
    server.start()

    wait_for(receiver.ok_hits, 20, "the delivery after the restart")
    ok = receiver.ok_hits()
    payload = Webhook(secret).verify(ok[0].body, ok[0].headers)
    assert payload["id"] == event["id"] == ok[0].id and payload["type"] == "wallet.topped_up"
    assert [h.id for h in receiver.hits] == [event["id"]] * len(receiver.hits)

    def recorded() -> bool:
        [d] = api(server, "GET", f"/v1/events/{event['id']}")["deliveries"]
        return d["status"] == "delivered"

    wait_for(recorded, 10, "the delivery recorded as delivered")
    # A later event goes through the same outbox: once it is delivered, the worker has
    # polled past the first one, which must not have been sent again.
    api(server, "POST", f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 1})
    wait_for(lambda: len(receiver.ok_hits()) >= 2, 10, "the marker event")
    assert [h.id for h in receiver.ok_hits()].count(event["id"]) == 1


def test_delivery_in_flight_at_sigkill_is_sent_again_after_restart(
    ringside_server: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    """Killed while the receiver is still answering: the lease it held must not delay the
    delivery after the restart (at-least-once: the receiver may see the id twice)."""
    # timeout_s = 60 gives the dead process's claim a 125 s lease: a delivery within the
    # wait below can only come from the restart ignoring that lease.
    server = ringside_server(config="[webhooks]\npoll_interval_s = 0.2\ntimeout_s = 60\n")
    endpoint = api(server, "POST", "/v1/webhook_endpoints", json={"url": receiver.url})
    receiver.delay_s = 3.0
    cus = api(server, "POST", "/v1/customers", json={"external_id": "mid", "name": "Mid"})
    api(server, "POST", f"/v1/customers/{cus['id']}/wallet/topup", json={"amount_usd": 5})
    [event] = api(server, "GET", "/v1/events", params={"type": "wallet.topped_up"})["data"]

    def in_flight() -> bool:
        [d] = api(server, "GET", f"/v1/events/{event['id']}")["deliveries"]
        return d["status"] == "pending" and d["attempt_count"] == 0 and receiver.busy > 0

    wait_for(in_flight, 10, "the first attempt in flight")
    server.kill()
    receiver.delay_s = 0.0
    server.start()
    wait_for(lambda: len(receiver.hits) >= 2, 30, "the delivery after the restart")
    assert {h.id for h in receiver.hits} == {event["id"]}  # dedupe by webhook-id: one event
    for hit in receiver.hits:
        Webhook(endpoint["secret"]).verify(hit.body, hit.headers)


@pytest.mark.postgres
def test_two_instances_on_postgresql_send_each_event_once(
    ringside_server: Callable[..., ServerProcess], pg_server: Callable[[], str], receiver: Receiver
) -> None:
    url = pg_server()
    config = "[webhooks]\npoll_interval_s = 0.1\n"
    servers = [ringside_server(config=config, database_url=url) for _ in range(2)]
    endpoint = api(servers[0], "POST", "/v1/webhook_endpoints", json={"url": receiver.url})
    customers = [
        api(servers[i % 2], "POST", "/v1/customers", json={"external_id": f"pg-{i}", "name": "P"})
        for i in range(6)
    ]

    def top_up(i: int) -> None:
        cus = customers[i % len(customers)]
        api(
            servers[i % 2],
            "POST",
            f"/v1/customers/{cus['id']}/wallet/topup",
            json={"amount_usd": 1 + i},
        )

    n = 40
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(top_up, range(n)))
    wait_for(lambda: len({h.id for h in receiver.hits}) >= n, 20, f"{n} deliveries")
    # Marker events through each instance: once both are delivered, both workers have
    # polled past the first n, and none of those may have been sent twice.
    for i in range(2):
        top_up(n + i)
    wait_for(lambda: len({h.id for h in receiver.hits}) >= n + 2, 20, "the marker events")
    ids = [h.id for h in receiver.hits]
    assert len(ids) == n + 2 and len(set(ids)) == n + 2
    for hit in receiver.hits:
        Webhook(endpoint["secret"]).verify(hit.body, hit.headers)
