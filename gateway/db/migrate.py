"""Apply pending migrations; a second run is a no-op. Safe with several instances starting."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from types import ModuleType

from gateway.clock import Clock, now_ms, utcnow
from gateway.db import migrations as migrations_pkg
from gateway.db.database import Database
from gateway.db.migrations._ddl import create_table, run
from gateway.db.models import SchemaMigration

log = logging.getLogger("ringside.db")

_NAME = re.compile(r"^m(\d{4})_(\w+)$")
_PG_LOCK_ID = 0x52494E47  # "RING": serialises migrations across instances on PostgreSQL
# The bookkeeping table, frozen like the migrations themselves.
_SCHEMA_MIGRATION = create_table(
    "schema_migration",
    [
        '"version" INTEGER NOT NULL PRIMARY KEY',
        '"name" VARCHAR(255) NOT NULL',
        '"applied_ms" {BIGINT} NOT NULL',
    ],
)


def discover() -> list[tuple[int, str, ModuleType]]:
    found = []
    for info in pkgutil.iter_modules(migrations_pkg.__path__):
        match = _NAME.match(info.name)
        if match:
            module = importlib.import_module(f"{migrations_pkg.__name__}.{info.name}")
            found.append((int(match.group(1)), match.group(2), module))
    return sorted(found, key=lambda x: x[0])


def migrate(db: Database, clock: Clock = utcnow) -> list[int]:
    """Bring the schema up to date. Returns the versions applied by this call."""
    return db.run_sync(_migrate, db, clock)


def _migrate(db: Database, clock: Clock) -> list[int]:
    pdb = db.peewee
    applied_now: list[int] = []
    if not db.is_sqlite:
        pdb.execute_sql("SELECT pg_advisory_lock(%s)", (_PG_LOCK_ID,))
    try:
        run(pdb, [_SCHEMA_MIGRATION])
        done = {row.version for row in SchemaMigration.select(SchemaMigration.version)}
        for version, name, module in discover():
            if version in done:
                continue
            with db.tx():
                # Re-check inside the write lock: another process may have won the race.
                if SchemaMigration.get_or_none(SchemaMigration.version == version):
                    continue
                module.up(pdb)
                SchemaMigration.create(version=version, name=name, applied_ms=now_ms(clock))
            applied_now.append(version)
            log.info("applied migration %04d_%s", version, name)
    finally:
        if not db.is_sqlite:
            pdb.execute_sql("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_ID,))
    return applied_now
