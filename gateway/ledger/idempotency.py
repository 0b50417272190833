"""Idempotency-Key, with Stripe's semantics, for every money-moving POST.

  same key + same body   -> the stored response, replayed
  same key + other body  -> 409 idempotency_key_reused
  same key, still running -> 409 idempotency_key_in_progress

The stored response is written in the same transaction as the operation's own writes,
so a crash can never leave a top-up applied without its replayable answer (or the
reverse). A key whose first request died mid-way unlocks after LOCK_MS and runs again.
Both windows are real time: the gateway passes its wall clock (see `gateway.clock`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from gateway.clock import Clock, now_ms, utcnow
from gateway.db.database import UNAVAILABLE_ERRORS, Database
from gateway.db.models import IdempotencyRecord
from gateway.errors import (
    ApiError,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidRequest,
    LedgerUnavailable,
)
from gateway.jsoncodec import decode_lenient

KEEP_MS = 24 * 3600 * 1000  # keys are honoured for at least 24 hours (Stripe's window)
LOCK_MS = 60 * 1000
MAX_KEY_LEN = 255

T = TypeVar("T")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    replayed: bool


class Idempotency:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def run(
        self,
        key: str | None,
        scope: str,
        raw_body: bytes,
        operation: Callable[[], tuple[int, bytes]],
    ) -> StoredResponse:
        """Run the sync `operation` (in the writer thread) at most once per key.

        `operation` runs inside the write transaction that also stores its response.
        """
        if key is None:
            status, body = await self._write(self._plain, operation)
            return StoredResponse(status, body, False)
        if not key or len(key) > MAX_KEY_LEN or not key.isprintable():
            raise InvalidRequest(
                f"Idempotency-Key must be 1-{MAX_KEY_LEN} printable characters.",
                param="Idempotency-Key",
            )
        digest = hashlib.sha256(_canonical(raw_body)).hexdigest()
        stored = await self._write(self._claim, key, scope, digest)
        if stored is not None:
            return stored
        try:
            status, body = await self._write(self._execute, key, scope, operation)
        except BaseException:
            # The operation failed and wrote nothing: free the key so a retry runs again.
            await self._write(self._release, key, scope)
            raise
        return StoredResponse(status, body, False)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self.db.write(fn, *args)
        except UNAVAILABLE_ERRORS:
            raise LedgerUnavailable(
                "The ledger is unavailable; nothing was changed. Retry with the same key."
            ) from None

    def _plain(self, operation: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        with self.db.tx():
            return operation()

    def _claim(self, key: str, scope: str, digest: str) -> StoredResponse | None:
        now = now_ms(self.clock)
        with self.db.tx():
            rec = IdempotencyRecord.get_or_none(
                IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
            )
            if rec is not None and rec.created_ms < now - KEEP_MS:
                rec.delete_instance()
                rec = None
            if rec is None:
                inserted = (
                    IdempotencyRecord.insert(
                        key=key,
                        scope=scope,
                        request_hash=digest,
                        status="in_progress",
                        created_ms=now,
                        locked_until_ms=now + LOCK_MS,
                    )
                    .on_conflict_ignore()
                    .execute()
                )
                if not inserted and IdempotencyRecord.get_or_none(
                    IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
                ):
                    # Another instance claimed the key between our read and our insert.
                    raise IdempotencyKeyInProgress()
                return None
            if rec.request_hash != digest:
                raise IdempotencyKeyReused()
            if rec.status == "done":
                # Written together with status "done" (`_execute`).
                assert rec.response_status is not None and rec.response_body is not None
                return StoredResponse(rec.response_status, rec.response_body.encode(), True)
            if rec.locked_until_ms > now:
                raise IdempotencyKeyInProgress()
            # The first attempt died without finishing (and wrote nothing): take it over.
            rec.locked_until_ms = now + LOCK_MS
            rec.save()
            return None

    def _execute(
        self, key: str, scope: str, operation: Callable[[], tuple[int, bytes]]
    ) -> tuple[int, bytes]:
        with self.db.tx():
            status, body = operation()
            IdempotencyRecord.update(
                status="done", response_status=status, response_body=body.decode()
            ).where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key).execute()
        return status, body

    def _release(self, key: str, scope: str) -> None:
        with self.db.tx():
            IdempotencyRecord.delete().where(
                IdempotencyRecord.scope == scope,
                IdempotencyRecord.key == key,
                IdempotencyRecord.status == "in_progress",
            ).execute()

    def purge_expired_sync(self) -> int:
        with self.db.tx():
            return int(
                IdempotencyRecord.delete()
                .where(IdempotencyRecord.created_ms < now_ms(self.clock) - 2 * KEEP_MS)
                .execute()
            )


def _canonical(raw: bytes) -> bytes:
    """Key order and whitespace don't make a different request (Stripe compares params)."""
    try:
        return _sorted_encoder.encode(decode_lenient(raw))
    except Exception:
        return raw


_sorted_encoder = msgspec.json.Encoder(decimal_format="number", order="sorted")


__all__ = ["ApiError", "Idempotency", "StoredResponse"]
