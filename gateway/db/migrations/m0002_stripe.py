"""Stripe usage sync: per-customer carry and last push, usage marks, batches, sync runs.

Frozen DDL (the tables of `gateway.stripe_sync.models` as this migration created them).
"""

from __future__ import annotations

import peewee

from gateway.db.migrations._ddl import create_index, create_table, run

STATEMENTS = [
    create_table(
        "stripe_batch",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"customer_id" VARCHAR(40) NOT NULL',
            '"day" VARCHAR(10) NOT NULL',
            '"seq" INTEGER NOT NULL',
            '"identifier" VARCHAR(100) NOT NULL',
            '"stripe_customer_id" VARCHAR(255)',
            '"event_name" VARCHAR(100) NOT NULL',
            '"unit" VARCHAR(20) NOT NULL',
            '"value" {BIGINT} NOT NULL',
            '"timestamp" {BIGINT} NOT NULL',
            '"price_nanos" {BIGINT} NOT NULL',
            '"cost_nanos" {BIGINT} NOT NULL',
            '"tokens" {BIGINT} NOT NULL',
            '"carry_in" {BIGINT} NOT NULL',
            '"carry_out" {BIGINT} NOT NULL',
            '"state" VARCHAR(12) NOT NULL',
            '"attempts" INTEGER NOT NULL',
            '"uncertain_since_ms" {BIGINT}',
            '"last_attempt_ms" {BIGINT}',
            '"last_error_code" VARCHAR(64)',
            '"last_error_message" TEXT',
            '"duplicate" {BOOL} NOT NULL',
            '"run_id" VARCHAR(40)',
            '"pushed_run_id" VARCHAR(40)',
            '"created_ms" {BIGINT} NOT NULL',
            '"pushed_ms" {BIGINT}',
            '"resolved_by" VARCHAR(16)',
        ],
    ),
    create_index("stripe_batch_identifier", "stripe_batch", ["identifier"], unique=True),
    create_index("stripe_batch_customer_id_state", "stripe_batch", ["customer_id", "state"]),
    create_index("stripe_batch_state", "stripe_batch", ["state"]),
    create_index(
        "stripe_batch_customer_id_day_seq",
        "stripe_batch",
        ["customer_id", "day", "seq"],
        unique=True,
    ),
    create_table(
        "stripe_customer_state",
        [
            '"customer_id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"carry_price_nanos" {BIGINT} NOT NULL',
            '"carry_cost_nanos" {BIGINT} NOT NULL',
            '"carry_tokens" {BIGINT} NOT NULL',
            '"last_pushed_day" VARCHAR(10)',
            '"last_pushed_ms" {BIGINT}',
            '"last_error_code" VARCHAR(64)',
            '"last_error_message" TEXT',
            '"last_error_ms" {BIGINT}',
            '"last_error_batch_id" VARCHAR(40)',
            '"updated_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_table(
        "stripe_sync_run",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"trigger" VARCHAR(16) NOT NULL',
            '"status" VARCHAR(16) NOT NULL',
            '"unit" VARCHAR(20) NOT NULL',
            '"event_name" VARCHAR(100) NOT NULL',
            '"customers_pushed" INTEGER NOT NULL',
            '"events" INTEGER NOT NULL',
            '"total_value" {BIGINT} NOT NULL',
            '"failures" INTEGER NOT NULL',
            '"error_code" VARCHAR(64)',
            '"result" TEXT NOT NULL',
            '"started_ms" {BIGINT} NOT NULL',
            '"finished_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_index("stripe_sync_run_started_ms", "stripe_sync_run", ["started_ms"]),
    create_table(
        "stripe_usage_mark",
        [
            '"customer_id" VARCHAR(40) NOT NULL',
            '"day" VARCHAR(10) NOT NULL',
            '"price_nanos" {BIGINT} NOT NULL',
            '"cost_nanos" {BIGINT} NOT NULL',
            '"tokens" {BIGINT} NOT NULL',
            '"next_seq" INTEGER NOT NULL',
            '"updated_ms" {BIGINT} NOT NULL',
            'PRIMARY KEY ("customer_id", "day")',
        ],
    ),
]


def up(db: peewee.Database) -> None:
    run(db, STATEMENTS)
