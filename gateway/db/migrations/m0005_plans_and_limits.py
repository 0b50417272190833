"""Plans and rate limits: the `plan` table, a customer's plan and own limits, an API key's
limits, the concurrency slots a hold carries, and each rate-limit subject's last minute.

Frozen DDL. Every existing customer keeps exactly its terms: `prepaid_own` is set where
the customer is prepaid, and no customer has a plan yet. A rerun is a no-op.
"""

from __future__ import annotations

import peewee

from gateway.db.migrations._ddl import add_column, column_names, create_index, create_table, run

# (table, column, its definition)
COLUMNS = [
    ("customer", "plan_id", '"plan_id" VARCHAR(40)'),
    ("customer", "limits", '"limits" TEXT'),
    ("customer", "allowed_models", '"allowed_models" TEXT'),
    ("customer", "prepaid_own", '"prepaid_own" {BOOL} NOT NULL DEFAULT FALSE'),
    ("api_key", "limits", '"limits" TEXT'),
    ("hold", "slots", '"slots" TEXT'),
]

TABLES = [
    create_table(
        "plan",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"external_id" VARCHAR(255)',
            '"name" VARCHAR(255) NOT NULL',
            '"monthly_budget_nanos" {BIGINT}',
            '"prepaid" {BOOL}',
            '"low_balance_threshold_nanos" {BIGINT}',
            '"markup" VARCHAR(32)',
            '"allowed_models" TEXT',
            '"limits" TEXT',
            '"created_ms" {BIGINT} NOT NULL',
            '"updated_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_index("plan_external_id", "plan", ["external_id"], unique=True),
    create_table(
        "rate_window",
        [
            '"subject" VARCHAR(64) NOT NULL PRIMARY KEY',
            '"requests" TEXT NOT NULL',
            '"tokens" TEXT NOT NULL',
            '"in_flight" {BIGINT} NOT NULL',
            '"notified" TEXT',
            '"updated_ms" {BIGINT} NOT NULL',
        ],
    ),
]


def up(db: peewee.Database) -> None:
    statements = []
    added = False
    for table, name, definition in COLUMNS:
        if name not in column_names(db, table):
            statements.append(add_column(table, definition))
            added = added or name == "prepaid_own"
    statements.append(create_index("customer_plan_id", "customer", ["plan_id"]))
    statements.extend(TABLES)
    if added:
        statements.append('UPDATE "customer" SET "prepaid_own" = "prepaid"')
    run(db, statements)
