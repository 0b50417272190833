"""Named, parameterised SQL written once in the dialect SQLite and PostgreSQL share.

Hot paths (the ledger's reserve and settle, the rate limiter) run plain SQL: building
statements through Peewee's query builder cost more than the database work itself. A
statement uses `?` placeholders; on PostgreSQL they become `%s`, and the statements named
`locked` take a row lock (`FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` already serialises
writers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.db.database import Cursor, Database

_ExecuteSql = Callable[[str, Sequence[Any]], Cursor]


class Statements:
    def __init__(self, db: Database, statements: Mapping[str, str], locked: Iterable[str]) -> None:
        self.db = db
        lock = set(locked)
        self.sql: dict[str, str] = {}
        for name, text in statements.items():
            if not db.is_sqlite:
                text = text.replace("?", "%s")
                if name in lock:
                    text += " FOR UPDATE"
            self.sql[name] = text

    def execute(self, name: str, *params: Any) -> Cursor:
        execute_sql: _ExecuteSql = self.db.peewee.execute_sql  # untyped in peewee's stubs
        return execute_sql(self.sql[name], params)

    def one(self, name: str, *params: Any) -> tuple[Any, ...] | None:
        return self.execute(name, *params).fetchone()

    def rowcount(self, name: str, *params: Any) -> int:
        return int(self.execute(name, *params).rowcount)
