"""What every live view (a tab, the customer detail screen) offers the refresh loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ringside_tui.bridge import Activity, Backend


@runtime_checkable
class LiveView(Protocol):
    """The app's refresh loop calls `load` (awaits the gateway, off the UI thread's work)
    then `apply` (UI thread: diff into widgets). Only the visible view refreshes."""

    view_name: str

    async def load(self, backend: Backend) -> Any: ...

    def apply(self, data: Any) -> int:
        """Show `data`; returns how many rows the view holds (for timings)."""
        ...

    def interested(self, activity: Activity) -> bool:
        """Whether gateway activity makes this view stale."""
        ...
