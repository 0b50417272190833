"""Structured logs from the real process: JSON lines, access lines, and no secrets."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

PROMPT_MARKER = "PROMPT-MARKER-7f3a9c"
ADMIN_MARKER = "ADMIN-MARKER-key-5b2e8d41c0"


def test_json_logs_carry_access_lines_and_never_a_secret(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    server = ringside_server(
        config='[server]\nlog_format = "json"\nlog_level = "debug"\n',
        env={"RINGSIDE_ADMIN_KEY": ADMIN_MARKER},
    )
    server.admin_key = ADMIN_MARKER
    h = server.headers()
    with httpx.Client(base_url=server.base_url, headers=h, timeout=30) as c:
        endpoint = c.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook"}).json()
        app_key = c.post("/v1/keys", json={"name": "k"}).json()["key"]
        cus = c.post(
            "/v1/customers", json={"external_id": "logs", "name": "L", "budget_usd": 0.0002}
        ).json()
        chat = {
            "model": "fc:mock/mock-fast",
            "messages": [{"role": "user", "content": f"say {PROMPT_MARKER}"}],
        }
        app = {"Authorization": f"Bearer {app_key}", "FC-Customer": cus["id"]}
        ok = c.post("/v1/chat/completions", json=chat, headers=app)
        assert ok.status_code == 200
        c.post("/v1/chat/completions", json={**chat, "stream": True}, headers=app)
        refused = c.post("/v1/chat/completions", json={**chat, "max_tokens": 90_000}, headers=app)
        assert refused.status_code == 402
        bad = c.post("/v1/chat/completions", content=f'{{"{PROMPT_MARKER}"', headers=app)
        assert bad.status_code == 400
        c.post("/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {app_key}x"})
        c.post("/v1/customers/logs/wallet/topup", json={"amount_usd": 1})
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    text = server.log_path.read_text()
    for secret in (PROMPT_MARKER, ADMIN_MARKER, app_key, endpoint["secret"]):
        assert secret not in text, f"{secret[:12]}... leaked into the log"
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert records, text[-2000:]
    not_json = [x for x in text.splitlines() if x.strip() and not x.startswith("{")]
    assert not_json == [], not_json[:5]
    access = [r for r in records if r["logger"] == "ringside.access"]
    served = [r for r in access if r["status"] == 200]
    assert len(served) == 2
    first = served[0]
    assert first["request_id"] == ok.headers["FC-Request-Id"]
    assert first["customer_id"] == cus["id"] and first["route"] == "/v1/chat/completions"
    assert first["cost_usd"] == ok.headers["FC-Cost-USD"] and first["latency_ms"] >= 0
    codes = {r.get("error_code") for r in access if r["status"] != 200}
    assert {"customer_budget_exceeded", "invalid_json"} <= codes
