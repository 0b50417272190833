"""Fail closed on PostgreSQL: with the database gone, calls get 503 and never reach the
upstream; when it comes back, the gateway reconnects by itself."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.upstream import FakeUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CONFIG = """
[providers.local]
base_url = "{url}/v1"

[prices."local/model"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2

[server]
db_busy_timeout_ms = 500
"""


class TcpForwarder:
    """127.0.0.1:port -> PostgreSQL; `cut()` drops every connection, `resume()` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def resume(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._conns.clear()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


def test_database_down_means_503_and_nothing_forwarded(
    ringside_server: Any, pg_server: Any, upstream: FakeUpstream
) -> None:
    url = urlparse(pg_server())
    fwd = TcpForwarder((url.hostname or "127.0.0.1", url.port or 5432))
    fwd.resume()
    netloc = f"{url.username + '@' if url.username else ''}127.0.0.1:{fwd.port}"
    server = ringside_server(
        CONFIG.format(url=upstream.url), database_url=url._replace(netloc=netloc).geturl()
    )
    h = server.headers()
    cus = httpx.post(
        f"{server.base_url}/v1/customers",
        headers=h,
        json={"external_id": "pg-down", "name": "P", "budget_usd": 1},
    ).json()
    call = {"model": "fc:local/model", "messages": [{"role": "user", "content": "hi"}]}
    ch = {**h, "FC-Customer": cus["id"]}
    assert (
        httpx.post(
            f"{server.base_url}/v1/chat/completions", headers=ch, json=call, timeout=30
        ).status_code
        == 200
    )
    seen = upstream.count()
    fwd.cut()
    for _ in range(3):
        r = httpx.post(f"{server.base_url}/v1/chat/completions", headers=ch, json=call, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "ledger_unavailable"
    assert upstream.count() == seen  # fail closed: nothing was forwarded
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    fwd.resume()
    r = httpx.post(f"{server.base_url}/v1/chat/completions", headers=ch, json=call, timeout=30)
    assert r.status_code == 200  # reconnected on its own
    fwd.cut()
