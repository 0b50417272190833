"""`ringside keys rotate-admin`: a new admin key next to the bootstrap one, no downtime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e


def test_rotate_admin_while_the_gateway_serves(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    server = ringside_server()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "keys",
            "rotate-admin",
            "--data-dir",
            str(server.data_dir),
        ],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    new_key = next(line for line in out.stdout.splitlines() if line.startswith("rs_"))
    assert "Traceback" not in out.stderr
    with httpx.Client(base_url=server.base_url) as http:
        for key in (new_key, ADMIN_KEY):  # the new key, at once; the bootstrap key, still
            r = http.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        keys = r.json()["data"]
        assert [k["kind"] for k in keys] == ["admin"]
        audit = http.get(
            "/v1/audit_log?action=key.created", headers={"Authorization": f"Bearer {new_key}"}
        ).json()["data"]
        assert audit[0]["target_id"] == keys[0]["id"] and audit[0]["key_kind"] == "system"
        # Over the network the audit log records the client's address.
        headers = {"Authorization": f"Bearer {new_key}"}
        r = http.post("/v1/customers", json={"external_id": "ip-1", "name": "Ip"}, headers=headers)
        assert r.status_code == 201
        entry = http.get("/v1/audit_log?customer_id=ip-1", headers=headers).json()["data"][0]
        assert entry["ip"] == "127.0.0.1" and entry["request_id"] == r.headers["FC-Request-Id"]
