"""Dashboard fixtures: a real embedded gateway (uvicorn on its own loop in a thread)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from tests.conftest import ADMIN_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_runtime(data_dir: Path, **runtime_kw: Any) -> Runtime:
    settings = load_settings(
        None,
        env={"RINGSIDE_ADMIN_KEY": ADMIN_KEY},
        overrides={"data_dir": str(data_dir), "port": free_port()},
    )
    rt = Runtime(settings, **runtime_kw)
    rt.prepare()
    rt.start_in_thread()
    return rt


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = start_runtime(tmp_path / "data")
    yield rt
    rt.stop(timeout=10)


@pytest.fixture
def make_app(runtime: Runtime) -> Callable[..., RingsideApp]:
    """A dashboard on the runtime, refreshing faster than the default so tests stay quick."""

    def make(**kw: Any) -> RingsideApp:
        assert runtime.gateway is not None
        kw.setdefault("idle_s", 0.3)
        kw.setdefault("busy_s", 0.1)
        return RingsideApp(runtime.gateway, base_url=runtime.base_url, **kw)

    return make
