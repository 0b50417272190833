"""Stripe usage sync: per-customer carry and last push, usage marks, batches, sync runs."""

from __future__ import annotations

import peewee

from gateway.stripe_sync.models import STRIPE_MODELS


def up(db: peewee.Database) -> None:
    db.create_tables(STRIPE_MODELS, safe=True)
