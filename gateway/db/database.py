"""Database setup and the bridge that keeps synchronous Peewee off the event loop.

SQLite: one writer thread (every write transaction, BEGIN IMMEDIATE; concurrent writes
group-committed, see `writer.py`) plus a small reader pool (WAL lets readers run beside
the writer). PostgreSQL: a pool of
threads, each with its own connection. Callers never touch Peewee from a coroutine
directly: they `await db.write(fn, ...)` or `await db.read(fn, ...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import peewee

from gateway.db.models import database_proxy
from gateway.db.writer import GroupCommitWriter

log = logging.getLogger("ringside.db")

P = ParamSpec("P")
T = TypeVar("T")

# Errors that mean "the database is not there / not usable right now" (fail closed).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    peewee.OperationalError,
    peewee.InterfaceError,
)


_ACTIVE: Database | None = None


def tuples(query: Any) -> list[tuple[Any, ...]]:
    """A select's rows as plain tuples (peewee's stubs type `.tuples()` rows as models)."""
    return [tuple(row) for row in query.tuples()]


class Cursor(Protocol):
    """The DB-API cursor peewee's `execute_sql` answers (sqlite3's or psycopg's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


def sqlite_path(url: str) -> str:
    """The file of a sqlite:/// URL: sqlite:///relative/path and sqlite:////absolute/path, as
    SQLAlchemy spells them."""
    path = unquote(urlparse(url).path)
    if path.startswith("/") and not url.startswith("sqlite:////"):
        path = path[1:]
    return path[1:] if path.startswith("//") else path


def postgres_params(url: str) -> tuple[str, dict[str, Any]]:
    """(database name, connection keywords) for a postgresql:// URL, as the gateway connects:
    host 127.0.0.1 and port 5432 unless given, a 3 s connect timeout; other query
    parameters go to libpq as they are (sslmode=..., ...)."""
    parsed = urlparse(url)
    query: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    params: dict[str, Any] = {
        "user": unquote(parsed.username) if parsed.username else None,
        "password": unquote(parsed.password) if parsed.password else None,
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "connect_timeout": int(query.pop("connect_timeout", "3")),
        **query,
    }
    return unquote(parsed.path.lstrip("/")), params


# Tables whose rows `Database.lock_row` may lock (read-modify-write of a JSON column, or a
# row another transaction must not delete meanwhile).
_LOCKABLE = frozenset({"customer", "plan"})


class Database:
    _closed: bool

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, pool_size: int = 8) -> None:
        self.url = url
        parsed = urlparse(url)
        self.is_sqlite = parsed.scheme == "sqlite"
        self.busy_timeout_ms = busy_timeout_ms
        if self.is_sqlite:
            path = sqlite_path(url)
            if path in ("", ":memory:"):
                raise ValueError("in-memory SQLite cannot be shared between threads; give a file")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.path: str | None = path
            self.peewee: peewee.Database = peewee.SqliteDatabase(
                path,
                timeout=busy_timeout_ms / 1000,
                pragmas={
                    "journal_mode": "wal",
                    "synchronous": "normal",  # durable across process crashes in WAL mode
                    "busy_timeout": busy_timeout_ms,
                    "foreign_keys": 1,
                    "cache_size": -16000,
                },
                check_same_thread=False,
            )
            self._group: GroupCommitWriter | None = GroupCommitWriter(
                self.peewee, self._call, UNAVAILABLE_ERRORS
            )
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="ringside-db-reader")
        else:
            self.path = None
            dbname, params = postgres_params(url)
            self.peewee = peewee.PostgresqlDatabase(dbname, autoconnect=True, **params)
            self._group = None
            # One pool: each thread has its own connection and its own transactions.
            self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="ringside-db")
        global _ACTIVE
        if _ACTIVE is not None and not _ACTIVE._closed:
            # The models reach the database through one process-wide proxy: a second open
            # Database would silently re-point every query of the first.
            raise RuntimeError(
                f"a Database ({_ACTIVE.url}) is already open in this process; close it first"
            )
        database_proxy.initialize(self.peewee)
        _ACTIVE = self
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sync helpers
    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """A write transaction: BEGIN IMMEDIATE on SQLite so two writers never deadlock."""
        self._ensure_connection()
        if self.is_sqlite:
            with self.peewee.atomic("IMMEDIATE"):
                yield
        else:
            with self.peewee.atomic():
                yield

    def lock_row(self, table: str, row_id: str, *, shared: bool = False) -> bool:
        """Inside a write transaction: lock one row by id until the transaction ends
        (PostgreSQL `FOR UPDATE` / `FOR SHARE`; SQLite's BEGIN IMMEDIATE already serialises
        writers). Whether the row exists. `table` is one of the models' table names."""
        if table not in _LOCKABLE:
            raise ValueError(f"cannot lock rows of {table!r}")
        if self.is_sqlite:
            sql, params = f'SELECT 1 FROM "{table}" WHERE id = ?', (row_id,)
        else:
            mode = "SHARE" if shared else "UPDATE"
            sql, params = f'SELECT 1 FROM "{table}" WHERE id = %s FOR {mode}', (row_id,)
        return self.peewee.execute_sql(sql, params).fetchone() is not None

    def _ensure_connection(self) -> None:
        if self.peewee.is_closed():
            self.peewee.connect(reuse_if_open=True)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            self._ensure_connection()
            return fn(*args, **kwargs)
        except UNAVAILABLE_ERRORS:
            # Drop this thread's connection so the next call reconnects cleanly.
            with contextlib.suppress(Exception):
                self.peewee.close()
            raise

    # ------------------------------------------------------------------ async bridge
    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._group is not None:
            result: T = await self._group.submit_async(functools.partial(fn, *args, **kwargs))
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(self._call, fn, *args, **kwargs)
        )

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(self._call, fn, *args, **kwargs)
        )

    def run_sync(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """For callers outside any event loop (CLI, migrations, tests): same writer thread."""
        if self._group is not None:
            result: T = self._group.submit(functools.partial(fn, *args, **kwargs)).result()
            return result
        return self._pool.submit(functools.partial(self._call, fn, *args, **kwargs)).result()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True

        def _close_conn() -> None:
            with contextlib.suppress(Exception):
                self.peewee.close()

        # Each worker thread holds its own connection; close the ones we can reach.
        if self._group is not None:
            with contextlib.suppress(Exception):
                self._group.submit(_close_conn).result(timeout=5)
            self._group.shutdown()
        with contextlib.suppress(Exception):
            self._pool.submit(_close_conn).result(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        _close_conn()
