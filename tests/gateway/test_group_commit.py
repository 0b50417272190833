"""SQLite's writer group-commits concurrent writes without changing what each caller sees."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import peewee
import pytest

from gateway.db.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Any:
    d = Database(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        d.run_sync(lambda: d.peewee.execute_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
        yield d
    finally:
        d.close()


def insert(db: Database, k: str, fail: BaseException | None = None) -> str:
    with db.tx():
        db.peewee.execute_sql("INSERT INTO t (k, v) VALUES (?, 1)", (k,))
        if fail is not None:
            raise fail
    return k


def keys(db: Database) -> list[str]:
    return sorted(
        r[0] for r in db.run_sync(lambda: db.peewee.execute_sql("SELECT k FROM t").fetchall())
    )


async def hold_writer(db: Database) -> threading.Event:
    """Block the writer thread, so the next writes queue up and run as one batch."""
    gate, entered = threading.Event(), threading.Event()

    def blocker() -> None:
        entered.set()
        gate.wait(10)

    blocked = asyncio.ensure_future(db.write(blocker))
    await asyncio.to_thread(entered.wait, 10)
    blocked.add_done_callback(lambda _: None)
    return gate


async def queued(db: Database, n: int) -> None:
    """Wait until `n` writes wait behind the blocked writer (so they run as one batch)."""
    assert db._group is not None
    for _ in range(100_000):
        if db._group._queue.qsize() >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{n} writes never queued")


async def test_a_failing_write_rolls_back_alone_and_the_rest_commit(db: Database) -> None:
    gate = await hold_writer(db)
    writes = [
        asyncio.ensure_future(db.write(insert, db, "a")),
        asyncio.ensure_future(db.write(insert, db, "b", ValueError("refused"))),
        asyncio.ensure_future(db.write(insert, db, "c")),
        asyncio.ensure_future(db.write(insert, db, "a")),  # duplicate key: IntegrityError
    ]
    await queued(db, 4)
    gate.set()
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], peewee.IntegrityError)
    assert keys(db) == ["a", "c"]
    assert db._group is not None and db._group.batches >= 1  # they did share a transaction


async def test_a_database_failure_fails_the_whole_batch_and_keeps_nothing(db: Database) -> None:
    gate = await hold_writer(db)
    writes = [
        asyncio.ensure_future(db.write(insert, db, "x")),
        asyncio.ensure_future(db.write(insert, db, "y", peewee.OperationalError("disk I/O"))),
        asyncio.ensure_future(db.write(insert, db, "z")),
    ]
    await queued(db, 3)
    gate.set()
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert all(isinstance(r, peewee.OperationalError) for r in results), results
    assert keys(db) == []  # nobody was told "done" for a write that was not committed
    assert await db.write(insert, db, "after") == "after"  # and the writer carries on
