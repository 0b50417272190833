"""Webhooks: secret rotation grace period, retry windows, attempt response snippets.

Frozen DDL. m0001 has created these columns itself since this migration existed, so on
such a database every step is skipped; a database created before gets them added. A
rerun is a no-op.
"""

from __future__ import annotations

import peewee

from gateway.db.migrations._ddl import add_column, column_names, run

# (table, column, its definition)
COLUMNS = [
    ("webhook_endpoint", "previous_secret", '"previous_secret" VARCHAR(128)'),
    ("webhook_endpoint", "previous_secret_expires_ms", '"previous_secret_expires_ms" {BIGINT}'),
    ("webhook_endpoint", "updated_ms", '"updated_ms" {BIGINT}'),
    ("webhook_delivery", "window_start_ms", '"window_start_ms" {BIGINT}'),
    ("webhook_delivery", "last_attempt_ms", '"last_attempt_ms" {BIGINT}'),
    ("webhook_attempt", "response_body", '"response_body" TEXT'),
]


def up(db: peewee.Database) -> None:
    statements = []
    for table, name, definition in COLUMNS:
        if name not in column_names(db, table):
            statements.append(add_column(table, definition))
    # The dashboard lists the newest deliveries first. Same name as m0001's index, so a
    # database that has it already skips this.
    statements.append(
        "CREATE INDEX IF NOT EXISTS webhook_delivery_created_ms ON webhook_delivery (created_ms)"
    )
    run(db, statements)
