"""Resource limits against the real process, with real slow clients and a real runaway
upstream (issue 16): slow headers and bodies are cut, an oversize header is refused, idle
connections are closed, connections beyond the cap get 503, and an upstream that streams
forever or sends a huge body is cut (a stream charged for what was counted).

Timeouts in these configs are small; assertions are on effects (closed, refused, cut,
charged) with generous deadlines, never on tight timings."""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
KEEP_ALIVE_S = 1.0
SLACK_S = 20.0  # generous: a busy 2-core CI machine
TRICKLE_S = 0.5  # a slow client's pace: one byte every half second

LIMITS = f"""
[server]
header_timeout_s = {HEADER_TIMEOUT_S}
body_timeout_s = {BODY_TIMEOUT_S}
keep_alive_timeout_s = {KEEP_ALIVE_S}
max_header_bytes = 16384
"""


# ---------------------------------------------------------------------------- raw sockets


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or the deadline passes (False)."""
    out = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:  # reset: closed
            return out, True
        if not data:
            return out, True
        out += data
    return out, False


def trickle(sock: socket.socket, data: bytes, deadline: float) -> tuple[int, bytes, bool]:
    """Send `data` a byte every TRICKLE_S, watching for the server's answer or close.
    Returns (bytes sent, what the server sent, whether it closed the connection)."""
    received = b""
    for sent, byte in enumerate(data):
        if time.monotonic() > deadline:
            return sent, received, False
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # the server closed (reset or broken pipe)
            return sent, received, True
        sock.settimeout(TRICKLE_S)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return sent + 1, received, True
        if not chunk:
            return sent + 1, received, True
        received += chunk
        more, closed = read_until_closed(sock, deadline)
        return sent + 1, received + more, closed
    return len(data), received, False


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response[9:12])


def envelope_code(response: bytes) -> str:
    body = response.split(b"\r\n\r\n", 1)[1]
    return str(json.loads(body)["error"]["code"])


def healthy(server: ServerProcess) -> bool:
    return httpx.get(f"{server.base_url}/healthz", timeout=30).status_code == 200


# Litestar's request.body() raises this when the client goes away mid-body, and the
# management API logs it as an unhandled error (gateway/api, not the runtime's to change).
CLIENT_GONE = "InternalServerException: 500: client disconnected prematurely"


def no_traceback(server: ServerProcess, *, client_gone_ok: bool = False) -> None:
    log = server.log_path.read_text(errors="replace")
    allowed = log.count(CLIENT_GONE) if client_gone_ok else 0
    assert log.count("Traceback") == allowed, log[-3000:]


# ---------------------------------------------------------------------------- slow clients


@pytest.fixture
def limited(ringside_server: Callable[..., ServerProcess]) -> ServerProcess:
    return ringside_server(config=LIMITS)


def test_a_client_sending_its_headers_a_byte_at_a_time_is_cut(limited: ServerProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400 + b"\r\n\r\n"
    started = time.monotonic()
    with connect(limited) as sock:
        sent, answer, closed = trickle(sock, request, started + HEADER_TIMEOUT_S + SLACK_S)
    assert closed, "the server kept a slow client's connection open"
    assert sent < len(request)  # cut before it finished: 400 bytes would take 200 s
    assert status_of(answer) in (408, None), answer
    if answer:
        assert envelope_code(answer) == "request_timeout"
    assert healthy(limited)
    no_traceback(limited)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/customers"])
def test_a_client_sending_its_body_a_byte_at_a_time_is_cut(
    limited: ServerProcess, path: str
) -> None:
    body = json.dumps({"model": "fc:mock/mock-fast", "name": "slow", "external_id": "slow"})
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) + 400}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with connect(limited) as sock:
        sock.sendall(head)
        sent, answer, closed = trickle(
            sock, body.encode() + b" " * 400, started + BODY_TIMEOUT_S + SLACK_S
        )
    assert closed, "the server kept a slow body's connection open"
    assert sent < len(body) + 400
    assert status_of(answer) in (408, None), answer
    if answer:
        assert envelope_code(answer) == "request_timeout"
    # The request never reached the app: nothing created, nothing forwarded.
    h = limited.headers()
    assert httpx.get(f"{limited.base_url}/v1/customers", headers=h).json()["data"] == []
    assert httpx.get(f"{limited.base_url}/v1/requests", headers=h).json()["data"] == []
    no_traceback(limited)


def test_an_oversize_header_is_refused_never_served(limited: ServerProcess) -> None:
    r = httpx.get(f"{limited.base_url}/healthz", headers={"X-Big": "a" * 100_000}, timeout=30)
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "headers_too_large"
    # 20 MB of one header, sent as fast as the socket takes it: refused, never a 200.
    with connect(limited) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(20 * 16):
                sock.sendall(b"a" * 65536)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server stopped reading: refused
        answer, closed = read_until_closed(sock, time.monotonic() + SLACK_S)
    assert closed
    assert status_of(answer) in (431, None), answer[:200]
    # Many small headers add up the same way.
    many = {f"X-H{i}": "v" * 100 for i in range(300)}
    assert httpx.get(f"{limited.base_url}/healthz", headers=many).status_code == 431
    assert healthy(limited)
    no_traceback(limited)


def test_idle_connections_are_closed(limited: ServerProcess) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1000
    if soft < wanted + 200 and (hard == resource.RLIM_INFINITY or hard >= wanted + 200):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted + 200, hard))
        soft = wanted + 200
    fresh = min(wanted, soft - 200)
    socks = [connect(limited) for _ in range(fresh)]  # they never say anything
    kept = []  # and these finish one request, then stay idle on keep-alive
    for _ in range(20):
        sock = connect(limited)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        kept.append(sock)
    open_ = {s.fileno(): s for s in socks + kept}
    answered: dict[int, bytes] = {}
    deadline = time.monotonic() + max(HEADER_TIMEOUT_S, KEEP_ALIVE_S) + SLACK_S
    with selectors.DefaultSelector() as sel:
        for sock in open_.values():
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                sock = open_[key.fd]
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    answered[key.fd] = answered.get(key.fd, b"") + data
                    continue
                sel.unregister(sock)
                del open_[key.fd]
    try:
        assert not open_, f"{len(open_)} of {fresh + len(kept)} idle connections still open"
        # The kept-alive ones got their answer first; the fresh ones got nothing at all.
        assert all(answered.get(s.fileno(), b"").startswith(b"HTTP/1.1 200") for s in kept)
        assert not any(s.fileno() in answered for s in socks)
    finally:
        for sock in socks + kept:
            sock.close()
    assert healthy(limited)
    no_traceback(limited)


def test_connections_beyond_the_cap_get_503(
    ringside_server: Callable[..., ServerProcess],
) -> None:
    cap = 16
    server = ringside_server(config=f"[server]\nmax_connections = {cap}\nheader_timeout_s = 120\n")
    holders = [connect(server) for _ in range(cap)]
    try:
        refused = b""
        deadline = time.monotonic() + SLACK_S
        while time.monotonic() < deadline and not refused:
            with connect(server) as extra:
                try:
                    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                except OSError:
                    pass
                answer, closed = read_until_closed(extra, time.monotonic() + SLACK_S)
            assert closed
            if status_of(answer) == 503:
                refused = answer
            else:
                time.sleep(0.2)
        assert status_of(refused) == 503, "no connection was refused over the cap"
        assert envelope_code(refused) == "server_busy"
        assert b"retry-after: 1" in refused.lower()
    finally:
        for sock in holders:
            sock.close()
    # The held connections gone, the gateway serves again.
    deadline = time.monotonic() + SLACK_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if healthy(server):
                break
        time.sleep(0.2)
    assert healthy(server)
    no_traceback(server)


# ---------------------------------------------------------------------------- runaway upstreams


class RunawayUpstream:
    """An OpenAI-compatible upstream gone wrong, on loopback. By model:
    `forever`: a stream that never ends (chunks as fast as they are read), or a JSON body
    that never ends; `huge`: a JSON answer declaring 1 GB; `trickle`: a stream of one chunk
    every 0.2 s, forever; `one-event`: a stream whose first event never ends. `active`
    counts the answers still being written."""

    def __init__(self) -> None:
        self.active = 0
        self.served = 0
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with upstream.lock:
                    upstream.active += 1
                    upstream.served += 1
                try:
                    model = body["model"]
                    if model == "one-event":
                        self._one_endless_event()
                    elif body.get("stream"):
                        self._stream(0.2 if model == "trickle" else 0.0)
                    else:
                        self._endless_json(declared=10**9 if model == "huge" else None)
                except OSError:
                    pass  # the gateway hung up: what this test wants
                finally:
                    self.close_connection = True
                    with upstream.lock:
                        upstream.active -= 1

            def _stream(self, pause: float) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                chunk = {
                    "id": "chatcmpl-runaway",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "forever",
                    "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}],
                }
                event = b"data: " + json.dumps(chunk).encode() + b"\n\n"
                while True:
                    self.wfile.write(event * (1 if pause else 16))
                    self.wfile.flush()
                    if pause:
                        time.sleep(pause)

            def _one_endless_event(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b'data: {"choices": [{"delta": {"content": "')
                while True:
                    self.wfile.write(b"a" * 4096)
                    self.wfile.flush()
                    time.sleep(0.001)

            def _endless_json(self, declared: int | None) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                if declared is not None:
                    self.send_header("content-length", str(declared))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b'{"id": "chatcmpl-runaway", "padding": "')
                while True:
                    self.wfile.write(b"a" * 65536)
                    self.wfile.flush()
                    time.sleep(0.001)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active == 0:
                return True
            time.sleep(0.1)
        return self.active == 0

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def runaway() -> Iterator[RunawayUpstream]:
    up = RunawayUpstream()
    yield up
    up.stop()


RUNAWAY_CONFIG = """
[providers.runaway]
base_url = "{url}/v1"
timeout_s = 30
max_response_bytes = 65536
max_stream_bytes = 262144

[providers.slowpoke]
base_url = "{url}/v1"
timeout_s = 30
max_duration_s = 2

[prices."runaway/forever"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 100000

[prices."runaway/one-event"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 100000

[prices."runaway/huge"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2

[prices."slowpoke/trickle"]
input_usd_per_mtok = 1
output_usd_per_mtok = 2
max_output_tokens = 100000
"""


@pytest.fixture
def gateway(
    ringside_server: Callable[..., ServerProcess], runaway: RunawayUpstream
) -> ServerProcess:
    return ringside_server(config=RUNAWAY_CONFIG.format(url=runaway.url))


def customer(server: ServerProcess) -> str:
    r = httpx.post(
        f"{server.base_url}/v1/customers",
        headers=server.headers(),
        json={"external_id": f"c-{time.monotonic_ns()}", "name": "C", "budget_usd": 100},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def call_log(server: ServerProcess, customer_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.base_url}/v1/requests",
        params={"customer_id": customer_id},
        headers=server.headers(),
    )
    return list(r.json()["data"])


def spent(server: ServerProcess, customer_id: str) -> Decimal:
    r = httpx.get(f"{server.base_url}/v1/customers/{customer_id}", headers=server.headers())
    return Decimal(str(r.json()["budget"]["spent_usd"]))


def stream(server: ServerProcess, customer_id: str, model: str) -> bytes:
    received = b""
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        headers=server.headers(**{"FC-Customer": customer_id}),
        json={"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]},
        timeout=httpx.Timeout(60, read=60),
    ) as r:
        assert r.status_code == 200
        for part in r.iter_bytes():
            received += part
    return received


def last_event(received: bytes) -> dict[str, Any]:
    events = [e for e in received.split(b"\n\n") if e.startswith(b"data: ")]
    return dict(json.loads(events[-1][6:]))


@pytest.mark.parametrize(
    ("model", "code"),
    [("fc:runaway/forever", "upstream_error"), ("fc:slowpoke/trickle", "upstream_timeout")],
)
def test_a_stream_that_never_ends_is_cut_and_charged_for_what_was_counted(
    gateway: ServerProcess, runaway: RunawayUpstream, model: str, code: str
) -> None:
    cid = customer(gateway)
    received = stream(gateway, cid, model)  # returns: the stream ended
    assert b"[DONE]" not in received
    assert last_event(received)["error"]["code"] == code
    relayed = received.count(b'"content": "tok "')
    assert relayed >= 1
    if model.endswith("forever"):
        assert len(received) < 262144 + 65536  # the cap, not the upstream, ended it
    assert runaway.wait_idle(SLACK_S), "the upstream connection was not closed"
    [row] = call_log(gateway, cid)
    assert row["status"] == "cut"
    assert row["output_tokens"] == relayed  # charged for what was counted, no more
    assert Decimal(str(row["cost_usd"])) > 0
    assert spent(gateway, cid) == Decimal(str(row["cost_usd"]))
    no_traceback(gateway)


def test_a_stream_event_that_never_ends_is_cut_before_it_fills_memory(
    gateway: ServerProcess, runaway: RunawayUpstream
) -> None:
    cid = customer(gateway)
    received = stream(gateway, cid, "fc:runaway/one-event")
    error = last_event(received)["error"]
    assert error["code"] == "upstream_error"
    assert "event larger than 65,536 bytes" in error["message"]
    assert runaway.wait_idle(SLACK_S), "the upstream connection was not closed"
    [row] = call_log(gateway, cid)
    assert row["status"] == "cut" and row["output_tokens"] == 0  # nothing was counted
    assert spent(gateway, cid) == Decimal(str(row["cost_usd"]))  # the input, as estimated
    no_traceback(gateway)


@pytest.mark.parametrize("model", ["fc:runaway/forever", "fc:runaway/huge"])
def test_a_json_answer_over_the_cap_fails_uncharged(
    gateway: ServerProcess, runaway: RunawayUpstream, model: str
) -> None:
    cid = customer(gateway)
    r = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers=gateway.headers(**{"FC-Customer": cid}),
        json={"model": model, "messages": [{"role": "user", "content": "go"}]},
        timeout=60,
    )
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_error"
    assert "65,536 bytes" in r.json()["error"]["message"]
    assert runaway.wait_idle(SLACK_S), "the upstream connection was not closed"
    [row] = call_log(gateway, cid)
    assert row["status"] == "error"
    assert Decimal(str(row["cost_usd"])) == 0
    assert spent(gateway, cid) == 0
    assert healthy(gateway)
    no_traceback(gateway)
