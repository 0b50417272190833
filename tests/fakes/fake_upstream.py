"""A scripted model provider on 127.0.0.1: an `aiohttp.web` server on its own thread and loop.

Tests queue the answers they want (`add`), point a provider at `fake.url`, and read back
what was sent (`requests`). It runs on its own thread because Litestar's test client
serves the app from another thread while blocking the test's loop, and a server on the
test's loop could then never answer.

Each reply is one of:
- a whole body (`json=`, `text=` or `body=`), with any status;
- a chunked body sent piece by piece (`pieces=`), each write drained before the next, then
  ended normally, cut (`end="cut"`: the connection is dropped mid-body, as a crashed
  upstream does) or stalled (`end="hang"`: nothing more is sent until the test ends);
- no answer at all (`hang=True`: the request is read, the headers never come).

`gate_after=N` holds a streamed reply after its first N pieces until `open_gate()`, so a test
can show that the client acts on the first bytes before the rest exist.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    headers: CIMultiDict[str]
    content: bytes
    peer: Any = None  # the client's (host, port): one per connection

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    pieces: Sequence[bytes] | None = None
    end: Literal["ok", "cut", "hang"] = "ok"
    hang: bool = False
    gate_after: int | None = None
    served: int = 0  # pieces handed to the connection so far


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.unexpected: list[Seen] = []
        self._queue: list[Reply] = []
        self._reusable: Reply | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._gate: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ scripting
    def add(
        self,
        *,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        pieces: Sequence[bytes] | None = None,
        end: Literal["ok", "cut", "hang"] = "ok",
        hang: bool = False,
        gate_after: int | None = None,
        reusable: bool = False,
    ) -> Reply:
        """Queue the next answer (or, `reusable`, the answer to every request after the queue)."""
        hdrs = dict(headers or {})
        raw = b""
        if json is not None:
            raw = _json_bytes(json)
            hdrs.setdefault("content-type", "application/json")
        elif text is not None:
            raw = text.encode()
            hdrs.setdefault("content-type", "text/plain")
        elif body is not None:
            raw = body
        if pieces is not None:
            hdrs.setdefault("content-type", "text/event-stream")
        reply = Reply(status, raw, hdrs, pieces, end, hang, gate_after)
        with self._lock:
            if reusable:
                self._reusable = reply
            else:
                self._queue.append(reply)
        return reply

    def open_gate(self) -> None:
        loop, gate = self._loop, self._gate
        assert loop is not None and gate is not None
        loop.call_soon_threadsafe(gate.set)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------------ serving
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        content = await request.read()
        seen = Seen(request.method, request.path, CIMultiDict(request.headers), content, peer)
        with self._lock:
            self.requests.append(seen)
            reply = self._queue.pop(0) if self._queue else self._reusable
            if reply is None:
                self.unexpected.append(seen)
        if reply is None:
            return web.json_response({"error": {"message": "no reply queued"}}, status=599)
        assert self._stopping is not None and self._gate is not None
        if reply.hang:
            await self._stopping.wait()
            return web.Response(status=599)
        if reply.pieces is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        resp = web.StreamResponse(status=reply.status, headers=reply.headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i, piece in enumerate(reply.pieces):
            if reply.gate_after is not None and i == reply.gate_after:
                await self._gate.wait()
            reply.served = i + 1  # counted before the client can see it
            await resp.write(piece)
        if reply.end == "cut":
            assert request.transport is not None
            request.transport.abort()
            return resp
        if reply.end == "hang":
            await self._stopping.wait()
            return resp
        await resp.write_eof()
        return resp

    def start(self) -> FakeUpstream:
        ready = threading.Event()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]

        async def serve() -> None:
            self._stopping = asyncio.Event()
            self._gate = asyncio.Event()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
            ready.set()
            await self._stopping.wait()
            await self._runner.cleanup()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def sse_bytes(*payloads: Any) -> list[bytes]:
    """OpenAI-style `data:` events, one piece each (dicts are JSON-encoded)."""
    return [b"data: " + (p if isinstance(p, bytes) else _json_bytes(p)) + b"\n\n" for p in payloads]
