"""Move a SQLite ledger into an empty PostgreSQL database, and prove the money arrived.

`move_to_postgres` (behind `ringside migrate --to postgresql://...`):

1. refuses while a gateway has the SQLite file open, when either database carries
   migrations this version does not know, or when the PostgreSQL database is not empty
   (a row in any table but `schema_migration`) or has other sessions connected;
2. brings both schemas up to this version with the product's own migrations;
3. in ONE PostgreSQL transaction, with every table locked and the SQLite file held
   exclusively: copies every table in foreign-key order with COPY, in batches; then
   compares every table's rows (count and a digest of their content) and the ledger's
   money (`gateway.db.totals.CHECKS`: wallets, budget periods, month spend, request-log
   and rollup sums of cost, price and tokens, webhook outbox, Stripe sync state);
4. commits only when every answer matches exactly; otherwise rolls back, so the
   PostgreSQL database is left with the schema and no rows.

Ids are text, so there are no sequences to reset.
"""

from __future__ import annotations

import contextlib
import graphlib
import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import psycopg

from gateway.db import sqlite_file
from gateway.db.database import Database, postgres_params
from gateway.db.migrate import migrate
from gateway.db.totals import CHECKS, Summary, compare, summarize

APPLICATION_NAME = "ringside-migrate"  # our own sessions, told apart from a gateway's
BATCH_ROWS = 5000
_DIGEST_MOD = 2**128
_LOCK_TIMEOUT = "10s"

Say = Callable[[str], None]


class Refused(Exception):
    """The move cannot start; nothing was written."""


@dataclass
class Moved:
    tables: list[tuple[str, int]] = field(default_factory=list)  # (table, rows) in copy order
    checks: int = 0
    mismatches: list[str] = field(default_factory=list)
    summary: Summary | None = None  # PostgreSQL's totals, when verified

    @property
    def ok(self) -> bool:
        return not self.mismatches


def redact(url: str) -> str:
    """The URL with its password hidden, for printing."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunparse(parsed._replace(netloc=f"{user}:***@{netloc[1]}"))


def _tagged(url: str) -> str:
    """The URL with our application_name, so our own sessions are not taken for a gateway."""
    parsed = urlparse(url)
    query = [(k, v) for k, v in parse_qsl(parsed.query) if k != "application_name"]
    query.append(("application_name", APPLICATION_NAME))
    return urlunparse(parsed._replace(query=urlencode(query)))


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A psycopg connection, made the way the gateway makes its own (same defaults)."""
    dbname, params = postgres_params(_tagged(url))
    params = {k: v for k, v in params.items() if v is not None}
    return psycopg.connect(dbname=dbname, **params)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------- PostgreSQL side


def _pg_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, dict[str, str]]:
    """{table: {column: data_type}} in the current schema, columns in their order."""
    tables: dict[str, dict[str, str]] = {}
    for (name,) in conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ).fetchall():
        tables[name] = {}
    for table, column, data_type in conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall():
        if table in tables:
            tables[table][column] = data_type
    return tables


def _pg_order(conn: psycopg.Connection[tuple[Any, ...]], tables: Sequence[str]) -> list[str]:
    """Tables with the ones others reference first (foreign keys), otherwise by name."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for table in tables:
        sorter.add(table)
    for child, parent in conn.execute(
        "SELECT src.relname, dst.relname FROM pg_constraint c"
        " JOIN pg_class src ON src.oid = c.conrelid JOIN pg_class dst ON dst.oid = c.confrelid"
        " WHERE c.contype = 'f' AND src.relnamespace = current_schema()::regnamespace"
    ).fetchall():
        if child != parent and child in tables and parent in tables:
            sorter.add(child, parent)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def _non_empty(conn: psycopg.Connection[tuple[Any, ...]], tables: Sequence[str]) -> list[str]:
    return [
        t
        for t in sorted(tables)
        if t != "schema_migration"
        and conn.execute(f"SELECT EXISTS (SELECT 1 FROM {_q(t)})").fetchall()[0][0]
    ]


def _other_sessions(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT pid, coalesce(application_name, ''), coalesce(client_addr::text, 'local')"
        " FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        f" AND coalesce(application_name, '') <> '{APPLICATION_NAME}'"
    ).fetchall()
    return [f"pid {pid} ({app or 'no application_name'}, {addr})" for pid, app, addr in rows]


def check_target(url: str) -> None:
    """Refused unless the PostgreSQL database is empty, unused and not from a newer release."""
    try:
        conn = connect(url)
    except psycopg.Error as exc:
        raise Refused(f"cannot connect to {redact(url)}: {_first_line(exc)}") from None
    with conn:
        sessions = _other_sessions(conn)
        if sessions:
            raise Refused(
                f"{redact(url)} has other sessions connected ({'; '.join(sessions[:3])}): "
                "stop every gateway using it first"
            )
        tables = _pg_tables(conn)
        if "schema_migration" in tables:
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_migration")]
            newer = sqlite_file.newer_than_known(versions)
            if newer:
                raise Refused(
                    f"{redact(url)} has migrations {_versions(newer)} that this version of "
                    "Ringside does not know"
                )
        full = _non_empty(conn, list(tables))
        if full:
            raise Refused(
                f"{redact(url)} is not empty (rows in {', '.join(full[:5])}"
                f"{' ...' if len(full) > 5 else ''}): migrate needs a new, empty database"
            )


# ---------------------------------------------------------------------------- the move


def _versions(versions: Sequence[int]) -> str:
    return ", ".join(f"{v:04d}" for v in versions)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def migrate_schema(url: str) -> list[int]:
    """Bring a database's schema to this version with the product's migrations."""
    db = Database(url if url.startswith("sqlite") else _tagged(url))
    try:
        return migrate(db)
    finally:
        db.close()


def check_source(path: Path) -> list[int]:
    """The source's migrations; Refused when a gateway uses it or it is not a ledger we know."""
    if not path.is_file():
        raise Refused(f"no database at {path}")
    try:
        with sqlite_file.exclusive(path) as conn:
            versions = sqlite_file.schema_versions(conn)
    except sqlite_file.InUse:
        raise Refused(
            f"a gateway (or another process) has {path} open: stop it first "
            "(SIGTERM lets its calls settle)"
        ) from None
    except sqlite3.DatabaseError as exc:
        raise Refused(f"cannot read {path}: {exc}") from None
    if versions is None:
        raise Refused(f"{path} is not a Ringside database (no schema_migration table)")
    newer = sqlite_file.newer_than_known(versions)
    if newer:
        raise Refused(
            f"{path} has migrations {_versions(newer)} that this version of Ringside does "
            "not know: run the version that wrote it"
        )
    return versions


def move_to_postgres(source: Path, url: str, say: Say) -> Moved:
    """Copy the SQLite ledger at `source` into the empty PostgreSQL database at `url`."""
    versions = check_source(source)
    check_target(url)
    if set(sqlite_file.known_versions()) - set(versions):
        applied = migrate_schema(f"sqlite:///{source.absolute()}")
        say(f"  SQLite: applied migrations {_versions(applied)}")
    applied = migrate_schema(url)
    say(f"  PostgreSQL: applied migrations {_versions(applied) or '(none: already current)'}")
    try:
        with sqlite_file.exclusive(source) as src:
            with connect(url) as pg:
                moved = _copy_and_verify(src, pg, say)
                if moved.ok:
                    pg.commit()
                else:
                    pg.rollback()
            if moved.ok:
                with connect(url) as pg:
                    pg.autocommit = True
                    pg.execute("ANALYZE")  # fresh statistics for the planner after a bulk load
    except sqlite_file.InUse:
        raise Refused(f"a gateway started on {source} meanwhile: stop it and retry") from None
    return moved


def _copy_and_verify(
    src: sqlite3.Connection, pg: psycopg.Connection[tuple[Any, ...]], say: Say
) -> Moved:
    tables = _pg_tables(pg)
    pg.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
    for table in sorted(tables):
        pg.execute(f"LOCK TABLE {_q(table)} IN ACCESS EXCLUSIVE MODE")
    full = _non_empty(pg, list(tables))
    if full:  # a gateway wrote between the check and the lock
        raise Refused(f"the PostgreSQL database is no longer empty (rows in {', '.join(full)})")
    source_tables = {
        name
        for (name,) in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    unknown = sorted(source_tables - set(tables))
    if unknown:
        raise Refused(f"SQLite tables with no counterpart in PostgreSQL: {', '.join(unknown)}")

    moved = Moved()
    digests: dict[str, tuple[int, int]] = {}
    for table in _pg_order(pg, sorted(tables)):
        if table == "schema_migration" or table not in source_tables:
            continue
        types = tables[table]
        have = {row[1] for row in src.execute(f"PRAGMA table_info({_q(table)})")}
        missing = [c for c in types if c not in have]
        if missing:
            raise Refused(f"{table}: SQLite has no column {', '.join(missing)}")
        rows, digest = _copy_table(src, pg, table, types)
        digests[table] = (rows, digest)
        moved.tables.append((table, rows))
        say(f"  {table:<24} {rows:>10,} rows")

    say("Verifying ...")
    for table, (rows, digest) in digests.items():
        moved.checks += 1
        got = _pg_digest(pg, table, list(tables[table]))
        if got != (rows, digest):
            moved.mismatches.append(
                f"table {table}: SQLite {rows} rows, PostgreSQL {got[0]} rows"
                + (", contents differ" if got[0] == rows else "")
            )
    for check in CHECKS:
        if check.table not in tables or check.table not in source_tables:
            continue
        moved.checks += 1
        moved.mismatches += compare(check, "SQLite", src, "PostgreSQL", pg)
    moved.summary = summarize(pg)
    return moved


def _source_row(row: Sequence[Any], booleans: Sequence[bool]) -> tuple[Any, ...]:
    """A SQLite row as PostgreSQL holds it: 0/1 in a boolean column become False/True."""
    return tuple(
        bool(v) if flag and v in (0, 1) and not isinstance(v, str) else v
        for v, flag in zip(row, booleans, strict=True)
    )


def _digest(row: Sequence[Any]) -> int:
    return int.from_bytes(hashlib.blake2b(repr(tuple(row)).encode(), digest_size=16).digest())


def _copy_table(
    src: sqlite3.Connection,
    pg: psycopg.Connection[tuple[Any, ...]],
    table: str,
    types: dict[str, str],
) -> tuple[int, int]:
    columns = list(types)
    booleans = [types[c] == "boolean" for c in columns]
    names = ", ".join(_q(c) for c in columns)
    rows = digest = 0
    cursor = src.execute(f"SELECT {names} FROM {_q(table)}")
    with pg.cursor() as cur, cur.copy(f"COPY {_q(table)} ({names}) FROM STDIN") as copy:
        while batch := cursor.fetchmany(BATCH_ROWS):
            for raw in batch:
                row = _source_row(raw, booleans)
                digest = (digest + _digest(row)) % _DIGEST_MOD
                copy.write_row(_written(row, booleans))
            rows += len(batch)
    return rows, digest


def _written(row: tuple[Any, ...], booleans: Sequence[bool]) -> tuple[Any, ...]:
    """What COPY sends: a boolean column takes any SQLite truth value (2 becomes true, and
    then differs from the source, which the verification reports)."""
    return tuple(
        bool(v) if flag and v is not None else v for v, flag in zip(row, booleans, strict=True)
    )


def _pg_digest(
    pg: psycopg.Connection[tuple[Any, ...]], table: str, columns: list[str]
) -> tuple[int, int]:
    names = ", ".join(_q(c) for c in columns)
    rows = digest = 0
    with _server_cursor(pg, f"verify_{table}") as cur:
        cur.execute(f"SELECT {names} FROM {_q(table)}")
        while batch := cur.fetchmany(BATCH_ROWS):
            for row in batch:
                digest = (digest + _digest(row)) % _DIGEST_MOD
            rows += len(batch)
    return rows, digest


@contextlib.contextmanager
def _server_cursor(
    pg: psycopg.Connection[tuple[Any, ...]], name: str
) -> Iterator[psycopg.ServerCursor[tuple[Any, ...]]]:
    cur = pg.cursor(name=name)
    try:
        yield cur
    finally:
        cur.close()
