"""`CustomerCache`: every customer's row, kept current cheaply.

The Overview and Customers tabs draw from it, the palette and the requests filter search
it by name, and actions open their dialogs from it. A full read (10,000 customers: one
grouped query, ~50 ms) happens at most every `FULL_REFRESH_S`; in between, only the
customers the event bus named since the last read are re-read and merged. Other
instances sharing the database are caught by the full read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from gateway.services.snapshots import CustomerRow
from ringside_tui.backend import Backend

FULL_REFRESH_S = 10.0  # a full customers read at most this often
PARTIAL_REFRESH_MAX = 500  # more changed customers than this: a full read is cheaper


class CustomerCache:
    def __init__(self, backend: Backend, *, monotonic: Callable[[], float] = time.monotonic):
        self._backend = backend
        self._monotonic = monotonic
        self.rows: dict[str, CustomerRow] = {}
        self._read_at = 0.0
        self._stale = True
        self._changed: set[str] = set()

    def note_changed(self, customer_ids: Iterable[str]) -> None:
        """Customers the bus named: the next load re-reads them."""
        self._changed.update(customer_ids)

    def note_all_changed(self) -> None:
        """A change no customer is named for (a plan's terms, for every customer on it):
        the next load is a full read."""
        self._stale = True

    def get(self, customer_id: str) -> CustomerRow | None:
        return self.rows.get(customer_id)

    def remember(self, rows: list[CustomerRow]) -> None:
        self.rows = {c.id: c for c in rows}
        self._read_at = self._monotonic()
        self._stale = False

    async def load(self) -> list[CustomerRow]:
        """Every customer's row: a full read when due, else the changed ones merged in."""
        changed, self._changed = self._changed, set()
        full = (
            self._stale
            or self._monotonic() - self._read_at >= FULL_REFRESH_S
            or len(changed) > PARTIAL_REFRESH_MAX
            # Some publishers name customers by external id: only a full read finds them.
            or any(not cid.startswith("cus_") for cid in changed)
        )
        try:
            if full:
                self.remember(await self._backend.customers())
            elif changed:
                rows = await self._backend.customers(changed)
                merged = dict(self.rows)
                merged.update((c.id, c) for c in rows)
                self.rows = merged
        except BaseException:
            self._changed |= changed
            raise
        return list(self.rows.values())

    async def ensure(self, max_age_s: float = 5.0) -> None:
        """The names behind the palette and the requests filter, reloaded when old."""
        fresh = self._monotonic() - self._read_at < max_age_s
        if fresh and not self._stale and not self._changed:
            return
        await self.load()

    async def fetch(self, customer_id: str) -> CustomerRow | None:
        """One customer fresh from the database (forms start from current values, not a
        stale row); None when there is no such customer."""
        rows = await self._backend.customers([customer_id])
        if not rows:
            return None
        self.rows[customer_id] = rows[0]
        return rows[0]

    def find(self, query: str, limit: int = 12) -> list[CustomerRow]:
        """Customers matching any word of `query` (2+ letters) in name, external id or id."""
        words = [w for w in query.lower().split() if len(w) >= 2]
        if not words:
            return []
        out = []
        for c in self.rows.values():
            hay = f"{c.name} {c.external_id} {c.id}".lower()
            if any(w in hay for w in words):
                out.append(c)
                if len(out) >= limit:
                    break
        return out

    def resolve(self, needle: str) -> list[str]:
        """Ids of the customers `needle` names, in part (name, external id) or exactly (id)."""
        n = needle.lower()
        return [
            c.id
            for c in self.rows.values()
            if n in c.name.lower() or n in c.external_id.lower() or n == c.id.lower()
        ]
