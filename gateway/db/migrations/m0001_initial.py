"""The initial schema: customers, keys, ledger, request log, rollups, events, webhooks."""

from __future__ import annotations

import peewee

from gateway.db import models as m

TABLES = [
    m.Customer,
    m.ApiKey,
    m.Wallet,
    m.BudgetPeriod,
    m.Hold,
    m.WalletTransaction,
    m.IdempotencyRecord,
    m.RequestLog,
    m.UsageDaily,
    m.Event,
    m.WebhookEndpoint,
    m.WebhookDelivery,
    m.WebhookAttempt,
    m.Lease,
]


def up(db: peewee.Database) -> None:
    db.create_tables(TABLES, safe=True)
