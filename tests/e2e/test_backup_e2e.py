"""`ringside backup`, `ringside restore` and `ringside migrate --to` against the real
processes: a backup taken while traffic flows is one consistent point in time and
restores to the totals it printed; a move to PostgreSQL keeps every nano-dollar; and each
command refuses what it must (exit 2, one line on stderr).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.client import Ringside
from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "hello"}]
NANO = Decimal("0.000000001")


# ---------------------------------------------------------------------------- helpers


def ringside(*args: str, entry: str = "ringside") -> subprocess.CompletedProcess[str]:
    """One data command, run as the operator runs it: the `ringside` entry point (or
    `python -m gateway`), a clean environment, the admin key from the environment."""
    if entry == "ringside":
        command = [sys.executable, "-m", "ringside_tui.cli", *args]
    else:
        command = [sys.executable, "-m", "gateway", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGSIDE_", "OPENAI_"))}
    env.update(RINGSIDE_ADMIN_KEY=ADMIN_KEY, PYTHONPATH=str(ROOT))
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def refused(out: subprocess.CompletedProcess[str], words: str) -> None:
    """Exit 2 with one `ringside: error: ...` line naming the problem."""
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringside: error: "), out.stderr
    assert words in lines[0], lines[0]


def usd(text: str) -> int:
    """'$0.000204' -> nanos."""
    return int(Decimal(text.removeprefix("$")) / NANO)


@dataclass(frozen=True)
class Printed:
    """The totals `ringside backup` / `restore` print (money in nanos)."""

    customers: int
    request_log_rows: int
    request_log_cost: int
    request_log_price: int
    usage_requests: int
    usage_cost: int
    usage_price: int
    wallets: int
    wallet_balance: int
    wallet_transactions: int

    @classmethod
    def parse(cls, stdout: str) -> Printed:
        def grab(pattern: str) -> tuple[str, ...]:
            m = re.search(pattern, stdout, re.M)
            assert m, f"{pattern!r} not in:\n{stdout}"
            return m.groups()

        money = r"(\$[\d.]+)"
        rows, rc, rp = grab(rf"^  request log +([\d,]+) rows: cost {money}, price {money}$")
        req, uc, up = grab(rf"^  usage +([\d,]+) requests: cost {money}, price {money}$")
        wallets, balance = grab(rf"^  wallets +([\d,]+): balance {money}, held \$[\d.]+$")
        return cls(
            customers=int(grab(r"^  customers +([\d,]+)$")[0].replace(",", "")),
            request_log_rows=int(rows.replace(",", "")),
            request_log_cost=usd(rc),
            request_log_price=usd(rp),
            usage_requests=int(req.replace(",", "")),
            usage_cost=usd(uc),
            usage_price=usd(up),
            wallets=int(wallets.replace(",", "")),
            wallet_balance=usd(balance),
            wallet_transactions=int(grab(r"^  wallet transactions +([\d,]+)$")[0].replace(",", "")),
        )


def readonly(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """Closed on exit (sqlite3's own context manager only commits): an open connection
    would rightly make `restore` refuse."""
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def one(conn: sqlite3.Connection, sql: str) -> Any:
    return conn.execute(sql).fetchone()[0]


def file_totals(path: Path) -> Printed:
    """The same totals read straight from a backup file."""
    with readonly(path) as conn:
        rl = conn.execute(
            "SELECT count(*), coalesce(sum(cost_nanos), 0), coalesce(sum(price_nanos), 0)"
            " FROM request_log"
        ).fetchone()
        ud = conn.execute(
            "SELECT coalesce(sum(requests), 0), coalesce(sum(cost_nanos), 0),"
            " coalesce(sum(price_nanos), 0) FROM usage_daily"
        ).fetchone()
        return Printed(
            customers=one(conn, "SELECT count(*) FROM customer"),
            request_log_rows=rl[0],
            request_log_cost=rl[1],
            request_log_price=rl[2],
            usage_requests=ud[0],
            usage_cost=ud[1],
            usage_price=ud[2],
            wallets=one(conn, "SELECT count(*) FROM wallet"),
            wallet_balance=one(conn, "SELECT coalesce(sum(balance_nanos), 0) FROM wallet"),
            wallet_transactions=one(conn, "SELECT count(*) FROM wallet_transaction"),
        )


def assert_consistent(path: Path) -> None:
    """One point in time: every settled call is in the log, the rollups and the budgets
    alike; every wallet is the sum of its transactions; holds match what they reserve."""
    with readonly(path) as conn:
        assert one(conn, "PRAGMA integrity_check") == "ok"
        log = conn.execute(
            "SELECT count(*), sum(cost_nanos), sum(price_nanos), sum(input_tokens),"
            " sum(output_tokens) FROM request_log WHERE status <> 'refused'"
        ).fetchone()
        rollup = conn.execute(
            "SELECT sum(requests), sum(cost_nanos), sum(price_nanos), sum(input_tokens),"
            " sum(output_tokens) FROM usage_daily"
        ).fetchone()
        assert log == rollup
        spent = dict(
            conn.execute("SELECT customer_id, sum(spent_nanos) FROM budget_period GROUP BY 1")
        )
        logged = dict(
            conn.execute(
                "SELECT customer_id, sum(cost_nanos) FROM request_log"
                " WHERE customer_id IS NOT NULL GROUP BY 1"
            )
        )
        assert {k: v for k, v in spent.items() if v} == {k: v for k, v in logged.items() if v}
        wallets = conn.execute(
            "SELECT w.customer_id, w.balance_nanos, w.held_nanos,"
            " (SELECT coalesce(sum(amount_nanos), 0) FROM wallet_transaction t"
            "  WHERE t.customer_id = w.customer_id),"
            " (SELECT balance_after_nanos FROM wallet_transaction t"
            "  WHERE t.customer_id = w.customer_id ORDER BY created_ms DESC, rowid DESC LIMIT 1),"
            " (SELECT coalesce(sum(wallet_nanos), 0) FROM hold h"
            "  WHERE h.customer_id = w.customer_id AND h.status = 'active')"
            " FROM wallet w"
        ).fetchall()
        assert wallets
        for customer, balance, held, txn_sum, last_after, active_holds in wallets:
            assert balance == txn_sum, customer
            assert last_after in (None, balance), customer
            assert held == active_holds, customer
        budget_held = dict(
            conn.execute("SELECT customer_id, sum(held_nanos) FROM budget_period GROUP BY 1")
        )
        holds = dict(
            conn.execute(
                "SELECT customer_id, sum(budget_nanos) FROM hold WHERE status = 'active' GROUP BY 1"
            )
        )
        assert {k: v for k, v in budget_held.items() if v} == {k: v for k, v in holds.items() if v}


class Traffic:
    """Calls and top-ups from a few threads, until told to stop."""

    def __init__(self, base_url: str, budgets: list[str], wallets: list[str]) -> None:
        self.base_url = base_url
        self.customers = budgets + wallets
        self.wallets = wallets
        self.stop = threading.Event()
        self.calls = 0
        self.lock = threading.Lock()
        self.warm = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(4)]
        self._topups = itertools.count()

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _run(self, index: int) -> None:
        try:
            with Ringside(self.base_url, ADMIN_KEY) as c:
                for n in itertools.count():
                    if self.stop.is_set():
                        return
                    who = self.customers[(index + n) % len(self.customers)]
                    if n % 7 == 3:
                        wallet = self.wallets[n % len(self.wallets)]
                        c.wallets.topup(
                            wallet, Decimal("0.25"), idempotency_key=f"t{next(self._topups)}"
                        )
                    elif n % 5 == 0:
                        list(
                            c.chat.completions.create(
                                model="fc:mock/mock-fast", messages=HELLO, customer=who, stream=True
                            )
                        )
                    else:
                        c.chat.completions.create(
                            model="fc:mock/mock-fast", messages=HELLO, customer=who
                        )
                    with self.lock:
                        self.calls += 1
                        if self.calls >= 20:
                            self.warm.set()
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)
            self.warm.set()


def api_totals(server: ServerProcess) -> dict[str, Any]:
    with Ringside(server.base_url, ADMIN_KEY) as c:
        customers = list(c.customers.list(limit=100))
        usage = c.usage.retrieve()
        wallets = {
            cust.id: c.wallets.retrieve(cust.id, limit=1000) for cust in customers if cust.prepaid
        }
    return {"customers": customers, "usage": usage, "wallets": wallets}


def seed_customers(base_url: str) -> tuple[list[str], list[str]]:
    with Ringside(base_url, ADMIN_KEY) as c:
        budgets = [
            c.customers.create(external_id=f"budget-{i}", name=f"B{i}", budget_usd=5, markup=1.5).id
            for i in range(3)
        ]
        wallets = []
        for i in range(3):
            w = c.customers.create(
                external_id=f"wallet-{i}", name=f"W{i}", prepaid=True, low_balance_threshold_usd=1
            )
            c.wallets.topup(w.id, 10, description="seed", idempotency_key=f"seed-{i}")
            wallets.append(w.id)
    return budgets, wallets


# ---------------------------------------------------------------------------- backup/restore


def test_backup_under_traffic_restores_to_the_totals_it_printed(
    ringside_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = ringside_server()
    budgets, wallets = seed_customers(server.base_url)
    backup_file = tmp_path / "backups" / "ringside.db"

    with Traffic(server.base_url, budgets, wallets) as traffic:
        traffic.warm.wait(timeout=60)
        # The backup runs while the traffic threads keep calling and topping up.
        out = ringside("backup", str(backup_file), "--data-dir", str(server.data_dir))
    assert not traffic.errors, traffic.errors
    assert out.returncode == 0, out.stdout + out.stderr
    assert "integrity_check ok" in out.stdout
    size = int(re.search(r"\(([\d,]+) bytes", out.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert size == backup_file.stat().st_size
    printed = Printed.parse(out.stdout)
    assert printed == file_totals(backup_file)
    assert printed.customers == 6 and printed.wallets == 3 and printed.request_log_rows > 0
    assert_consistent(backup_file)
    assert not list(backup_file.parent.glob(".*partial*"))

    with Ringside(server.base_url, ADMIN_KEY) as c:
        live_requests = c.usage.retrieve().requests
    # Killed, not stopped: its write-ahead log stays behind, as after a crash.
    server.kill()
    assert (server.data_dir / "ringside.db-wal").exists()

    # Into a new data dir: the restored gateway answers what the backup printed.
    fresh = tmp_path / "restored"
    out = ringside("restore", str(backup_file), "--data-dir", str(fresh), entry="gateway")
    assert out.returncode == 0, out.stdout + out.stderr
    assert Printed.parse(out.stdout) == printed
    assert "kept" not in out.stdout  # nothing was there to keep
    restored = ringside_server(data_dir=fresh)
    seen = api_totals(restored)
    assert len(seen["customers"]) == printed.customers
    usage = seen["usage"]
    assert usage.requests == printed.usage_requests
    assert usage.total_cost_usd == printed.usage_cost * NANO
    assert usage.total_price_usd == printed.usage_price * NANO
    with readonly(backup_file) as conn:
        in_file = dict(conn.execute("SELECT customer_id, balance_nanos FROM wallet"))
    api_balances = {cid: w.balance_usd / NANO for cid, w in seen["wallets"].items()}
    assert api_balances == in_file
    assert sum(api_balances.values()) == printed.wallet_balance
    for w in seen["wallets"].values():  # each balance is the sum of its transactions
        assert sum(t.amount_usd for t in w.transactions) == w.balance_usd
    restored.stop()

    # Over the crashed gateway's data dir: the database it replaces is kept, with what its
    # log held folded in, and nothing of the old log meets the restored database.
    out = ringside("restore", str(backup_file), "--data-dir", str(server.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    kept = list(server.data_dir.glob("ringside.db.before-restore-*"))
    assert len(kept) == 1 and str(kept[0]) in out.stdout
    assert re.fullmatch(r"ringside\.db\.before-restore-\d{8}T\d{6}Z", kept[0].name)
    leftovers = {p.name for p in server.data_dir.iterdir()} - {"ringside.db", kept[0].name}
    assert not {n for n in leftovers if n.startswith("ringside.db")}, leftovers
    assert file_totals(kept[0]).usage_requests == live_requests >= printed.usage_requests
    assert file_totals(server.data_dir / "ringside.db") == printed


def test_backup_and_restore_refuse_what_they_must(
    ringside_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    refused(ringside("backup", str(tmp_path / "a.db"), "--data-dir", str(empty)), "no database")
    refused(
        ringside("backup", str(tmp_path / "a.db"), "--database-url", "postgresql://db.internal/x"),
        "pg_dump",
    )

    server = ringside_server()
    seed_customers(server.base_url)
    target = tmp_path / "b.db"
    target.write_text("not mine")
    refused(ringside("backup", str(target), "--data-dir", str(server.data_dir)), "--force")
    assert target.read_text() == "not mine"
    out = ringside("backup", str(target), "--force", "--data-dir", str(server.data_dir))
    assert out.returncode == 0, out.stderr
    assert Printed.parse(out.stdout).customers == 6

    # Restore while the gateway runs on the data dir: refused, nothing touched.
    before = sorted(p.name for p in server.data_dir.iterdir())
    refused(ringside("restore", str(target), "--data-dir", str(server.data_dir)), "stop it first")
    assert sorted(p.name for p in server.data_dir.iterdir()) == before
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    server.stop()

    fresh = tmp_path / "fresh"
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    refused(ringside("restore", str(garbage), "--data-dir", str(fresh)), "not a SQLite database")
    refused(ringside("restore", str(tmp_path / "nope.db"), "--data-dir", str(fresh)), "exist")
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    out = ringside("restore", str(truncated), "--data-dir", str(fresh))
    assert out.returncode == 2 and out.stderr.startswith("ringside: error: "), out.stderr
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as conn, conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    refused(ringside("restore", str(foreign), "--data-dir", str(fresh)), "not a Ringside")
    newer = tmp_path / "newer.db"
    newer.write_bytes(target.read_bytes())
    with contextlib.closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("INSERT INTO schema_migration VALUES (9999, 'from_the_future', 0)")
    refused(ringside("restore", str(newer), "--data-dir", str(fresh)), "newer Ringside")
    refused(
        ringside("restore", str(target), "--database-url", "postgresql://db.internal/x"),
        "pg_restore",
    )
    # None of the refusals left a file behind.
    assert not fresh.exists() or not any(fresh.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------------- PostgreSQL


def seed_everything(base_url: str) -> None:
    """Customers with budgets and wallets, calls and streams, a suspended customer, keys,
    and a webhook endpoint nobody answers (so the outbox holds pending deliveries)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(
        f"{base_url}/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook"}, headers=headers
    )
    assert r.status_code in (200, 201), r.text
    budgets, wallets = seed_customers(base_url)
    with Ringside(base_url, ADMIN_KEY) as c:
        tight = c.customers.create(external_id="tight", name="T", budget_usd=Decimal("0.0003"))
        for who in [*budgets, *wallets, tight.id, tight.id, tight.id]:
            try:
                c.chat.completions.create(model="fc:mock/mock-fast", messages=HELLO, customer=who)
                list(
                    c.chat.completions.create(
                        model="fc:mock/mock-fast", messages=HELLO, customer=who, stream=True
                    )
                )
            except Exception as exc:  # the tight budget runs out: refused, logged, not charged
                assert getattr(exc, "status_code", None) == 402, exc
        c.wallets.topup(wallets[0], Decimal("0.123456789"), idempotency_key="odd-nanos")
        c.customers.update(budgets[0], status="suspended")
        c.keys.revoke(c.keys.create("old").id)
        c.keys.create("backend")


def snapshot(base_url: str) -> dict[str, Any]:
    with Ringside(base_url, ADMIN_KEY) as c:
        customers = list(c.customers.list(limit=100))
        return {
            "customers": [
                cust.to_dict()
                | {"month": c.customers.retrieve(cust.id).to_dict().get("budget")}
                | {"wallet": c.wallets.retrieve(cust.id, limit=1000).to_dict()}
                for cust in customers
            ],
            "usage": c.usage.retrieve(group_by="customer").to_dict(),
            "usage_by_model": c.usage.retrieve(group_by="model").to_dict(),
            "requests": [r.to_dict() for r in c.requests.list(limit=500)],
            "keys": [k.to_dict() for k in c.keys.list(include_revoked=True)],
        }


@pytest.mark.postgres
def test_migrate_moves_a_sqlite_install_to_postgresql_to_the_nano(
    ringside_server: Callable[..., ServerProcess], pg_server: Callable[[], str]
) -> None:
    database_url = pg_server()
    server = ringside_server()
    seed_everything(server.base_url)
    before = snapshot(server.base_url)
    assert before["usage"]["total_cost_usd"] > 0 and len(before["customers"]) == 7

    # Gateways must be stopped.
    refused(
        ringside("migrate", "--to", database_url, "--data-dir", str(server.data_dir)),
        "stop it first",
    )
    server.stop()

    out = ringside("migrate", "--to", database_url, "--data-dir", str(server.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Verified:" in out.stdout and "MISMATCH" not in out.stdout
    for table in ("customer", "wallet", "budget_period", "request_log", "webhook_delivery"):
        assert re.search(rf"^  {table} +[\d,]+ rows$", out.stdout, re.M), table
    assert re.search(r"^  webhook_delivery +[1-9][\d,]* rows$", out.stdout, re.M)

    moved = ringside_server(database_url=database_url)
    assert snapshot(moved.base_url) == before
    moved.stop()

    # The database is no longer empty: a second move is refused and changes nothing.
    refused(
        ringside("migrate", "--to", database_url, "--data-dir", str(server.data_dir)),
        "not empty",
    )


@pytest.mark.postgres
def test_migrate_commits_nothing_when_a_total_differs(
    pg_server: Callable[[], str], tmp_path: Path
) -> None:
    """A value PostgreSQL cannot hold as it is (2 in a boolean column) differs after the
    copy: the move reports it, exits 1 and leaves the database without rows."""
    import psycopg

    from gateway.db.database import Database
    from gateway.db.migrate import migrate

    data = tmp_path / "data"
    db = Database(f"sqlite:///{data / 'ringside.db'}")
    try:
        migrate(db)
    finally:
        db.close()
    with contextlib.closing(sqlite3.connect(data / "ringside.db")) as conn, conn:
        conn.execute(
            "INSERT INTO customer (id, external_id, name, status, prepaid, created_ms,"
            " updated_ms) VALUES ('cus_odd', 'odd', 'Odd', 'active', 2, 0, 0)"
        )
        conn.execute("INSERT INTO wallet VALUES ('cus_odd', 5000000000, 0, 1, 1, 0)")
    database_url = pg_server()
    out = ringside("migrate", "--to", database_url, "--data-dir", str(data))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "MISMATCH customers by status and prepaid" in out.stdout
    assert "MISMATCH table customer" in out.stdout
    assert "nothing was committed" in out.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM customer").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM wallet").fetchone() == (0,)

    # Not a PostgreSQL URL, or a configuration already on PostgreSQL: refused.
    refused(ringside("migrate", "--to", "sqlite:///x.db", "--data-dir", str(data)), "--to")
    refused(ringside("migrate", "--to", database_url, "--database-url", database_url), "PostgreSQL")
