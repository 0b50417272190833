"""Wires settings, database, migrations, app and server: run() headless, or
start_in_thread() for the dashboard (the gateway on its own event loop)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
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


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling: in the dashboard, Textual owns the signals."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    def capture_signals(self) -> Any:  # uvicorn >= 0.29
        import contextlib

        return contextlib.nullcontext()


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
        # The event loop and the database threads share the GIL; with the default 5 ms
        # switch interval the loop starves the writer under load (bench/RESULTS.md).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
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
        self.gateway = build_gateway(
            self.settings, self.db, admin_key=self.admin_key, bus=self.bus, clock=self.clock
        )
        return self.gateway

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
            timeout_graceful_shutdown=30,
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
        """Serve until SIGINT/SIGTERM (uvicorn owns the signals)."""
        self.server = uvicorn.Server(self._config(embedded=False))
        try:
            self.server.run()
        finally:
            self.close()
        if not self.server.started:
            raise ConfigError(
                f"could not listen on {self.settings.server.host}:{self.settings.server.port}"
            )

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
