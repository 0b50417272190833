"""The `ringside webhooks listen` helper and the example receiver in examples/."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.webhooks.listen import ListenServer
from gateway.webhooks.signing import new_secret, signed_headers
from ringside_tui.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
EVENT = {
    "id": "evt_test1",
    "object": "event",
    "type": "wallet.low",
    "created": 1700000000,
    "data": {
        "customer": {"id": "cus_abc", "object": "customer"},
        "balance_usd": 1.5,
        "low_balance_threshold_usd": 2,
    },
}
BODY = json.dumps(EVENT).encode()


def serve(server: Any) -> Iterator[str]:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}/webhooks"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------- listen


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def listen(secret: str) -> Iterator[tuple[ListenServer, io.StringIO, str]]:
    out = io.StringIO()
    server = ListenServer(("127.0.0.1", 0), secret=secret, out=out, fail_first=1)
    for url in serve(server):
        yield server, out, url


def test_listen_prints_verifies_and_fails_first(
    listen: tuple[ListenServer, io.StringIO, str], secret: str
) -> None:
    _server, out, url = listen
    headers = signed_headers([secret], "evt_test1", BODY)
    assert httpx.post(url, content=BODY, headers=headers).status_code == 500  # --fail-first 1
    assert httpx.post(url, content=BODY, headers=headers).status_code == 200
    bad = signed_headers([new_secret()], "evt_test1", BODY)
    assert httpx.post(url, content=BODY, headers=bad).status_code == 400
    lines = [line for line in out.getvalue().splitlines() if not line.startswith(" ")]
    assert len(lines) == 3
    assert "wallet.low evt_test1 cus_abc - signature verified - answered 500" in lines[0]
    assert "answered 200 (delivery 2 of this id)" in lines[1]
    assert "signature INVALID" in lines[2] and "answered 400" in lines[2]
    assert '"balance_usd": 1.5' in out.getvalue()


def test_listen_without_secret_accepts_everything() -> None:
    out = io.StringIO()
    server = ListenServer(("127.0.0.1", 0), out=out, show_body=False)
    for url in serve(server):
        assert httpx.post(url, content=b"not json", headers={}).status_code == 200
    assert "signature not checked" in out.getvalue()
    assert len(out.getvalue().splitlines()) == 1


def test_cli_wires_webhooks_listen(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    args = build_parser().parse_args(
        ["webhooks", "listen", "--port", "0", "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    )
    assert args.command == "webhooks" and args.webhooks_command == "listen"
    assert args.port == 0 and args.fail_first == 0

    from gateway.webhooks import listen as listen_mod

    served: list[ListenServer] = []

    def fake_serve(self: ListenServer, poll_interval: float = 0.5) -> None:
        served.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(ListenServer, "serve_forever", fake_serve)
    from ringside_tui.cli import main

    assert main(["webhooks", "listen", "--port", "0"]) == 0
    assert served and "Listening for webhooks on http://127.0.0.1:" in capsys.readouterr().out
    assert listen_mod.main(["--port", "0", "--secret", "whsec_!!!"]) == 2


def test_cli_module_stays_free_of_textual() -> None:
    import subprocess

    code = (
        "import sys, ringside_tui.cli, gateway.webhooks.listen;"
        "sys.exit(any(m.startswith('textual') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ---------------------------------------------------------------------------- example


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "webhook_receiver_example", ROOT / "examples" / "webhook_receiver.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_receiver_verifies_dedupes_and_rejects_replays(
    tmp_path: Path, secret: str, capsys: Any
) -> None:
    example = load_example()
    server = example.Receiver(("127.0.0.1", 0), secret, str(tmp_path / "hooks.db"))
    for url in serve(server):
        headers = signed_headers([secret], "evt_test1", BODY)
        r = httpx.post(url, content=BODY, headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "processed"
        # A retry of the same event (new timestamp, same webhook-id) is acknowledged only.
        again = signed_headers([secret], "evt_test1", BODY)
        r = httpx.post(url, content=BODY, headers=again)
        assert r.status_code == 200 and r.json()["status"].startswith("duplicate")
        stale = signed_headers([secret], "evt_test2", BODY, timestamp=int(time.time()) - 600)
        r = httpx.post(url, content=BODY, headers=stale)
        assert r.status_code == 400 and "tolerance" in r.json()["status"]
        forged = signed_headers([new_secret()], "evt_test3", BODY)
        assert httpx.post(url, content=BODY, headers=forged).status_code == 400
        actions = server.db.execute("SELECT webhook_id, type FROM actions").fetchall()
        assert actions == [("evt_test1", "wallet.low")]
    assert "top up" in capsys.readouterr().out
