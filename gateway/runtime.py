"""Wires settings, database, migrations, app and server: run() headless, or
start_in_thread() for the dashboard (the gateway on its own event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.admin_key import ensure_admin_key
from gateway.app import create_app
from gateway.clock import Clock, utcnow
from gateway.config import ConfigError, ServerSettings, Settings
from gateway.db.database import UNAVAILABLE_ERRORS, Database
from gateway.db.migrate import migrate
from gateway.events import EventBus
from gateway.wiring import Gateway, build_gateway

log = logging.getLogger("ringside")


GIL_SWITCH_INTERVAL_S = 0.001


def raise_open_files_limit() -> None:
    """A stream holds two sockets (client and provider): lift the soft limit on open files
    to the hard one, so thousands of streams do not stop at a default of 1,024."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------- connection limits


def _error_response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, its body our error envelope."""
    kind = "api_error" if status >= 500 else "invalid_request_error"
    body = json.dumps(
        {"error": {"type": kind, "code": code, "message": message, "param": None}}
    ).encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if status == 503:
        head.append("retry-after: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


SERVER_BUSY = _error_response(
    503, "server_busy", "Ringside has as many connections open as it allows; retry shortly."
)
HEADERS_TOO_LARGE = _error_response(
    431, "headers_too_large", "The request line and headers are larger than Ringside accepts."
)
REQUEST_TIMEOUT = _error_response(
    408, "request_timeout", "The request did not arrive in time; the connection is closed."
)
# A refused connection stays open this long (reading and discarding) so that the client reads
# the 503 instead of a reset; then it is closed whatever the client does.
REFUSED_LINGER_S = 1.0
FILES_KEPT = 256
_WARN_EVERY_S = 60.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on what one client can hold ([server]):

    - at most `max_connections` open connections; one more is answered 503 `server_busy`
      and closed at once (it never reaches the app);
    - a request's line and headers: at most `max_header_bytes` (else 431
      `headers_too_large`, never served), arrived within `header_timeout_s` of the
      connection opening or of the request's first byte (else 408 `request_timeout`; a
      connection that sent nothing is just closed);
    - its body arrived in full within `body_timeout_s` of the headers' end (else 408 and
      the app reads a disconnect);
    - idle between two requests: `keep_alive_timeout_s` (uvicorn's keep-alive timer).

    Timers are armed only when a request did not arrive whole: a request read in one go
    costs none, besides the one armed when a connection opens.
    """

    max_connections = 10_000
    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    keep_alive_timeout_s = 5.0
    _last_warning = 0.0

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.keep_alive_timeout_s  # type: ignore[assignment]
        self._refused = False  # over max_connections: answered 503, never served
        self._rejected = False  # answered 408/431: nothing more is read
        self._reading_headers = True  # between two requests, or inside a request's headers
        self._header_bytes = 0  # bytes received while reading headers
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused = True
        self.transport = transport
        self._answer_and_close(SERVER_BUSY)
        self._warn(
            "refusing connections: %d are open, as many as [server] max_connections allows",
            self.max_connections,
        )

    def _answer_and_close(self, response: bytes | None) -> None:
        """Send `response` and end the connection: our side at once (after the answer),
        the socket after REFUSED_LINGER_S, or sooner if the client closes. What the client
        still sends meanwhile is read and dropped, so that it reads the answer rather than
        a reset."""
        self._rejected = True
        self._cancel_timers()
        transport = self.transport
        if response is not None:
            transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
            self._linger = self.loop.call_later(REFUSED_LINGER_S, transport.close)
        else:  # pragma: no cover - TLS transports cannot half-close
            transport.close()

    def _warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        cls = type(self)
        if now - cls._last_warning >= _WARN_EVERY_S:
            cls._last_warning = now
            log.warning(message, *args)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # answered already: dropped
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._rejected or self.transport.is_closing():
            return
        if self._reading_headers:
            if self._header_bytes > self.max_header_bytes:
                self._reject(HEADERS_TOO_LARGE)
            elif self._header_bytes and self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    self.header_timeout_s, self._header_timeout
                )
        elif self._body_timer is None and self.cycle is not None and self.cycle.more_body:
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timeout)

    # ------------------------------------------------------------------ parser callbacks
    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._reading_headers = False
        if self._header_bytes > self.max_header_bytes:  # this read held more: count exactly
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.max_header_bytes:
                self._reject(HEADERS_TOO_LARGE)
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._reading_headers = True  # the next request may begin
        self._header_bytes = 0
        super().on_message_complete()

    # ------------------------------------------------------------------ limits
    def _reject(self, response: bytes) -> None:
        """Answer `response` and close; a connection still sending an earlier answer
        (pipelining) is closed without one."""
        if self.cycle is None or self.cycle.response_complete:
            self._answer_and_close(response)
        else:
            self._rejected = True
            self._cancel_timers()
            self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # Still answering the previous request (pipelining): its answer is not cut.
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)
            return
        log.debug("closing a connection whose request headers did not arrive in time")
        if self._header_bytes:
            self._reject(REQUEST_TIMEOUT)
        else:  # it never said anything
            self._rejected = True
            self._cancel_timers()
            self.transport.close()

    def _body_timeout(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        log.debug("closing a connection whose request body did not arrive in time")
        # The app's next receive() answers http.disconnect; what it sends is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        self._answer_and_close(None if cycle.response_started else REQUEST_TIMEOUT)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_header_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None


def connection_cap(configured: int) -> int:
    """`max_connections`, lowered to what the open-files limit allows (a file per
    connection, and FILES_KEPT for the process's own: database, logs, provider pools)."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ValueError, OSError):  # pragma: no cover
        return configured
    if soft == resource.RLIM_INFINITY:
        return configured
    allowed = max(16, soft - FILES_KEPT)
    if configured > allowed:
        log.warning(
            "[server] max_connections %d lowered to %d: the open-files limit is %d",
            configured,
            allowed,
            soft,
        )
        return allowed
    return configured


def guarded_protocol(server: ServerSettings, max_connections: int) -> type[GuardedHttpProtocol]:
    """The protocol class uvicorn builds for each connection, with `server`'s limits."""

    class RingsideHttpProtocol(GuardedHttpProtocol):
        pass

    RingsideHttpProtocol.max_connections = max_connections
    RingsideHttpProtocol.max_header_bytes = server.max_header_bytes
    RingsideHttpProtocol.header_timeout_s = server.header_timeout_s
    RingsideHttpProtocol.body_timeout_s = server.body_timeout_s
    RingsideHttpProtocol.keep_alive_timeout_s = server.keep_alive_timeout_s
    return RingsideHttpProtocol


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling: in the dashboard, Textual owns the signals."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    def capture_signals(self) -> Any:  # uvicorn >= 0.29
        return contextlib.nullcontext()


class _HeadlessServer(uvicorn.Server):
    """uvicorn that treats SIGTERM/SIGINT as "drain and exit 0".

    uvicorn re-raises a captured signal after its graceful shutdown, so the process dies by
    that signal (exit 143), which service managers read as a failure. A drained shutdown is
    a clean exit: the handlers are restored and nothing is re-raised.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock = utcnow, bus: EventBus | None = None):
        self.settings = settings
        self.clock = clock
        self.bus = bus or EventBus()
        self.db: Database | None = None
        self.gateway: Gateway | None = None
        self.admin_key: str | None = None
        self.admin_key_generated = False
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def listen(self) -> socket.socket:
        """Bind the listening socket (once); a port in use or a host that cannot be bound is
        a ConfigError, raised before the database, the app or its jobs start. With port 0,
        the settings take the port the system chose."""
        if self._socket is None:
            self._socket = self._bind()
            port = self._socket.getsockname()[1]
            if port != self.settings.server.port:
                server = replace(self.settings.server, port=port)
                self.settings = replace(self.settings, server=server)
        return self._socket

    # ------------------------------------------------------------------ setup
    def prepare(self) -> Gateway:
        """Open the database, migrate, bootstrap the admin key. Raises ConfigError."""
        self._open_storage()
        assert self.db is not None and self.admin_key is not None
        self.gateway = build_gateway(
            self.settings, self.db, admin_key=self.admin_key, bus=self.bus, clock=self.clock
        )
        return self.gateway

    def _open_storage(self) -> None:
        # The event loop and the database threads share the GIL; with the default 5 ms
        # switch interval the loop starves the writer under load (bench/RESULTS.md).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        raise_open_files_limit()
        data_dir = self.settings.server.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.admin_key, self.admin_key_generated = ensure_admin_key(self.settings)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot use data dir {str(data_dir)!r}: {reason}") from None
        try:
            self.db = Database(
                self.settings.database_url,
                busy_timeout_ms=self.settings.server.db_busy_timeout_ms,
            )
            migrate(self.db)
        except UNAVAILABLE_ERRORS as exc:
            raise ConfigError(f"cannot open database: {str(exc).strip().splitlines()[0]}") from None

    def _config(self, *, embedded: bool) -> uvicorn.Config:
        assert self.gateway is not None
        s = self.settings.server
        return uvicorn.Config(
            create_app(self.gateway),
            host=s.host,
            port=s.port,
            http=guarded_protocol(s, connection_cap(s.max_connections)),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, math.ceil(s.shutdown_grace_s)),
            log_level="warning" if embedded else s.log_level,
        )

    def announce(self, out: Any = sys.stderr) -> None:
        if self.admin_key_generated:
            print(
                f"Ringside generated an admin key (shown once; stored in "
                f"{self.settings.server.data_dir}/admin_key):\n  {self.admin_key}",
                file=out,
                flush=True,
            )

    # ------------------------------------------------------------------ headless
    def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then drain in-flight calls and return (exit 0)."""
        sock = self.listen()
        self.server = _HeadlessServer(self._config(embedded=False))
        try:
            self.server.run(sockets=[sock])
        finally:
            self.close()
        if not self.server.started:
            raise ConfigError(
                f"the gateway did not start on "
                f"{self.settings.server.host}:{self.settings.server.port}"
            )

    # ------------------------------------------------------------------ several workers
    def run_workers(self, workers: int) -> int:
        """Serve with `workers` processes on one listening socket.

        The parent migrates, binds the port and forks; each worker opens its own database
        connections and its own settlement spool, and runs the full gateway (the money
        guarantees hold across processes exactly as across instances: every reserve and
        settle is one guarded statement). Singleton jobs take the leases they already take
        across instances. SIGTERM/SIGINT are passed on; each worker drains and exits 0.
        """
        sock = self.listen()
        self._open_storage()
        self.announce()
        self.close(keep_socket=True)  # no thread and no connection may cross the fork
        children: dict[int, int] = {}
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    code = self._worker_main(index, sock)
                finally:
                    os._exit(code)
            children[pid] = index

        def forward(sig: int, _frame: Any) -> None:
            for pid in list(children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, forward)
        self.close()
        worst = 0
        while children:
            pid, status = os.wait()
            index = children.pop(pid, -1)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                log.error("worker %s (pid %s) exited with %s", index, pid, code)
                worst = worst or (code if code > 0 else 1)
        return worst

    def _bind(self) -> socket.socket:
        s = self.settings.server
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((s.host, s.port))
        except (OSError, ValueError, UnicodeError) as exc:  # in use, no such address, bad host
            sock.close()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"could not listen on {s.host}:{s.port}: {reason}") from None
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock

    def _worker_main(self, index: int, sock: socket.socket) -> int:
        server = replace(self.settings.server, spool_name=f"unsettled-w{index}.jsonl")
        self.settings = replace(self.settings, server=server)
        self.admin_key_generated = False
        self.prepare()
        self.server = _HeadlessServer(self._config(embedded=False))
        try:
            self.server.run(sockets=[sock])
        finally:
            self.close()
        return 0 if self.server.started else 1

    # ------------------------------------------------------------------ embedded
    def start_in_thread(self, timeout: float = 15.0) -> None:
        self.listen()
        self.server = _EmbeddedServer(self._config(embedded=True))
        self._thread = threading.Thread(
            target=self._thread_main, name="ringside-gateway", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(
                    f"the gateway did not start on "
                    f"{self.settings.server.host}:{self.settings.server.port}"
                )
            time.sleep(0.02)

    def _thread_main(self) -> None:
        assert self.server is not None
        # uvloop for the gateway's own loop only: installing its policy would change the
        # dashboard's loop (and its subprocess support) too.
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
        sockets = [self._socket] if self._socket is not None else None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self.server.serve(sockets=sockets))

    def stop(self, timeout: float = 35.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self, *, keep_socket: bool = False) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._socket is not None and not keep_socket:
            self._socket.close()
            self._socket = None

    @property
    def base_url(self) -> str:
        s = self.settings.server
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
        return f"http://{host}:{s.port}"
