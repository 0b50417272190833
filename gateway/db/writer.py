"""SQLite's one writer thread, with group commit.

Every write runs on this thread. When several writes are waiting (concurrent reserves and
settles under load), they run in ONE transaction: `BEGIN IMMEDIATE`, each write in a
savepoint of its own (its own `db.tx()` nests as one), one `COMMIT`. A write that raises
is rolled back to its savepoint alone and its caller gets the exception, as before; the
others commit. Nobody hears "done" before the COMMIT has succeeded: if it fails, every
write of the batch gets the error (reserves fail closed, settlements retry or spool).
A database error inside a write (locked, gone) aborts the whole batch the same way.

A lone write runs exactly as before (its own transaction). Results go back to each
caller's event loop with one wake-up per loop per batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee

log = logging.getLogger("ringside.db")

MAX_BATCH = 64

_STOP = object()


@dataclass(slots=True)
class WriteJob:
    fn: Callable[[], Any]
    # Exactly one of the two: an asyncio future (with its loop) or a concurrent one.
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[Any] | None = None
    sync_future: concurrent.futures.Future[Any] | None = None
    outcome: tuple[bool, Any] = field(default=(False, None))  # (ok, value or exception)


def _deliver(jobs: list[WriteJob]) -> None:
    """On the loop's thread: resolve every job of one batch."""
    for job in jobs:
        fut = job.future
        if fut is None or fut.done():
            continue  # the caller was cancelled; the write happened (or not) regardless
        ok, value = job.outcome
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class GroupCommitWriter:
    def __init__(
        self,
        pdb: peewee.Database,
        call: Callable[[Callable[[], Any]], Any],
        unavailable: tuple[type[BaseException], ...],
    ) -> None:
        self._pdb = pdb
        self._call = call  # runs one write with the connection ensured (and reset on error)
        self._unavailable = unavailable
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ringside-db-writer", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()
        self.batches = 0  # counters, for the bench
        self.batched_writes = 0

    # ------------------------------------------------------------------ callers
    def submit_async(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._put(WriteJob(fn, loop=loop, future=future))
        return future

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(WriteJob(fn, sync_future=future))
        return future

    def _put(self, job: WriteJob) -> None:
        if not self._started:
            with self._start_lock:
                if not self._started:
                    self._thread.start()
                    self._started = True
        self._queue.put(job)

    def shutdown(self) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[WriteJob] = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            if len(batch) == 1:
                self._run_one(batch[0])
            else:
                self._run_batch(batch)
            self._resolve(batch)
            if stop:
                return

    def _run_one(self, job: WriteJob) -> None:
        try:
            job.outcome = (True, self._call(job.fn))
        except BaseException as exc:
            job.outcome = (False, exc)

    def _run_batch(self, batch: list[WriteJob]) -> None:
        self.batches += 1
        self.batched_writes += len(batch)

        def in_one_transaction() -> None:
            with self._pdb.atomic("IMMEDIATE"):
                for job in batch:
                    try:
                        with self._pdb.atomic():  # a savepoint: this write alone
                            job.outcome = (True, job.fn())
                    except self._unavailable:
                        raise  # the database itself failed: the whole batch does
                    except BaseException as exc:
                        job.outcome = (False, exc)

        try:
            self._call(in_one_transaction)
        except BaseException as exc:  # BEGIN, a write or COMMIT failed: nothing is kept
            for job in batch:
                job.outcome = (False, exc)

    def _resolve(self, batch: list[WriteJob]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[WriteJob]] = {}
        for job in batch:
            if job.sync_future is not None:
                ok, value = job.outcome
                if ok:
                    job.sync_future.set_result(value)
                else:
                    job.sync_future.set_exception(value)
            elif job.loop is not None:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a loop that closed meanwhile
                loop.call_soon_threadsafe(_deliver, jobs)
