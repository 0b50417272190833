"""OpenTelemetry spans of metered calls, read back from the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.config import ConfigError
from gateway.db.database import Database
from gateway.db.migrate import migrate
from gateway.tracing import build_tracer
from gateway.wiring import build_gateway
from tests.conftest import ADMIN_KEY, admin, make_settings

CHAT = {"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    settings = make_settings(tmp_path, "[tracing]\nenabled = true\n")
    db = Database(settings.database_url)
    migrate(db)
    gw = build_gateway(
        settings, db, admin_key=ADMIN_KEY, span_processor=SimpleSpanProcessor(exporter)
    )
    yield gw, exporter
    db.close()


async def test_a_call_is_a_server_span_with_reserve_upstream_and_settle(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    gw, exporter = traced
    async with AsyncTestClient(app=create_app(gw)) as c:
        cus = (
            await c.post("/v1/customers", json={"external_id": "t", "name": "T"}, headers=admin())
        ).json()
        r = await c.post(
            "/v1/chat/completions", json=CHAT, headers=admin({"FC-Customer": cus["id"]})
        )
        assert r.status_code == 200
        s = await c.post(
            "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers=admin({"FC-Customer": cus["id"]}),
        )
        assert s.status_code == 200
    spans = exporter.get_finished_spans()
    servers = [x for x in spans if x.name == "POST /v1/chat/completions"]
    assert len(servers) == 2
    for server in servers:
        children = {
            x.name: x for x in spans if x.parent and x.parent.span_id == server.context.span_id
        }
        assert set(children) == {"ringside.reserve", "chat mock-fast", "ringside.settle"}
        upstream = children["chat mock-fast"].attributes
        assert upstream["gen_ai.system"] == "mock"
        assert upstream["gen_ai.request.model"] == "mock-fast"
        assert upstream["gen_ai.usage.input_tokens"] > 0
        assert upstream["gen_ai.usage.output_tokens"] > 0
        attrs = server.attributes
        assert attrs["ringside.customer_id"] == cus["id"]
        assert attrs["http.response.status_code"] == 200
        assert attrs["ringside.request_id"].startswith("req_")
    first = servers[0].attributes
    assert first["ringside.cost_usd"] == r.headers["FC-Cost-USD"]
    assert first["ringside.price_usd"] == r.headers["FC-Price-USD"]


async def test_a_refused_call_is_a_span_with_its_error(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    gw, exporter = traced
    async with AsyncTestClient(app=create_app(gw)) as c:
        r = await c.post("/v1/chat/completions", json=CHAT, headers=admin({"FC-Customer": "ghost"}))
        assert r.status_code == 404
    spans = exporter.get_finished_spans()
    [server] = [x for x in spans if x.parent is None]
    assert [x.name for x in spans if x.parent is not None] == ["ringside.reserve"]
    assert server.attributes["error.type"] == "customer_not_found"
    assert server.attributes["http.response.status_code"] == 404


def test_tracing_is_off_by_default(tmp_path: Path) -> None:
    assert build_tracer(make_settings(tmp_path).tracing) is None


def test_a_bad_tracing_section_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sample_ratio"):
        make_settings(tmp_path, "[tracing]\nsample_ratio = 2\n")
