"""Snapshot tests: the main screens at 120x36 on fixed data, compared as normalised SVG.

A small in-repo fixture instead of pytest-textual-snapshot (its syrupy pin needs
pytest < 9). Baselines live in tests/tui/snapshots/; after an intended UI change,
regenerate them with:

    RINGSIDE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/tui/test_snapshots_svg.py

Random ids, ports and wall-clock times (key creation) are normalised; everything else
runs on a frozen clock, so the numbers, bars and sparklines are exact.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from gateway.audit import DASHBOARD, Actor
from gateway.clock import day_of, month_of, to_ms
from gateway.db.models import BudgetPeriod, RequestLog, UsageDaily, Wallet
from gateway.ids import new_id
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.dialogs import FormScreen
from ringside_tui.screens.detail import CustomerDetailScreen
from ringside_tui.screens.help import HelpScreen
from tests.tui.conftest import start_runtime
from tests.tui.helpers import call, make_customer, services, wait_refreshes, wait_until

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (120, 36)
NOW = datetime(2026, 4, 15, 12, 30, 0, tzinfo=UTC)
UPDATE = os.environ.get("RINGSIDE_UPDATE_SNAPSHOTS") == "1"

_NORMALISE = [
    (re.compile(r"\b(cus|req|key|txn|evt|whe|srun|hold|plan)_[0-9a-z]{6,}"), r"\1_ID"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"rs_[A-Za-z0-9_-]{4}…"), "rs_KEY…"),
    (re.compile(r"terminal-\d+"), "terminal-N"),
    # Key rows carry wall-clock creation times (the key service does not use the clock).
    (re.compile(r"20\d\d-\d\d-\d\d(&#160;|\s)\d\d:\d\d"), "DATE TIME"),
]


def normalise(svg: str) -> str:
    for pattern, repl in _NORMALISE:
        svg = pattern.sub(repl, svg)
    return svg


class FrozenClock:
    def __call__(self) -> datetime:
        return NOW


def _seed_usage(rt: Runtime, ids: dict[str, str]) -> None:
    """Deterministic usage: daily rollups this month, a request log for the last minutes
    (and Umbrella's first call, on the 1st)."""
    assert rt.gateway is not None
    db = rt.gateway.db
    now_ms = to_ms(NOW)
    plan = {
        # customer: (model, requests per day, cost nanos per request, markup %)
        "acme": ("mock/mock-smart", 40, 3_100_000, 130),
        "globex": ("mock/mock-fast", 120, 410_000, 145),
        "initech": ("mock/mock-reasoning", 30, 2_900_000, 125),
        "umbrella": ("mock/mock-fast", 60, 520_000, 150),
        "hooli": ("mock/mock-smart", 20, 2_000_000, 120),
    }
    statuses = [
        ("ok", 200, None),
        ("ok", 200, None),
        ("ok", 200, None),
        ("error", 502, "upstream_error"),
        ("ok", 200, None),
        ("refused", 402, "customer_budget_exceeded"),
    ]

    def write() -> None:
        with db.tx():
            for day in range(1, NOW.day + 1):
                stamp = NOW.replace(day=day)
                for ext, (model, n, cost, markup) in plan.items():
                    scaled = n + (day * 7 + len(ext)) % 13
                    UsageDaily.insert(
                        day=day_of(stamp),
                        customer_id=ids[ext],
                        model=model,
                        requests=scaled,
                        input_tokens=scaled * 420,
                        output_tokens=scaled * 180,
                        cost_nanos=scaled * cost,
                        price_nanos=scaled * cost * markup // 100,
                    ).execute()
            for ext, (_, n, cost, _) in plan.items():
                spent = sum((n + (d * 7 + len(ext)) % 13) * cost for d in range(1, NOW.day + 1))
                BudgetPeriod.insert(
                    customer_id=ids[ext],
                    period=month_of(NOW),
                    spent_nanos=spent,
                    held_nanos=0,
                    exceeded=ext == "initech",
                ).execute()
            for i in range(36):
                ext = list(plan)[i % len(plan)]
                model, _, cost, markup = plan[ext]
                status, http, code = statuses[i % len(statuses)]
                charged = status == "ok"
                RequestLog.insert(
                    id=f"req_{i:025d}",
                    customer_id=ids[ext],
                    provider=model.split("/")[0],
                    model=model.split("/")[1],
                    endpoint="chat",
                    status=status,
                    http_status=http,
                    error_code=code,
                    input_tokens=400 + i if charged else 0,
                    output_tokens=150 + 3 * i if charged else 0,
                    cost_nanos=cost if charged else 0,
                    price_nanos=cost * markup // 100 if charged else 0,
                    latency_ms=180 + 37 * i if status != "refused" else 0,
                    created_ms=now_ms - (36 - i) * 1700,
                ).execute()
            # Umbrella's first call, on the 1st: two weeks of history, so its detail shows
            # a spend forecast (none is given under a day of traffic).
            model, _, cost, markup = plan["umbrella"]
            RequestLog.insert(
                id=f"req_{99:025d}",
                customer_id=ids["umbrella"],
                provider=model.split("/")[0],
                model=model.split("/")[1],
                endpoint="chat",
                status="ok",
                http_status=200,
                input_tokens=400,
                output_tokens=150,
                cost_nanos=cost,
                price_nanos=cost * markup // 100,
                latency_ms=210,
                created_ms=to_ms(NOW.replace(day=1, hour=9)),
            ).execute()

    db.run_sync(write)


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[tuple[Runtime, dict[str, str]]]:
    import asyncio

    rt = start_runtime(tmp_path / "data", clock=FrozenClock())
    assert rt.gateway is not None

    async def seed() -> dict[str, str]:
        ids = {}
        plans = services(rt).plans
        await call(
            rt,
            plans.create(
                {
                    "name": "Pro",
                    "external_id": "pro",
                    "monthly_budget_usd": Decimal(500),
                    "markup": Decimal("1.4"),
                    "allowed_models": ["mock/*", "openai/gpt-4o-mini"],
                    "limits": {"requests_per_minute": 600, "max_concurrent": 8},
                }
            ),
        )
        await call(
            rt,
            plans.create(
                {
                    "name": "Starter",
                    "external_id": "starter",
                    "monthly_budget_usd": Decimal(20),
                    "limits": {"requests_per_minute": 30, "tokens_per_minute": 50_000},
                }
            ),
        )
        specs: list[tuple[str, str, dict[str, Any]]] = [
            ("acme", "Acme Corp", {"plan": "pro", "markup": Decimal("1.3")}),
            ("globex", "Globex", {"monthly_budget_usd": Decimal(250), "markup": Decimal("1.45")}),
            ("initech", "Initech", {"monthly_budget_usd": Decimal(50)}),
            ("umbrella", "Umbrella Labs", {"prepaid": True, "low_balance_threshold_usd": 10}),
            ("hooli", "Hooli", {"prepaid": True, "low_balance_threshold_usd": Decimal(25)}),
            ("stark", "Stark Industries", {"plan": "starter"}),
        ]
        for ext, name, body in specs:
            ids[ext] = (await make_customer(rt, ext, name, **body))["id"]
        keys = services(rt).keys
        await call(rt, keys.create({"name": "production backend"}))
        billing = await call(rt, keys.create({"name": "billing backend", "kind": "billing"}))
        await call(
            rt,
            keys.create(
                {"name": "BI export", "kind": "read", "expires_at": "2026-07-01T00:00:00Z"}
            ),
        )
        # Umbrella's audit entries, one of each kind of author: Ringside itself (created),
        # a billing key (the top-up), the bootstrap admin key, the dashboard's operator.
        by_billing = Actor("billing", key_id=billing["id"], request_id="req_snapshot")
        for ext, amount in (("umbrella", Decimal(80)), ("hooli", Decimal(40))):
            await call(
                rt, services(rt).wallets.topup(ext, {"amount_usd": amount}, actor=by_billing)
            )
        customers = services(rt).customers
        await call(rt, customers.update("umbrella", {"metadata": {"crm": "4411"}}, Actor("admin")))
        await call(rt, customers.update("umbrella", {"email": "ops@umbrella.test"}, DASHBOARD))
        return ids

    ids = asyncio.run(seed())
    _seed_usage(rt, ids)
    # Wallets as the ledger would leave them after the seeded usage.
    rt.gateway.db.run_sync(
        lambda: (
            Wallet.update(balance_nanos=12_400_000_000)
            .where(Wallet.customer_id == ids["hooli"])
            .execute()
        )
    )
    yield rt, ids
    rt.stop(timeout=10)


async def settle(app: RingsideApp, pilot: Any) -> None:
    """Two full refreshes of the visible view, then no cursor blink."""
    target = app.refresh_target()
    assert target is not None
    name = target.view_name

    await wait_refreshes(app, pilot, name, 2)
    for box in app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


def check(app: RingsideApp, name: str) -> None:
    actual = normalise(app.export_screenshot(title=f"ringside {name}"))
    path = SNAPSHOTS / f"{name}.svg"
    if UPDATE or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"no baseline for {name}: wrote {path}; review and commit it")
        return
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        lines = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), "baseline", "actual", n=0
        )
        diff = "\n".join(line[:240] for line in list(lines)[:12])
        (SNAPSHOTS / f"{name}.actual.svg").write_text(actual, encoding="utf-8")
        pytest.fail(f"{name} differs from its baseline (actual saved next to it):\n{diff}")


def make(rt: Runtime) -> RingsideApp:
    assert rt.gateway is not None
    return RingsideApp(rt.gateway, base_url=rt.base_url, idle_s=0.2, busy_s=0.1)


async def test_snapshot_main_screens(frozen: tuple[Runtime, dict[str, str]]) -> None:
    rt, _ = frozen
    app = make(rt)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        check(app, "overview")
        await pilot.press("2")
        await settle(app, pilot)
        check(app, "customers")
        await pilot.press("3")
        await settle(app, pilot)
        check(app, "requests")
        await pilot.press("4")
        await settle(app, pilot)
        check(app, "keys")
        await pilot.press("7")
        await settle(app, pilot)
        check(app, "plans")


async def test_snapshot_detail_form_and_help(frozen: tuple[Runtime, dict[str, str]]) -> None:
    rt, ids = frozen
    app = make(rt)
    async with app.run_test(size=SIZE) as pilot:
        app.open_customer(ids["umbrella"])
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerDetailScreen))
        await settle(app, pilot)
        check(app, "customer_detail")
        await pilot.press("escape", "2", "n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"Wayne Enterprises", "tab", *"wayne", "tab", "tab", *"lots", "enter")
        await pilot.pause()
        await settle(app, pilot)
        check(app, "new_customer_form")
        await pilot.press("escape", "question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await settle(app, pilot)
        check(app, "help")


def test_normalise_hides_only_volatile_parts() -> None:
    text = "cus_0abcdefghijklmnopqrstuvwx on 127.0.0.1:8787 terminal-123 2026-04-15 12:30"
    assert normalise(text) == "cus_ID on 127.0.0.1:PORT terminal-N DATE TIME"
    assert normalise(new_id("plan")) == "plan_ID"
    assert normalise(new_id("req")) == "req_ID"
