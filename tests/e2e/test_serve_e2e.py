"""The real `ringside serve` process, driven over HTTP as an operator would."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

HOSTILE: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("POST", "/v1/customers", b"{", {}),
    ("POST", "/v1/customers", b"null", {}),
    ("POST", "/v1/customers", b'{"external_id": {"$ne": 1}, "name": "x"}', {}),
    ("POST", "/v1/customers", b'{"external_id": "a", "name": "\\u0000"}', {}),
    ("POST", "/v1/customers", b'{"external_id": "b", "name": "x", "budget_usd": 1e999}', {}),
    ("POST", "/v1/customers", '{"external_id": "\u00e9\u00e9", "name": 5}'.encode(), {}),
    ("POST", "/v1/customers", b"\x00\x01\x02", {"content-type": "application/octet-stream"}),
    ("POST", "/v1/customers", b"[" * 50_000 + b"]" * 50_000, {}),
    ("GET", "/v1/customers?limit=-5", None, {}),
    ("GET", "/v1/customers?limit=abc", None, {}),
    ("GET", "/v1/customers?starting_after=%27%3B%20DROP%20TABLE%20customer%3B--", None, {}),
    ("GET", "/v1/usage?since=2026-13-45", None, {}),
    ("GET", "/v1/requests?status=%00", None, {}),
    ("PATCH", "/v1/customers/cus_missing", b'{"name": "x"}', {}),
    ("DELETE", "/v1/keys/key_missing", None, {}),
    (
        "POST",
        "/v1/chat/completions",
        b'{"model": "fc:mock/mock-fast", "messages": "hi"}',
        {"FC-Customer": "x"},
    ),
    (
        "POST",
        "/v1/chat/completions",
        b'{"model": "fc:mock/mock-fast", "messages": [1]}',
        {"FC-Customer": "x"},
    ),
    (
        "POST",
        "/v1/chat/completions",
        b'{"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "x"}], '
        b'"max_tokens": 1.5}',
        {"FC-Customer": "x"},
    ),
    (
        "POST",
        "/v1/chat/completions",
        b'{"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "x"}], '
        b'"stream": "yes"}',
        {"FC-Customer": "x"},
    ),
    ("POST", "/v1/customers/x/wallet/topup", b'{"amount_usd": "1e9"}', {}),
    ("TRACE", "/v1/customers", None, {}),
]


def lifecycle(base: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        ids = []
        for i in range(7):
            r = c.post(
                "/v1/customers",
                json={
                    "external_id": f"life-{i}",
                    "name": f"L{i}",
                    "email": f"l{i}@example.com",
                    "budget_usd": 5,
                },
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert (
            c.post("/v1/customers", json={"external_id": "life-0", "name": "again"}).status_code
            == 409
        )
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 3}
        while True:
            page = c.get("/v1/customers", params=params).json()
            seen += [x["id"] for x in page["data"]]
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        assert sorted(seen) == sorted(ids)
        r = c.patch(f"/v1/customers/{ids[0]}", json={"monthly_budget_usd": 9, "name": "New"})
        assert r.json()["monthly_budget_usd"] == 9 and r.json()["name"] == "New"
        assert c.delete(f"/v1/customers/{ids[1]}").json()["status"] == "archived"
        assert (
            c.get("/v1/customers", params={"status": "archived"}).json()["data"][0]["id"] == ids[1]
        )
        key = c.post("/v1/keys", json={"name": "app"}).json()
        app = {"Authorization": f"Bearer {key['key']}"}
        r = httpx.get(f"{base}/v1/customers", headers=app)
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_permissions"
        r = httpx.post(
            f"{base}/v1/chat/completions",
            headers={**app, "FC-Customer": "life-2"},
            json={"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200
        for bad in ("Bearer wrong", "Bearer rs_wrong", "Basic Zm9vOmJhcg==", ""):
            r = httpx.get(f"{base}/v1/customers", headers={"Authorization": bad})
            assert r.status_code == 401, bad
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
        assert httpx.get(f"{base}/v1/models", headers=app).status_code == 401


def hostile(base: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        for method, path, body, extra in HOSTILE:
            r = c.request(method, path, content=body, headers=extra)
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:200])
            err = r.json()["error"]
            assert {"type", "code", "message", "param"} <= set(err), (path, err)
            assert "Traceback" not in r.text and 'File "' not in r.text
        assert c.get("/healthz").status_code == 200  # still up


def test_serve_over_http_on_sqlite(ringside_server: Any) -> None:
    server = ringside_server()
    lifecycle(server.base_url, server.headers())
    hostile(server.base_url, server.headers())
    # a second start on the same data is a no-op migration and keeps everything
    server.restart()
    r = httpx.get(f"{server.base_url}/v1/customers/life-3", headers=server.headers())
    assert r.status_code == 200
    assert "Traceback" not in server.log()


@pytest.mark.postgres
def test_serve_over_http_on_postgres(ringside_server: Any, pg_server: Any) -> None:
    server = ringside_server(database_url=pg_server())
    lifecycle(server.base_url, server.headers())
    hostile(server.base_url, server.headers())
    server.restart()
    assert (
        httpx.get(f"{server.base_url}/v1/customers/life-3", headers=server.headers()).status_code
        == 200
    )


def test_generated_admin_key_is_printed_once(ringside_server: Any, tmp_path: Any) -> None:
    server = ringside_server(env={"RINGSIDE_ADMIN_KEY": ""}, start=False)
    server.env.pop("RINGSIDE_ADMIN_KEY")
    server.start()
    key = (server.data_dir / "admin_key").read_text().strip()
    assert key in server.log()
    assert (server.data_dir / "admin_key").stat().st_mode & 0o777 == 0o600
    server.admin_key = key
    assert httpx.get(f"{server.base_url}/v1/customers", headers=server.headers()).status_code == 200
    server.restart()
    assert server.log().count(key) == 1


def test_unreachable_database_is_a_clear_startup_error(tmp_path: Any) -> None:
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--port",
            "0",
            "--database-url",
            f"postgresql://127.0.0.1:{port}/nope",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"RINGSIDE_ADMIN_KEY": "x" * 20, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("ringside: error: cannot open database")
    assert "Traceback" not in proc.stderr
