"""`ringside keys rotate-admin`: mint a new admin key next to the bootstrap one.

Rotating the bootstrap key (RINGSIDE_ADMIN_KEY, or <data_dir>/admin_key) without downtime:
this creates an admin key in the database (every instance accepts it at once), prints it
once, and leaves the bootstrap key working. Move your tools to the new key, then change
or remove the bootstrap key and restart the gateways.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config import Settings
from gateway.db.database import Database
from gateway.db.migrate import migrate
from gateway.events import EventBus
from gateway.services.keys import KeyService

# The key service needs the admin key only to recognise it; creating keys does not.
_NO_BOOTSTRAP_KEY = "\x00" * 32


def add_keys_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_storage_options: Callable[[argparse.ArgumentParser, Any], None],
) -> None:
    p = sub.add_parser("keys", help="API key tools")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate-admin",
        help="create a new admin key (shown once); the bootstrap key keeps working",
    )
    rotate.add_argument("--name", default=None, help="the new key's name")
    add_storage_options(rotate, argparse.SUPPRESS)


def rotate_admin(settings: Settings, name: str | None) -> tuple[str, str]:
    """(key id, key) of a new admin key in the gateway's database."""
    db = Database(settings.database_url, busy_timeout_ms=settings.server.db_busy_timeout_ms)
    try:
        migrate(db)
        keys = KeyService(db, EventBus(), _NO_BOOTSTRAP_KEY, lambda: datetime.now(UTC))
        label = name or f"admin (rotated {datetime.now(UTC):%Y-%m-%d})"
        created = asyncio.run(keys.create({"name": label, "kind": "admin"}))
    finally:
        db.close()
    return str(created["id"]), str(created["key"])


def print_rotation(key_id: str, key: str, settings: Settings) -> None:
    print("A new admin key (shown only now; store it):")
    print(key)
    print(f"key id: {key_id}")
    print(
        "The bootstrap key still works. Move your tools to the new key, then change or remove "
        f"RINGSIDE_ADMIN_KEY (or delete {settings.server.data_dir / 'admin_key'}) and restart "
        "the gateways. Revoke a created key with DELETE /v1/keys/{id}."
    )
