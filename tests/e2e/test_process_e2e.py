"""The real process under signals and with several workers: drained, settled, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

SLOW = "[mock:sleep_ms=2500] [mock:tokens=20]"


def chat(extra: str = "", stream: bool = False) -> dict[str, Any]:
    return {
        "model": "fc:mock/mock-fast",
        "messages": [{"role": "user", "content": f"hello {extra}"}],
        "max_tokens": 50,
        "stream": stream,
    }


async def held_usd(c: httpx.AsyncClient, cid: str) -> Decimal:
    cus = (await c.get(f"/v1/customers/{cid}")).json()
    return Decimal(str(cus["budget"]["held_usd"]))


async def wait_held_above(c: httpx.AsyncClient, cid: str, floor: Decimal) -> Decimal:
    """The call just sent has taken its hold (the gateway accepted it)."""
    for _ in range(600):
        held = await held_usd(c, cid)
        if held > floor:
            return held
        await asyncio.sleep(0.02)
    raise AssertionError("the call never took its hold")


async def test_sigterm_drains_in_flight_calls_settles_them_and_exits_zero(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    server = ringside_server()
    h = server.headers()
    async with httpx.AsyncClient(base_url=server.base_url, headers=h, timeout=60) as c:
        cus = (
            await c.post(
                "/v1/customers", json={"external_id": "drain", "name": "D", "budget_usd": 5}
            )
        ).json()
        cid = cus["id"]
        calls: list[asyncio.Task[httpx.Response]] = []
        held = Decimal(0)
        for stream in (False, True, False, True):
            calls.append(
                asyncio.create_task(
                    c.post(
                        "/v1/chat/completions",
                        json=chat(SLOW, stream),
                        headers={"FC-Customer": cid},
                    )
                )
            )
            held = await wait_held_above(c, cid, held)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        answers = await asyncio.gather(*calls)
    assert [r.status_code for r in answers] == [200] * 4
    assert all("[DONE]" in r.text for r in answers[1::2])  # streams ran to their end
    assert server.proc.wait(timeout=60) == 0, server.log()
    server.start()
    async with httpx.AsyncClient(base_url=server.base_url, headers=h) as c:
        log = (await c.get("/v1/requests", params={"customer_id": cid})).json()["data"]
        assert sorted(r["status"] for r in log) == ["ok"] * 4  # each billed exactly once
        cus = (await c.get(f"/v1/customers/{cid}")).json()
        assert cus["budget"]["held_usd"] == 0
        spent = Decimal(str(cus["budget"]["spent_usd"]))
        assert spent == sum(Decimal(str(r["cost_usd"])) for r in log)
    server.stop()
    assert server.proc.returncode == 0


async def test_two_workers_share_one_port_and_never_overspend(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    server = ringside_server(workers=2)
    h = server.headers()
    budget = Decimal("0.004")
    async with httpx.AsyncClient(base_url=server.base_url, headers=h, timeout=60) as c:
        cus = (
            await c.post(
                "/v1/customers",
                json={"external_id": "w2", "name": "W", "budget_usd": float(budget)},
            )
        ).json()
        cid = cus["id"]
        body = {**chat("[mock:tokens=50]"), "model": "fc:mock/mock-smart"}
        answers = await asyncio.gather(
            *(
                c.post("/v1/chat/completions", json=body, headers={"FC-Customer": cid})
                for _ in range(40)
            )
        )
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 402} and 402 in codes and 200 in codes, codes
        cus = (await c.get(f"/v1/customers/{cid}")).json()
        spent = Decimal(str(cus["budget"]["spent_usd"]))
        assert spent <= budget
        assert spent == sum(Decimal(r.headers["FC-Cost-USD"]) for r in answers if r.is_success)
        assert cus["budget"]["held_usd"] == 0
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0, server.log()
    assert "with 2 workers" in server.log()


SLOW_STREAMS = """
[server]
shutdown_grace_s = 2

[providers.slowmock]
kind = "mock"
base_url = "http://127.0.0.1:9/v1"
latency_ms = 60000

[prices."slowmock/mock-fast"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
"""


async def test_a_stream_still_running_at_the_end_of_the_grace_is_cut_and_charged(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    server = ringside_server(config=SLOW_STREAMS)
    h = server.headers()
    async with httpx.AsyncClient(base_url=server.base_url, headers=h, timeout=60) as c:
        cus = (
            await c.post("/v1/customers", json={"external_id": "cut", "name": "C", "budget_usd": 5})
        ).json()
        body = {**chat("[mock:tokens=40]", stream=True), "model": "fc:slowmock/mock-fast"}
        received = b""
        # At the end of the grace the server closes the connection mid-stream.
        with contextlib.suppress(httpx.RemoteProtocolError):
            async with c.stream(
                "POST", "/v1/chat/completions", json=body, headers={"FC-Customer": cus["id"]}
            ) as r:
                assert r.status_code == 200
                async for part in r.aiter_bytes():
                    received += part
                    if received.count(b"data: ") >= 3 and server.proc is not None:
                        if server.proc.returncode is None and b"SENT" not in received:
                            server.proc.send_signal(signal.SIGTERM)
                            received += b"SENT"
    assert b"[DONE]" not in received  # cut, not finished: the stream lasts a minute
    assert server.proc is not None and server.proc.wait(timeout=60) == 0, server.log()
    server.start()
    async with httpx.AsyncClient(base_url=server.base_url, headers=h) as c:
        [row] = (await c.get("/v1/requests", params={"customer_id": cus["id"]})).json()["data"]
        assert row["status"] == "cut" and row["output_tokens"] >= 1
        customer = (await c.get(f"/v1/customers/{cus['id']}")).json()
        assert customer["budget"]["held_usd"] == 0
        assert Decimal(str(customer["budget"]["spent_usd"])) == Decimal(str(row["cost_usd"])) > 0
    server.stop()
