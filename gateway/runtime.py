"""Wires settings, database, migrations, app and server: run() headless, or
start_in_thread() for the dashboard (the gateway on its own event loop)."""

from __future__ import annotations

import asyncio
import contextlib
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
from typing import Any

import uvicorn

from gateway.admin_key import ensure_admin_key
from gateway.app import create_app
from gateway.clock import Clock, utcnow
from gateway.config import ConfigError, Settings
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
        self.settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_key, self.admin_key_generated = ensure_admin_key(self.settings)
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
        self.server = _HeadlessServer(self._config(embedded=False))
        try:
            self.server.run()
        finally:
            self.close()
        if not self.server.started:
            raise ConfigError(
                f"could not listen on {self.settings.server.host}:{self.settings.server.port}"
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
        self._open_storage()
        self.announce()
        self.close()  # no thread and no connection may cross the fork
        sock = self._bind()
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
        sock.close()
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
        except OSError as exc:
            sock.close()
            raise ConfigError(f"could not listen on {s.host}:{s.port}: {exc.strerror}") from None
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
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self.server.serve())

    def stop(self, timeout: float = 35.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    @property
    def base_url(self) -> str:
        s = self.settings.server
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
        return f"http://{host}:{s.port}"
