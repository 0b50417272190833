"""End-to-end fixtures: the real `ringside serve` process on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A `ringside serve` child process. `restart()` reuses the data dir, port and config."""

    args: list[str]
    env: dict[str, str]
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    admin_key: str = ADMIN_KEY
    history: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}", **extra}

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.history.append(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ringside exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"ringside did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGKILL:  # the whole session: forked workers die with it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()


@pytest.fixture
def ringside_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ringside_server(config="...", env={...}, database_url=None) -> started process."""
    servers: list[ServerProcess] = []

    def start(
        config: str = "",
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        data_dir: Path | None = None,
        start: bool = True,
        workers: int = 1,
    ) -> ServerProcess:
        n = len(servers)
        data = data_dir or tmp_path / f"data{n}"
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ]
        if config:
            cfg = tmp_path / f"ringside{n}.toml"
            cfg.write_text(config)
            args += ["--config", str(cfg)]
        if database_url:
            args += ["--database-url", database_url]
        if workers != 1:
            args += ["--workers", str(workers)]
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RINGSIDE_", "OPENAI_", "ANTHROPIC_"))
        }
        full_env.update({"RINGSIDE_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        server = ServerProcess(args, full_env, port, data, tmp_path / f"server{n}.log")
        servers.append(server)
        return server.start() if start else server

    yield start
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()
