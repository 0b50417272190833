"""What every live view (a tab, the customer detail screen) offers the refresh loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ringside_tui.bridge import Activity

T = TypeVar("T")


class LiveView(Protocol[T]):
    """The refresh loop calls `load` (awaits the gateway, off the UI thread's work) then
    `apply` (UI thread: diff into widgets). Only the visible view refreshes.

    A view gets what it reads from and acts through (the backend, the customer cache,
    the actions) when it is built; it never reaches for the app.
    """

    view_name: str

    async def load(self) -> T: ...

    def apply(self, data: T) -> int:
        """Show `data`; returns how many rows the view holds (for timings)."""
        ...

    def interested(self, activity: Activity) -> bool:
        """Whether gateway activity makes this view stale."""
        ...
