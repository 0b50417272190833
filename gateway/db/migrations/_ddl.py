"""Helpers for frozen migrations: DDL written out as SQL, never derived from the models.

A statement may use `{BIGINT}` and `{BOOL}`, the only column types that differ between
the two databases (SQLite: INTEGER for both; PostgreSQL: BIGINT and BOOLEAN).
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee

TYPES = {
    "sqlite": {"BIGINT": "INTEGER", "BOOL": "INTEGER"},
    "postgresql": {"BIGINT": "BIGINT", "BOOL": "BOOLEAN"},
}


def dialect(db: peewee.Database) -> str:
    return "postgresql" if isinstance(db, peewee.PostgresqlDatabase) else "sqlite"


def create_table(name: str, columns: Iterable[str]) -> str:
    """`columns`: column definitions and table constraints, in order."""
    return f'CREATE TABLE IF NOT EXISTS "{name}" ({", ".join(columns)})'


def create_index(name: str, table: str, columns: Iterable[str], *, unique: bool = False) -> str:
    kind = "UNIQUE INDEX" if unique else "INDEX"
    cols = ", ".join(f'"{c}"' for c in columns)
    return f'CREATE {kind} IF NOT EXISTS "{name}" ON "{table}" ({cols})'


def add_column(table: str, column: str) -> str:
    return f'ALTER TABLE "{table}" ADD COLUMN {column}'


def run(db: peewee.Database, statements: Iterable[str]) -> None:
    """Execute each statement with the database's column types filled in."""
    types = TYPES[dialect(db)]
    for statement in statements:
        db.execute_sql(statement.format(**types))


def column_names(db: peewee.Database, table: str) -> set[str]:
    return {c.name for c in db.get_columns(table)}
