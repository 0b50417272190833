"""A SQLite ledger as a file: is a gateway using it, which migrations it carries, its
companion files. Plain `sqlite3` (no Peewee, no process-wide `Database`), for the
commands that copy, restore and move a ledger.

Whether a gateway is running is read from SQLite's own locks. A gateway keeps its
connections open for its whole life; in WAL mode an open connection does not hold a
write lock while idle, so a plain `BEGIN EXCLUSIVE` would succeed beside an idle gateway.
A connection in `locking_mode=EXCLUSIVE` has to take an exclusive lock on the database
file itself, which no other open connection allows, busy or idle, and keeps it until it
closes. So `exclusive()` succeeds only when no other process has the file open (a
gateway, its `--workers`, the dashboard, a `sqlite3` shell, a running `ringside backup`),
and while it is held nothing can open the file. The kernel drops the locks of a process
that dies, so a crashed gateway never looks like a running one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

# Files SQLite keeps beside a database: the write-ahead log, its shared-memory index, and
# the rollback journal (not used in WAL mode, but a copy may arrive with one).
WAL, SHM, JOURNAL = "-wal", "-shm", "-journal"


class InUse(Exception):
    """Another process has the database open."""


def uri(path: Path, mode: str) -> str:
    """A `file:` URI; `mode=ro` / `mode=rw` never create a missing file."""
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def companion(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


@contextlib.contextmanager
def exclusive(path: Path, timeout_s: float = 1.0) -> Iterator[sqlite3.Connection]:
    """Hold the database so that no other process can use it; InUse when one does.

    Opening it replays a log a crashed gateway left behind. Closing it checkpoints the log
    into the database and removes it (SQLite does, as the last connection)."""
    conn = sqlite3.connect(uri(path, "rw"), uri=True, timeout=timeout_s, isolation_level=None)
    try:
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("COMMIT")  # the lock stays: locking_mode=EXCLUSIVE keeps it
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise InUse(str(path)) from None
            raise
        yield conn
    finally:
        conn.close()


def in_use(path: Path, timeout_s: float = 1.0) -> bool:
    """True while another process has the database open (a gateway running on it)."""
    if not path.exists():
        return False
    try:
        with exclusive(path, timeout_s):
            return False
    except InUse:
        return True
    except sqlite3.DatabaseError:
        return False  # not a database (damaged): no gateway can be serving from it


def release_stale_files(path: Path) -> None:
    """After `exclusive()` closed: the shared-memory index a crashed process left is stale
    (it is rebuilt from the log, and the log is gone). Never call while a log remains."""
    if not companion(path, WAL).exists():
        with contextlib.suppress(FileNotFoundError):
            companion(path, SHM).unlink()


def schema_versions(conn: sqlite3.Connection) -> list[int] | None:
    """The migrations a database carries; None when it has no `schema_migration` table."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migration'"
    ).fetchone()
    if row is None:
        return None
    return sorted(int(v) for (v,) in conn.execute("SELECT version FROM schema_migration"))


def known_versions() -> list[int]:
    """The migrations this version of Ringside has."""
    from gateway.db.migrate import discover

    return [version for version, _, _ in discover()]


def newer_than_known(versions: list[int]) -> list[int]:
    """Versions this Ringside does not know: the database comes from a newer release."""
    known = set(known_versions())
    return [v for v in versions if v not in known]


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
