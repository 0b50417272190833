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
from datetime import datetime
from typing import Any, Literal

from gateway.audit import SYSTEM, Actor, record
from gateway.clock import Clock, iso_ms, to_ms
from gateway.db.database import Database
from gateway.db.models import ApiKey
from gateway.errors import ApiKeyExpired, InvalidRequest, NotFound
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


KeyKind = Literal["admin", "billing", "read", "app"]
KEY_KINDS: tuple[KeyKind, ...] = ("app", "read", "billing", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: KeyKind
    key_id: str | None = None  # None: the bootstrap admin key (RINGSIDE_ADMIN_KEY)
    # The key's own rate limits, as the limiter counts them (None: the key has none).
    rate_subject: Subject | None = None
    expires_ms: int | None = None


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
            principal = cached[1]
        else:
            principal = await self.db.read(self._lookup_sync, digest)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + KEY_CACHE_TTL_S, principal)
        if principal is None:
            return None
        if principal.expires_ms is not None and to_ms(self.clock()) >= principal.expires_ms:
            raise ApiKeyExpired(f"This API key expired at {iso_ms(principal.expires_ms)}.")
        if principal.key_id is not None:
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
        kind: KeyKind = row.kind if row.kind in KEY_KINDS else "app"
        subject = Subject(row.id, "key", limits) if limits.any else None
        return Principal(kind, row.id, subject, row.expires_ms)

    # ------------------------------------------------------------------ management
    async def create(self, body: Any, actor: Actor = SYSTEM) -> dict[str, Any]:
        body = v.require_object(body if body is not None else {})
        v.reject_unknown(body, {"name", "kind", "expires_at", "limits"})
        name = v.string(body, "name", required=True, max_len=100)
        kind = body.get("kind", "app")
        if kind not in KEY_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(KEY_KINDS)}.", param="kind")
        expires_ms = self._expiry(body)
        limits = v.rate_limits(body, "limits")
        key = "rs_" + secrets.token_urlsafe(32)
        assert name is not None  # required=True
        out = await self.db.write(self._create_sync, name, key, kind, expires_ms, limits, actor)
        self.bus.publish("key.changed", key_id=out["id"])
        return {**out, "key": key}

    def _expiry(self, body: dict[str, Any]) -> int | None:
        text = v.string(body, "expires_at", max_len=64)
        if text is None:
            return None
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None or not 1970 <= when.year <= 9998:
            raise InvalidRequest(
                "expires_at must be an RFC 3339 time with an offset (2027-01-01T00:00:00Z).",
                param="expires_at",
            )
        expires_ms = to_ms(when)
        if expires_ms <= to_ms(self.clock()):
            raise InvalidRequest("expires_at is in the past.", param="expires_at")
        return expires_ms

    def _create_sync(
        self,
        name: str,
        key: str,
        kind: KeyKind,
        expires_ms: int | None,
        limits: dict[str, int] | None,
        actor: Actor,
    ) -> dict[str, Any]:
        now = to_ms(self.clock())
        with self.db.tx():
            row = ApiKey.create(
                id=new_id("key"),
                name=name,
                key_hash=hash_key(key),
                prefix=key[:7],
                created_ms=now,
                limits=limits,
                kind=kind,
                expires_ms=expires_ms,
            )
            record(
                actor,
                "key.created",
                now,
                target_id=row.id,
                changes={
                    k: [None, v]
                    for k, v in {
                        "kind": kind,
                        "name": name,
                        "limits": limits,
                        "expires_at": iso_ms(expires_ms) if expires_ms is not None else None,
                    }.items()
                    if v is not None
                },
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

    async def revoke(self, key_id: str, actor: Actor = SYSTEM) -> dict[str, Any]:
        out, digest = await self.db.write(self._revoke_sync, key_id, actor)
        self._cache.pop(digest, None)
        self.bus.publish("key.changed", key_id=key_id)
        return out

    def _revoke_sync(self, key_id: str, actor: Actor) -> tuple[dict[str, Any], str]:
        with self.db.tx():
            row = ApiKey.get_or_none(ApiKey.id == key_id)
            if row is None:
                raise NotFound(f"No API key '{key_id}'.", param="id")
            if row.revoked_ms is None:
                row.revoked_ms = to_ms(self.clock())
                row.save()
                record(actor, "key.revoked", row.revoked_ms, target_id=row.id)
        return {**key_to_api(row), "deleted": True}, row.key_hash
