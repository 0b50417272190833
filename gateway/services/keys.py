"""API keys: the admin key and app keys (`rs_...`, shown once, stored as SHA-256 hashes)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from gateway.clock import Clock, to_ms
from gateway.db.database import Database
from gateway.db.models import ApiKey
from gateway.errors import NotFound
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.limits import Subject
from gateway.serializers import key_to_api
from gateway.services import validation as v
from gateway.terms import RateLimits

# App keys are cached after a successful lookup so the hot path skips the database;
# a revoke on this instance drops the entry at once, other instances within this TTL.
KEY_CACHE_TTL_S = 5.0
LAST_USED_EVERY_S = 60.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


KeyKind = Literal["admin", "app"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: KeyKind
    key_id: str | None = None
    # The key's own rate limits, as the limiter counts them (None: the key has none).
    rate_subject: Subject | None = None


class KeyService:
    def __init__(self, db: Database, bus: EventBus, admin_key: str, clock: Clock) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self._admin_hash = hash_key(admin_key).encode()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._last_used: dict[str, float] = {}
        self._pending: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ authentication
    async def authenticate(self, presented: str) -> Principal | None:
        digest = hash_key(presented)
        # Compare digests in constant time: the admin key never leaks through timing.
        if hmac.compare_digest(digest.encode(), self._admin_hash):
            return Principal("admin")
        if not presented.startswith("rs_"):
            return None
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self.db.read(self._lookup_sync, digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + KEY_CACHE_TTL_S, principal)
        if principal is not None and principal.key_id is not None:
            self._note_use(principal.key_id, now)
        return principal

    def _note_use(self, key_id: str, now: float) -> None:
        """Record `last_used` at most once a minute per key, off the request's path."""
        if now - self._last_used.get(key_id, -1e9) < LAST_USED_EVERY_S:
            return
        self._last_used[key_id] = now
        task = asyncio.get_running_loop().create_task(self._touch(key_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _touch(self, key_id: str) -> None:
        used_ms = to_ms(self.clock())

        def update() -> None:
            ApiKey.update(last_used_ms=used_ms).where(ApiKey.id == key_id).execute()

        with contextlib.suppress(Exception):  # bookkeeping only: never fail a request for it
            await self.db.write(update)

    @staticmethod
    def _lookup_sync(digest: str) -> Principal | None:
        row = ApiKey.get_or_none(ApiKey.key_hash == digest)
        if row is None or row.revoked_ms is not None:
            return None
        # The stored hash was found by an index lookup on the digest; confirm in constant time.
        if not hmac.compare_digest(row.key_hash, digest):
            return None
        limits = RateLimits.from_json(row.limits)
        return Principal("app", row.id, Subject(row.id, "key", limits) if limits.any else None)

    # ------------------------------------------------------------------ management
    async def create(self, body: Any) -> dict[str, Any]:
        body = v.require_object(body if body is not None else {})
        v.reject_unknown(body, {"name", "limits"})
        name = v.string(body, "name", required=True, max_len=100)
        limits = v.rate_limits(body, "limits")
        key = "rs_" + secrets.token_urlsafe(32)
        assert name is not None  # required=True
        out = await self.db.write(self._create_sync, name, key, limits)
        self.bus.publish("key.changed", key_id=out["id"])
        return {**out, "key": key}

    def _create_sync(self, name: str, key: str, limits: dict[str, int] | None) -> dict[str, Any]:
        row = ApiKey.create(
            id=new_id("key"),
            name=name,
            key_hash=hash_key(key),
            prefix=key[:7],
            created_ms=to_ms(self.clock()),
            limits=limits,
        )
        return key_to_api(row)

    async def list(self, include_revoked: bool = False) -> builtins.list[dict[str, Any]]:
        return await self.db.read(self._list_sync, include_revoked)

    @staticmethod
    def _list_sync(include_revoked: bool) -> builtins.list[dict[str, Any]]:
        query = ApiKey.select().order_by(ApiKey.created_ms.desc())
        if not include_revoked:
            query = query.where(ApiKey.revoked_ms.is_null())
        return [key_to_api(k) for k in query]

    async def revoke(self, key_id: str) -> dict[str, Any]:
        out, digest = await self.db.write(self._revoke_sync, key_id)
        self._cache.pop(digest, None)
        self.bus.publish("key.changed", key_id=key_id)
        return out

    def _revoke_sync(self, key_id: str) -> tuple[dict[str, Any], str]:
        with self.db.tx():
            row = ApiKey.get_or_none(ApiKey.id == key_id)
            if row is None:
                raise NotFound(f"No API key '{key_id}'.", param="id")
            if row.revoked_ms is None:
                row.revoked_ms = to_ms(self.clock())
                row.save()
        return {**key_to_api(row), "deleted": True}, row.key_hash
