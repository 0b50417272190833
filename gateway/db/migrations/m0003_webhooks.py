"""Webhooks: secret rotation grace period, retry windows, attempt response snippets.

m0001 creates tables from the live models, so on a fresh database these columns already
exist: every step checks first, and a rerun is a no-op.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from gateway.db import models as m

COLUMNS: list[tuple[type[m.BaseModel], str]] = [
    (m.WebhookEndpoint, "previous_secret"),
    (m.WebhookEndpoint, "previous_secret_expires_ms"),
    (m.WebhookEndpoint, "updated_ms"),
    (m.WebhookDelivery, "window_start_ms"),
    (m.WebhookDelivery, "last_attempt_ms"),
    (m.WebhookAttempt, "response_body"),
]


def up(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    operations = []
    for model, name in COLUMNS:
        table = model._meta.table_name
        existing = {c.name for c in db.get_columns(table)}
        if name not in existing:
            field = model._meta.fields[name]
            operations.append(migrator.add_column(table, field.column_name, field))
    migrate(*operations)
    # The dashboard lists the newest deliveries first. Same name as the model's index, so a
    # fresh database (which already has it from m0001) skips it.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS webhook_delivery_created_ms ON webhook_delivery (created_ms)"
    )
