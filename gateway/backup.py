"""`ringside backup FILE` and `ringside restore FILE`: the SQLite ledger as one file.

Backup is online. It reads the live database through SQLite's backup API inside one read
transaction: in WAL mode a reader never blocks the gateway's writers, and holding the
snapshot keeps the copy a single point in time (without it, SQLite restarts a paged
backup whenever another process commits, which under steady traffic may never end). It
copies in steps of `PAGES_PER_STEP` pages with a short pause between them, so a large
ledger does not saturate the disk the gateway writes to. The copy is written beside
FILE, switched to a self-contained rollback-journal file, checked with
`PRAGMA integrity_check`, and only then renamed to FILE.

Restore is offline: it refuses while any process has the live database open
(`sqlite_file.exclusive`), copies FILE next to the live database, checks the copy (a
SQLite database, integrity_check ok, a Ringside schema no newer than this version),
then moves the previous database aside as `<name>.before-restore-<UTC time>` (with its
write-ahead log, if one is left) and renames the copy into place. Nothing is deleted but
a stale shared-memory index.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import ConfigError, Settings
from gateway.db import sqlite_file
from gateway.db.database import sqlite_path
from gateway.db.totals import Summary, summarize
from gateway.ledger.amounts import nanos_to_text

PAGES_PER_STEP = 1024  # 4 MiB with SQLite's default page size
STEP_PAUSE_S = 0.002
LOCK_TIMEOUT_S = 1.0

Say = Callable[[str], None]


class Refused(ConfigError):
    """The command cannot run as asked (one line on stderr, exit status 2)."""


@dataclass(frozen=True)
class Copied:
    path: Path
    size: int
    summary: Summary
    versions: list[int]
    kept: tuple[Path, ...] = ()  # restore: the files it moved aside (the replaced database)


def live_database(settings: Settings, *, command: str) -> Path:
    """The SQLite file the settings point at; Refused when the database is PostgreSQL."""
    url = settings.database_url
    if not url.startswith("sqlite"):
        hint = {
            "backup": "back it up with pg_dump (e.g. `pg_dump -Fc -f ringside.dump DBNAME`)",
            "restore": "restore it with pg_restore",
            "migrate": "migrate copies a SQLite ledger; point --data-dir / --database-url at it",
        }[command]
        raise Refused(f"the database is PostgreSQL, not SQLite: {hint}")
    return Path(sqlite_path(url))


def usd(nanos: int) -> str:
    return f"${nanos_to_text(nanos)}"


def summary_lines(s: Summary) -> list[str]:
    return [
        f"  customers            {s.customers:,}",
        f"  request log          {s.request_log_rows:,} rows: cost "
        f"{usd(s.request_log_cost_nanos)}, price {usd(s.request_log_price_nanos)}",
        f"  usage                {s.usage_requests:,} requests: cost "
        f"{usd(s.usage_cost_nanos)}, price {usd(s.usage_price_nanos)}",
        f"  wallets              {s.wallets:,}: balance {usd(s.wallet_balance_nanos)}, "
        f"held {usd(s.wallet_held_nanos)}",
        f"  wallet transactions  {s.wallet_transactions:,}",
    ]


def _check_copy(conn: sqlite3.Connection, what: Path, *, runnable: bool) -> list[int]:
    """integrity_check ok and a Ringside schema (`runnable`: one this version can run);
    its migrations."""
    result = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    if result != ["ok"]:
        raise Refused(f"{what} fails integrity_check: {'; '.join(map(str, result[:3]))}")
    versions = sqlite_file.schema_versions(conn)
    if not versions:
        raise Refused(f"{what} is a SQLite database but not a Ringside one (no schema_migration)")
    newer = sqlite_file.newer_than_known(versions) if runnable else []
    if newer:
        raise Refused(
            f"{what} comes from a newer Ringside (migrations "
            f"{', '.join(f'{v:04d}' for v in newer)} are unknown here): restore it with that "
            "version"
        )
    return versions


def _self_contained(conn: sqlite3.Connection) -> None:
    """A copy of a WAL database says WAL in its header; make it one file that opens anywhere."""
    conn.execute("PRAGMA journal_mode=DELETE").fetchall()


def _remove(path: Path) -> None:
    for p in (path, sqlite_file.companion(path, sqlite_file.JOURNAL)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# ---------------------------------------------------------------------------- backup


def backup(settings: Settings, target: Path, *, force: bool = False) -> Copied:
    live = live_database(settings, command="backup")
    if not live.is_file():
        raise Refused(f"no database in {settings.server.data_dir} ({live} does not exist)")
    if target.is_dir():
        raise Refused(f"{target} is a directory: name the backup file")
    if target.exists() and not force:
        raise Refused(f"{target} exists: choose another name, or pass --force to replace it")
    if target.exists() and target.samefile(live):
        raise Refused(f"{target} is the live database")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    _remove(partial)
    try:
        _copy_online(live, partial, settings.server.db_busy_timeout_ms / 1000)
        with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as conn:
            _self_contained(conn)
            versions = _check_copy(conn, live, runnable=False)
            summary = summarize(conn)
        _fsync(partial)
        _install(partial, target, force=force)
    finally:
        _remove(partial)
    return Copied(target, target.stat().st_size, summary, versions)


def _copy_online(live: Path, partial: Path, busy_timeout_s: float) -> None:
    try:
        src = sqlite3.connect(
            sqlite_file.uri(live, "rw"), uri=True, timeout=busy_timeout_s, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise Refused(f"cannot open {live}: {exc}") from None
    try:
        wal = src.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if wal:  # one snapshot for the whole copy; WAL writers carry on beside it
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        with contextlib.closing(sqlite3.connect(partial)) as dst:

            def pause(_status: int, _remaining: int, _total: int) -> None:
                time.sleep(STEP_PAUSE_S)

            src.backup(dst, pages=PAGES_PER_STEP if wal else -1, progress=pause)
        if wal:
            src.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise Refused(f"cannot copy {live}: {exc}") from None
    finally:
        src.close()


def _install(partial: Path, target: Path, *, force: bool) -> None:
    if force:
        os.replace(partial, target)
    else:
        try:  # never replaces a file that appeared meanwhile
            os.link(partial, target)
        except FileExistsError:
            raise Refused(f"{target} exists: pass --force to replace it") from None
        except OSError:  # a file system without hard links
            if target.exists():
                raise Refused(f"{target} exists: pass --force to replace it") from None
            os.replace(partial, target)
    sqlite_file.fsync_dir(target.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- restore


def restore(settings: Settings, source: Path, *, now: datetime | None = None) -> Copied:
    live = live_database(settings, command="restore")
    if not source.is_file():
        problem = "is not a file" if source.exists() else "does not exist"
        raise Refused(f"{source} {problem}")
    if live.exists() and source.samefile(live):
        raise Refused(f"{source} is the live database")
    _refuse_if_running(live)
    live.parent.mkdir(parents=True, exist_ok=True)
    incoming = live.with_name(f"{live.name}.restoring-{os.getpid()}")
    _remove(incoming)
    try:
        _copy_file(source, incoming)
        with contextlib.closing(sqlite3.connect(incoming, isolation_level=None)) as conn:
            _self_contained(conn)
            versions = _check_copy(conn, source, runnable=True)
            summary = summarize(conn)
        _fsync(incoming)
        kept = _swap(live, incoming, now or datetime.now(UTC))
    finally:
        _remove(incoming)
    return Copied(live, live.stat().st_size, summary, versions, kept)


def _refuse_if_running(live: Path) -> None:
    if sqlite_file.in_use(live, LOCK_TIMEOUT_S):
        raise Refused(
            f"a gateway (or another process) has {live} open: stop it first "
            "(SIGTERM lets its calls settle), then restore"
        )


def _copy_file(source: Path, incoming: Path) -> None:
    """SQLite's backup API from FILE opened read-only: a WAL copy's log comes along."""
    try:
        with (
            contextlib.closing(sqlite3.connect(sqlite_file.uri(source, "ro"), uri=True)) as src,
            contextlib.closing(sqlite3.connect(incoming)) as dst,
        ):
            src.backup(dst)
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "not a database" in text:
            raise Refused(f"{source} is not a SQLite database") from None
        raise Refused(f"cannot read {source}: {text}") from None


def _swap(live: Path, incoming: Path, now: datetime) -> tuple[Path, ...]:
    """Move the current database (if any) aside and put the restored copy in its place."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    previous = live.with_name(f"{live.name}.before-restore-{stamp}")
    n = 1
    while previous.exists():
        n += 1
        previous = live.with_name(f"{live.name}.before-restore-{stamp}-{n}")
    kept: list[Path] = []
    if live.exists():
        try:
            with sqlite_file.exclusive(live, LOCK_TIMEOUT_S) as conn:
                # Fold a log a crashed gateway left into the database it belongs to.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite_file.InUse:
            raise Refused(f"a gateway started on {live} meanwhile: stop it, then restore") from None
        except sqlite3.DatabaseError:
            pass  # a damaged database is kept as it is, log and all, below
        os.rename(live, previous)
        kept.append(previous)
    # A log left behind must never meet the restored file: SQLite would replay it into it.
    for suffix in (sqlite_file.WAL, sqlite_file.JOURNAL):
        stray = sqlite_file.companion(live, suffix)
        if stray.exists():
            os.rename(stray, sqlite_file.companion(previous, suffix))
            kept.append(sqlite_file.companion(previous, suffix))
    sqlite_file.release_stale_files(live)
    os.replace(incoming, live)
    sqlite_file.fsync_dir(live.parent)
    return tuple(kept)
