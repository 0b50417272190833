"""Shared fixtures: a gateway app on a fresh SQLite file (or PostgreSQL), clients, helpers."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.db.database import Database
from gateway.db.migrate import migrate
from gateway.events import EventBus
from gateway.wiring import Gateway, build_gateway

ADMIN_KEY = "test-admin-key-0123456789"
PG_HOST = os.environ.get("RINGSIDE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("RINGSIDE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("RINGSIDE_TEST_PG_USER", "")


def admin(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}", **(extra or {})}


class MutableClock:
    """A clock tests can move: the ledger derives months and hold expiry from it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(**kw)


def make_settings(
    tmp_path: Path, config: str = "", env: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    path = None
    if config:
        path = tmp_path / "ringside.toml"
        path.write_text(config)
    base_env = {"RINGSIDE_ADMIN_KEY": ADMIN_KEY}
    base_env.update(env or {})
    overrides.setdefault("data_dir", str(tmp_path / "data"))
    return load_settings(path, env=base_env, overrides=overrides)


# ---------------------------------------------------------------- PostgreSQL


def pg_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection((PG_HOST, PG_PORT), timeout=1):
        return True
    return False


def _pg_admin_url(dbname: str) -> str:
    user = f"{PG_USER}@" if PG_USER else ""
    return f"postgresql://{user}{PG_HOST}:{PG_PORT}/{dbname}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Callable[[], str]]:
    """A factory of fresh PostgreSQL databases; each is dropped at the end of the run."""
    if not pg_reachable():
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}")
    import psycopg

    created: list[str] = []

    def connect() -> Any:
        last: Exception | None = None
        for db in ("postgres", "test"):
            try:
                return psycopg.connect(_pg_admin_url(db), autocommit=True, connect_timeout=3)
            except psycopg.Error as exc:
                last = exc
        pytest.skip(f"cannot connect to PostgreSQL: {last}")

    def new_database() -> str:
        name = f"ringside_test_{uuid.uuid4().hex[:12]}"
        with connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _pg_admin_url(name)

    yield new_database
    with contextlib.suppress(Exception), connect() as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- gateway fixtures


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_server")()
    return f"sqlite:///{tmp_path / 'ringside.db'}"


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def gateway_factory(
    tmp_path: Path, database_url: str, clock: MutableClock
) -> Iterator[Callable[..., Gateway]]:
    made: list[Database] = []

    def factory(config: str = "", env: dict[str, str] | None = None, **kw: Any) -> Gateway:
        settings = make_settings(tmp_path, config, env, database_url=database_url, **kw)
        db = Database(settings.database_url, busy_timeout_ms=settings.server.db_busy_timeout_ms)
        made.append(db)
        migrate(db)
        return build_gateway(settings, db, admin_key=ADMIN_KEY, bus=EventBus(), clock=clock)

    yield factory
    for db in made:
        db.close()


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(gateway)) as c:
        yield c


def unique_id(prefix: str = "x") -> str:
    """An id no other test object has (`id(obj)` can repeat once an object is freed)."""
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture
def unique() -> Callable[[str], str]:
    return unique_id
