"""Migrations are frozen DDL: they must build exactly the schema the models describe.

A model change without a migration (or a migration that drifts from the models) fails
here, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.db.database import Database
from gateway.db.migrate import discover, migrate
from gateway.db.models import ALL_MODELS
from gateway.stripe_sync.models import STRIPE_MODELS

MODELS = [*ALL_MODELS, *STRIPE_MODELS]


def sqlite_schema(db: Database) -> dict[tuple[str, str], str]:
    rows = db.peewee.execute_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
    ).fetchall()
    return {(kind, name): sql for kind, name, sql in rows}


def pg_schema(db: Database) -> dict[str, Any]:
    def q(sql: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in db.peewee.execute_sql(sql).fetchall())

    return {
        "columns": q(
            "SELECT table_name, column_name, ordinal_position, data_type, "
            "character_maximum_length, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public'"
        ),
        "indexes": q(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        ),
        "constraints": q(
            "SELECT tc.table_name, tc.constraint_name, tc.constraint_type, kc.column_name, "
            "kc.ordinal_position FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kc "
            "ON tc.constraint_name = kc.constraint_name AND tc.table_name = kc.table_name "
            "WHERE tc.table_schema = 'public'"
        ),
    }


@pytest.fixture
def open_db() -> Iterator[Callable[[str], Database]]:
    opened: list[Database] = []

    def open_(url: str) -> Database:
        for db in opened:
            db.close()  # one Database per process at a time
        opened.append(Database(url))
        return opened[-1]

    yield open_
    for db in opened:
        db.close()


def test_migrations_build_the_models_schema_on_sqlite(
    tmp_path: Path, open_db: Callable[[str], Database]
) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'migrated.db'}")
    assert migrate(db) == [v for v, _, _ in discover()]
    assert migrate(db) == []  # nothing left to apply
    migrated = db.run_sync(sqlite_schema, db)

    db = open_db(f"sqlite:///{tmp_path / 'models.db'}")
    db.run_sync(db.peewee.create_tables, MODELS, safe=True)
    assert db.run_sync(sqlite_schema, db) == migrated


@pytest.mark.postgres
def test_migrations_build_the_models_schema_on_postgres(
    pg_server: Callable[[], str], open_db: Callable[[str], Database]
) -> None:
    db = open_db(pg_server())
    assert migrate(db) == [v for v, _, _ in discover()]
    assert migrate(db) == []
    migrated = db.run_sync(pg_schema, db)

    db = open_db(pg_server())
    db.run_sync(db.peewee.create_tables, MODELS, safe=True)
    assert db.run_sync(pg_schema, db) == migrated
