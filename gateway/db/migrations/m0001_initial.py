"""The initial schema: customers, keys, ledger, request log, rollups, events, webhooks.

Frozen DDL, exactly what this migration has created since m0003 existed: the columns and
the index m0003 adds to databases created before it are already part of these tables.
"""

from __future__ import annotations

import peewee

from gateway.db.migrations._ddl import create_index, create_table, run

STATEMENTS = [
    create_table(
        "api_key",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"name" VARCHAR(255) NOT NULL',
            '"key_hash" VARCHAR(64) NOT NULL',
            '"prefix" VARCHAR(16) NOT NULL',
            '"created_ms" {BIGINT} NOT NULL',
            '"revoked_ms" {BIGINT}',
            '"last_used_ms" {BIGINT}',
        ],
    ),
    create_index("api_key_key_hash", "api_key", ["key_hash"], unique=True),
    create_table(
        "budget_period",
        [
            '"customer_id" VARCHAR(40) NOT NULL',
            '"period" VARCHAR(7) NOT NULL',
            '"spent_nanos" {BIGINT} NOT NULL',
            '"held_nanos" {BIGINT} NOT NULL',
            '"warned" {BOOL} NOT NULL',
            '"exceeded" {BOOL} NOT NULL',
            'PRIMARY KEY ("customer_id", "period")',
        ],
    ),
    create_table(
        "customer",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"external_id" VARCHAR(255) NOT NULL',
            '"name" VARCHAR(255) NOT NULL',
            '"email" VARCHAR(320)',
            '"status" VARCHAR(16) NOT NULL',
            '"monthly_budget_nanos" {BIGINT}',
            '"markup" VARCHAR(32)',
            '"prepaid" {BOOL} NOT NULL',
            '"low_balance_threshold_nanos" {BIGINT}',
            '"stripe_customer_id" VARCHAR(255)',
            '"metadata" TEXT',
            '"created_ms" {BIGINT} NOT NULL',
            '"updated_ms" {BIGINT} NOT NULL',
            '"archived_ms" {BIGINT}',
        ],
    ),
    create_index("customer_external_id", "customer", ["external_id"], unique=True),
    create_index("customer_status", "customer", ["status"]),
    create_index("customer_stripe_customer_id", "customer", ["stripe_customer_id"]),
    create_table(
        "event",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"type" VARCHAR(64) NOT NULL',
            '"customer_id" VARCHAR(40)',
            '"data" TEXT NOT NULL',
            '"created_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_index("event_type", "event", ["type"]),
    create_index("event_customer_id", "event", ["customer_id"]),
    create_index("event_created_ms", "event", ["created_ms"]),
    create_table(
        "hold",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"request_id" VARCHAR(40) NOT NULL',
            '"customer_id" VARCHAR(40)',
            '"period" VARCHAR(7) NOT NULL',
            '"budget_nanos" {BIGINT} NOT NULL',
            '"wallet_nanos" {BIGINT} NOT NULL',
            '"status" VARCHAR(12) NOT NULL',
            '"created_ms" {BIGINT} NOT NULL',
            '"expires_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_index("hold_request_id", "hold", ["request_id"]),
    create_index("hold_status_expires_ms", "hold", ["status", "expires_ms"]),
    create_table(
        "idempotency_record",
        [
            '"key" VARCHAR(255) NOT NULL',
            '"scope" VARCHAR(255) NOT NULL',
            '"request_hash" VARCHAR(64) NOT NULL',
            '"status" VARCHAR(12) NOT NULL',
            '"response_status" INTEGER',
            '"response_body" TEXT',
            '"created_ms" {BIGINT} NOT NULL',
            '"locked_until_ms" {BIGINT} NOT NULL',
            'PRIMARY KEY ("scope", "key")',
        ],
    ),
    create_index("idempotency_record_created_ms", "idempotency_record", ["created_ms"]),
    create_table(
        "lease",
        [
            '"name" VARCHAR(64) NOT NULL PRIMARY KEY',
            '"holder" VARCHAR(64) NOT NULL',
            '"expires_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_table(
        "request_log",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"customer_id" VARCHAR(40)',
            '"provider" VARCHAR(64) NOT NULL',
            '"model" VARCHAR(255) NOT NULL',
            '"endpoint" VARCHAR(32) NOT NULL',
            '"stream" {BOOL} NOT NULL',
            '"status" VARCHAR(16) NOT NULL',
            '"http_status" INTEGER NOT NULL',
            '"error_code" VARCHAR(64)',
            '"input_tokens" {BIGINT} NOT NULL',
            '"cached_tokens" {BIGINT} NOT NULL',
            '"cache_write_tokens" {BIGINT} NOT NULL',
            '"output_tokens" {BIGINT} NOT NULL',
            '"reasoning_tokens" {BIGINT} NOT NULL',
            '"cost_nanos" {BIGINT} NOT NULL',
            '"price_nanos" {BIGINT} NOT NULL',
            '"held_nanos" {BIGINT} NOT NULL',
            '"over_hold" {BOOL} NOT NULL',
            '"latency_ms" INTEGER NOT NULL',
            '"created_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_index(
        "request_log_customer_id_created_ms", "request_log", ["customer_id", "created_ms"]
    ),
    create_index("request_log_created_ms", "request_log", ["created_ms"]),
    create_table(
        "usage_daily",
        [
            '"day" VARCHAR(10) NOT NULL',
            '"customer_id" VARCHAR(40) NOT NULL',
            '"model" VARCHAR(255) NOT NULL',
            '"requests" {BIGINT} NOT NULL',
            '"input_tokens" {BIGINT} NOT NULL',
            '"cached_tokens" {BIGINT} NOT NULL',
            '"cache_write_tokens" {BIGINT} NOT NULL',
            '"output_tokens" {BIGINT} NOT NULL',
            '"reasoning_tokens" {BIGINT} NOT NULL',
            '"cost_nanos" {BIGINT} NOT NULL',
            '"price_nanos" {BIGINT} NOT NULL',
            'PRIMARY KEY ("day", "customer_id", "model")',
        ],
    ),
    create_table(
        "wallet",
        [
            '"customer_id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"balance_nanos" {BIGINT} NOT NULL',
            '"held_nanos" {BIGINT} NOT NULL',
            '"low_armed" {BOOL} NOT NULL',
            '"empty_armed" {BOOL} NOT NULL',
            '"updated_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_table(
        "wallet_transaction",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"customer_id" VARCHAR(40) NOT NULL',
            '"type" VARCHAR(16) NOT NULL',
            '"amount_nanos" {BIGINT} NOT NULL',
            '"balance_after_nanos" {BIGINT} NOT NULL',
            '"request_id" VARCHAR(40)',
            '"description" TEXT',
            '"created_ms" {BIGINT} NOT NULL',
        ],
    ),
    create_index(
        "wallet_transaction_customer_id_created_ms",
        "wallet_transaction",
        ["customer_id", "created_ms"],
    ),
    create_table(
        "webhook_attempt",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"delivery_id" VARCHAR(40) NOT NULL',
            '"attempted_ms" {BIGINT} NOT NULL',
            '"status_code" INTEGER',
            '"error" TEXT',
            '"duration_ms" INTEGER NOT NULL',
            '"response_body" TEXT',
        ],
    ),
    create_index("webhook_attempt_delivery_id", "webhook_attempt", ["delivery_id"]),
    create_table(
        "webhook_delivery",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"event_id" VARCHAR(40) NOT NULL',
            '"endpoint_id" VARCHAR(40) NOT NULL',
            '"status" VARCHAR(12) NOT NULL',
            '"attempts" INTEGER NOT NULL',
            '"next_attempt_ms" {BIGINT} NOT NULL',
            '"locked_until_ms" {BIGINT} NOT NULL',
            '"locked_by" VARCHAR(64)',
            '"last_status_code" INTEGER',
            '"last_error" TEXT',
            '"created_ms" {BIGINT} NOT NULL',
            '"delivered_ms" {BIGINT}',
            '"window_start_ms" {BIGINT}',
            '"last_attempt_ms" {BIGINT}',
        ],
    ),
    create_index("webhook_delivery_event_id", "webhook_delivery", ["event_id"]),
    create_index("webhook_delivery_endpoint_id", "webhook_delivery", ["endpoint_id"]),
    create_index("webhook_delivery_created_ms", "webhook_delivery", ["created_ms"]),
    create_index(
        "webhook_delivery_status_next_attempt_ms", "webhook_delivery", ["status", "next_attempt_ms"]
    ),
    create_table(
        "webhook_endpoint",
        [
            '"id" VARCHAR(40) NOT NULL PRIMARY KEY',
            '"url" TEXT NOT NULL',
            '"events" TEXT',
            '"description" TEXT',
            '"secret" VARCHAR(128) NOT NULL',
            '"enabled" {BOOL} NOT NULL',
            '"disabled_reason" TEXT',
            '"created_ms" {BIGINT} NOT NULL',
            '"last_success_ms" {BIGINT}',
            '"failing_since_ms" {BIGINT}',
            '"deleted_ms" {BIGINT}',
            '"previous_secret" VARCHAR(128)',
            '"previous_secret_expires_ms" {BIGINT}',
            '"updated_ms" {BIGINT}',
        ],
    ),
]


def up(db: peewee.Database) -> None:
    run(db, STATEMENTS)
