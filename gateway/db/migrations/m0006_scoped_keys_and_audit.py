"""Scoped keys and the audit log: an API key's kind and expiry, and the `audit_entry` table.

Frozen DDL. Every existing key stays what it was, an app key without expiry. A rerun is a
no-op.
"""

from __future__ import annotations

import peewee

from gateway.db.migrations._ddl import add_column, column_names, create_index, create_table, run

COLUMNS = [
    ("api_key", "kind", "\"kind\" VARCHAR(16) NOT NULL DEFAULT 'app'"),
    ("api_key", "expires_ms", '"expires_ms" {BIGINT}'),
]

TABLES = [
    create_table(
        "audit_entry",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"created_ms" {BIGINT} NOT NULL',
            '"key_id" VARCHAR(40)',
            '"key_kind" VARCHAR(16) NOT NULL',
            '"action" VARCHAR(64) NOT NULL',
            '"target_id" VARCHAR(64)',
            '"customer_id" VARCHAR(40)',
            '"changes" TEXT',
            '"request_id" VARCHAR(64)',
            '"idempotency_key" VARCHAR(255)',
            '"ip" VARCHAR(64)',
        ],
    ),
    create_index("audit_entry_customer_id_id", "audit_entry", ["customer_id", "id"]),
    create_index("audit_entry_action_id", "audit_entry", ["action", "id"]),
]


def up(db: peewee.Database) -> None:
    statements = []
    for table, name, definition in COLUMNS:
        if name not in column_names(db, table):
            statements.append(add_column(table, definition))
    statements.extend(TABLES)
    run(db, statements)
