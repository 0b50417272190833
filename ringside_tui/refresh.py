"""`RefreshLoop`: one refresh of the visible view at a time (dolphie's pattern).

A timer starts one refresh; a worker awaits the view's `load` (queries run on the
gateway's database readers, never on this thread), `apply` diffs the snapshot into the
widgets, and only then is the next timer armed, so refreshes never overlap. Gateway
activity pulls the next refresh forward, at most every `busy_s`; without activity the
view still refreshes every `idle_s`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.timer import Timer

from gateway.errors import ApiError
from ringside_tui.backend import GatewayUnavailable
from ringside_tui.messages import RefreshFinished
from ringside_tui.screens.base import LiveView

AnyView = LiveView[Any]


@dataclass(frozen=True)
class RefreshTiming:
    view: str
    query_s: float
    apply_s: float
    rows: int


class RefreshLoop:
    def __init__(
        self,
        app: App[Any],
        target: Callable[[], AnyView | None],
        *,
        idle_s: float = 1.0,
        busy_s: float = 0.5,
        on_error: Callable[[str | None], None] = lambda error: None,
    ) -> None:
        self._app = app
        self._target = target
        self.idle_s = idle_s
        self.busy_s = busy_s
        self._on_error = on_error
        self.timings: deque[RefreshTiming] = deque(maxlen=500)
        self.count = 0
        self.count_by_view: Counter[str] = Counter()
        self.last_error: str | None = None
        self._timer: Timer | None = None
        self._next_at = 0.0
        self._running = False
        self._dirty = False
        self._urgent = False
        self._last_end = 0.0

    def start(self) -> None:
        self._arm(0)

    def request(self, *, urgent: bool = False) -> None:
        """Ask for fresh data: now when urgent (an action, a tab switch), else soon."""
        self._dirty = True
        if urgent:
            self._urgent = True
        if self._running:
            return  # the running refresh re-arms when it ends
        now = time.monotonic()
        at = now if urgent else max(now, self._last_end + self.busy_s)
        if at < self._next_at:
            self._arm(at - now)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        # A zero-delay Textual timer divides by its interval when it runs late.
        delay = max(delay, 0.01)
        self._next_at = time.monotonic() + delay
        self._timer = self._app.set_timer(delay, self._start, name="refresh")

    def _start(self) -> None:
        self._timer = None
        if self._running:
            return
        target = self._target()
        if target is None:
            self._arm(self.idle_s)
            return
        self._running = True
        self._dirty = False
        self._urgent = False
        self._app.run_worker(self._refresh(target), group="refresh", exit_on_error=False)

    async def _refresh(self, target: AnyView) -> None:
        started = time.perf_counter()
        query_s = apply_s = 0.0
        rows = 0
        error: str | None = None
        try:
            data = await target.load()
            query_s = time.perf_counter() - started
            if self._still_showing(target):
                t1 = time.perf_counter()
                rows = target.apply(data)
                apply_s = time.perf_counter() - t1
        except GatewayUnavailable as exc:
            error = f"gateway unavailable: {exc}"
        except ApiError as exc:
            error = exc.message
        except Exception as exc:  # keep the dashboard alive and say what broke
            error = f"refresh failed: {type(exc).__name__}: {exc}"
        finally:
            self._running = False
            self._last_end = time.monotonic()
            if self._urgent:
                self._arm(0)
            else:
                self._arm(self.busy_s if self._dirty else self.idle_s)
        if error != self.last_error:
            self.last_error = error
            self._on_error(error)
        self.count += 1
        self.count_by_view[target.view_name] += 1
        self.timings.append(RefreshTiming(target.view_name, query_s, apply_s, rows))
        errors = [error] if error is not None else []
        self._app.post_message(RefreshFinished(target.view_name, query_s, apply_s, rows, errors))

    def _still_showing(self, target: AnyView) -> bool:
        """Apply only to a view still on screen: the visible one, or a screen still in the
        stack (a detail screen a form opened over)."""
        if target is self._target():
            return True
        return isinstance(target, Screen) and target in self._app.screen_stack
