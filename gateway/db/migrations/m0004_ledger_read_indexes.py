"""Indexes for reading a big ledger by customer (10M+ request-log rows).

- `request_log (customer_id, id)`: `/v1/requests?customer_id=...` pages newest first by
  id (keyset); with it a page is an index range, however deep, instead of a sort of all
  the customer's calls.
- `usage_daily (customer_id, day)`: one customer's rollups over a range of days
  (`/v1/usage?customer_id=...`, the dashboard's customer detail), instead of every
  customer's rows for those days through the primary key (day first).

Frozen DDL. On an existing database the two indexes are built when this migration runs,
writes to the two tables waiting meanwhile: about 15 s on SQLite and 25 s on PostgreSQL
per 10M request-log rows (bench/RESULTS.md, "big ledger").
"""

from __future__ import annotations

import peewee

from gateway.db.migrations._ddl import create_index, run

STATEMENTS = [
    create_index("request_log_customer_id_id", "request_log", ["customer_id", "id"]),
    create_index("usage_daily_customer_id_day", "usage_daily", ["customer_id", "day"]),
]


def up(db: peewee.Database) -> None:
    run(db, STATEMENTS)
