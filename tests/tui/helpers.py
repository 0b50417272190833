"""Helpers for the dashboard tests: service calls on the gateway's loop, waits, screen text."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import msgspec
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable

from gateway.container import Services
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from tests.conftest import ADMIN_KEY

T = TypeVar("T")


async def call(rt: Runtime, coro: Coroutine[Any, Any, T]) -> T:
    """Run a gateway service coroutine on the gateway's own loop."""
    assert rt.gateway is not None and rt.gateway.loop is not None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, rt.gateway.loop))


def services(rt: Runtime) -> Services:
    """The running gateway's services."""
    assert rt.gateway is not None
    return rt.gateway.services


async def make_customer(rt: Runtime, external_id: str, name: str, **body: Any) -> dict[str, Any]:
    assert rt.gateway is not None
    return await call(
        rt, rt.gateway.services.customers.create({"external_id": external_id, "name": name, **body})
    )


async def retrieve(rt: Runtime, ref: str) -> dict[str, Any]:
    assert rt.gateway is not None
    return await call(rt, rt.gateway.services.customers.retrieve(ref))


async def proxy_chat(
    rt: Runtime, customer: str, *, model: str = "fc:mock/mock-fast", tokens: int = 50
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=rt.base_url, timeout=10) as client:
        return await client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "FC-Customer": customer},
            json={
                "model": model,
                "messages": [{"role": "user", "content": f"hello [mock:tokens={tokens}]"}],
                "max_tokens": tokens + 10,
            },
        )


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], Any], within: float = 10.0, what: str = ""
) -> float:
    """Let the app run until `predicate()` is truthy; returns the seconds it took.

    `within` is a deadline against a hung test, not a latency bound: keep it generous."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except Exception:
            pass
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")
        await pilot.pause(0.03)


async def wait_refreshes(app: RingsideApp, pilot: Pilot[Any], view: str, n: int = 1) -> None:
    """Let the app run until `n` more refreshes of `view` have been applied: the signal
    that whatever should (or should not) have reached the view by now has been shown."""
    count = app.refresh_loop.count_by_view
    start = count[view]
    await wait_until(pilot, lambda: count[view] >= start + n, what=f"{n} {view} refreshes")


def raw(value: Any) -> Any:
    """Service dicts carry money as msgspec.Raw (exact JSON); as text for assertions."""
    return bytes(value).decode() if isinstance(value, msgspec.Raw) else value


def cell_text(value: Any) -> str:
    return str(getattr(value, "plain", value))


def rows(table: DataTable[Any]) -> list[list[str]]:
    """The table as shown: rows in display order, cells as plain text."""
    return [[cell_text(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def column(table: DataTable[Any], index: int) -> list[str]:
    return [r[index] for r in rows(table)]


def screen_text(app: App[Any]) -> str:
    """The screen as plain text (what tmux capture-pane would show)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(
            full=True, screen_stack=app._background_screens, simplify=False
        )
    )
    return console.export_text()
