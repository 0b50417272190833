"""Keeps in-flight holds alive, sweeps lapsed ones, replays spooled settlements.

In-flight calls register their hold here; one background task renews all of them in a
single statement every third of the TTL. If this process dies, renewals stop and any
instance's sweeper releases the holds once they lapse (within `hold_ttl_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.ledger.ledger import Ledger

log = logging.getLogger("ringside.holds")


class HoldKeeper:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.active: set[str] = set()
        # Renew well inside the TTL; sweep often, so a dead instance's holds are released
        # within about a second of lapsing (an indexed query that usually finds nothing).
        self.renew_every_s = max(ledger.hold_ttl_ms / 3000, 0.2)
        self.sweep_every_s = min(1.0, self.renew_every_s)
        self._task: asyncio.Task[None] | None = None

    def track(self, hold_id: str | None) -> None:
        if hold_id:
            self.active.add(hold_id)

    def untrack(self, hold_id: str | None) -> None:
        if hold_id:
            self.active.discard(hold_id)

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.ledger.sweep_expired_holds()
        with contextlib.suppress(Exception):
            await self.ledger.replay_spool()
        self._task = asyncio.create_task(self._run(), name="ringside-hold-keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        renewed_at = loop.time()
        while True:
            await asyncio.sleep(self.sweep_every_s)
            try:
                if self.active and loop.time() - renewed_at >= self.renew_every_s - 0.05:
                    renewed_at = loop.time()
                    await self.ledger.renew(list(self.active))
                await self.ledger.sweep_expired_holds()
                if self.ledger.spool.path.exists():
                    await self.ledger.replay_spool()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly unavailable; try again
                log.warning("hold renewal/sweep failed: %s", exc)
