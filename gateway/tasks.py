"""Background tasks the gateway's shutdown waits for (settlements, webhook sends, ...)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from gateway.errors import ApiError

log = logging.getLogger("ringside.tasks")

T = TypeVar("T")


class BackgroundTasks:
    """Tasks that must finish before the database closes. Safe to use from one loop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: a caller that went away never awaits it
        if exc is not None and not isinstance(exc, ApiError):
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def cancel_all(self, timeout_s: float) -> None:
        """Cancel what is still running (each task settles what it must on its way out)
        and wait up to `timeout_s` for them to finish."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every task, including ones started meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(list(self._tasks), timeout=remaining)
