"""Statements and CSV exports.

A statement reconciles to the nano-dollar three ways: with the wallet's transactions
(opening + top-ups + adjustments - wallet debits = closing; the opening is the balance
after the last transaction before the month), with `/v1/usage` over the same month, and
with the request log alone. Hypothesis drives random top-ups, adjustments, calls (some
settling after midnight, some after their hold lapsed) and clock moves across months.
CSV answers are the JSON answers' rows, streamed a page at a time.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient, TestClient

from gateway.api.contract import OPERATIONS
from gateway.api.contract.statement_models import Statement as StatementModel
from gateway.app import create_app
from gateway.client import AsyncRingside, BadRequestError, CustomerNotFound, Ringside
from gateway.config import load_settings
from gateway.db.database import Database
from gateway.db.migrate import migrate
from gateway.db.models import Customer, RequestLog, Wallet, WalletTransaction
from gateway.errors import ApiError
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.ledger import CallEstimate, Ledger, Outcome, PriceBook, Reservation
from gateway.services import usage as usage_module
from gateway.services.statements import DAY_COLUMNS, Statement, StatementService, parse_month
from gateway.services.usage import REQUEST_COLUMNS, UsageService
from gateway.tokens import TokenUsage
from gateway.webhooks.outbox import Outbox
from gateway.wiring import Gateway
from tests.conftest import ADMIN_KEY, MutableClock, admin

NANO = Decimal("0.000000001")
CONFIG = """
[prices."mock/mock-fast"]
input_usd_per_mtok = 1.3
output_usd_per_mtok = 2.7
max_output_tokens = 500
[prices."mock/mock-smart"]
input_usd_per_mtok = 3.1
output_usd_per_mtok = 11.3
max_output_tokens = 500
[billing]
hold_ttl_s = 5
markup = 1.7
untagged = "allow"
"""
BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def nanos(value: Any) -> int:
    """A money value (msgspec.Raw from a service, Decimal from JSON, or CSV text) in nanos."""
    if isinstance(value, msgspec.Raw):
        value = bytes(value).decode()
    exact = Decimal(value) / NANO
    assert exact == exact.to_integral_value(), value
    return int(exact)


def loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def month_bounds(label: str) -> tuple[int, int]:
    m = parse_month(label, datetime.now(UTC))
    return m.start_ms, m.end_ms


def months_between(first: datetime, last: datetime) -> list[str]:
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def last_day(label: str) -> str:
    m = parse_month(label, datetime.now(UTC))
    return (m.end - timedelta(days=1)).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- the oracle


def check_statement(
    stmt: Statement, usage: UsageService, customer_id: str, balance_now: int | None
) -> None:
    """One statement against the wallet transactions, /v1/usage and the request log."""
    start_ms, end_ms = month_bounds(stmt.month.label)
    txns = list(
        WalletTransaction.select()
        .where(WalletTransaction.customer_id == customer_id)
        .order_by(WalletTransaction.created_ms, WalletTransaction.id)
    )
    before = [t for t in txns if t.created_ms < start_ms]
    inside = [t for t in txns if start_ms <= t.created_ms < end_ms]
    # The opening is the balance after the last transaction before the month.
    assert stmt.opening == (before[-1].balance_after_nanos if before else 0)
    assert stmt.opening == sum(t.amount_nanos for t in before)
    assert stmt.topups == sum(t.amount_nanos for t in inside if t.type == "topup")
    assert stmt.adjustments == sum(t.amount_nanos for t in inside if t.type == "adjustment")
    assert stmt.debits == -sum(t.amount_nanos for t in inside if t.type == "usage")
    assert stmt.transactions == len(inside)
    closing = inside[-1].balance_after_nanos if inside else stmt.opening
    assert stmt.closing == closing == stmt.opening + stmt.topups + stmt.adjustments - stmt.debits
    if balance_now is not None:
        assert stmt.closing == balance_now

    # Usage: the request log alone (calls with usage, by the time they started) ...
    logged = [
        r
        for r in RequestLog.select().where(RequestLog.customer_id == customer_id)
        if start_ms <= r.created_ms < end_ms and r.status in ("ok", "cut")
    ]
    want = [
        len(logged),
        sum(r.input_tokens for r in logged),
        sum(r.output_tokens for r in logged),
        sum(r.cached_tokens for r in logged),
        sum(r.reasoning_tokens for r in logged),
        sum(r.cost_nanos for r in logged),
        sum(r.price_nanos for r in logged),
    ]
    assert stmt.usage == want
    # ... and /v1/usage over the month, field for field.
    window = {"customer_id": customer_id, "since": f"{stmt.month.label}-01"}
    window["until"] = last_day(stmt.month.label)
    api = stmt.to_api()
    totals = usage.usage_sync(window)
    for key, value in api["usage"].items():
        if key.endswith("_usd"):
            assert nanos(totals[key]) == nanos(value), key
        else:
            assert totals[key] == value, key
    by_model = usage.usage_sync({**window, "group_by": "model"})["breakdown"]
    assert _plain(api["by_model"]) == _plain(by_model)
    by_day = usage.usage_sync({**window, "group_by": "day"})["breakdown"]
    usage_days = [
        {k: d[k] for k in ("day", *usage_module.USAGE_GROUP_COLUMNS)}
        for d in api["by_day"]
        if d["requests"]
    ]
    assert _plain(usage_days) == _plain(by_day)

    # The days add up to the month, and chain their balances.
    balance = stmt.opening
    for d in stmt.days:
        assert d.opening == balance
        balance = d.closing
    assert balance == stmt.closing
    assert sum(d.requests for d in stmt.days) == stmt.usage[0]
    assert sum(d.price for d in stmt.days) == stmt.usage[6]
    assert sum(d.topups for d in stmt.days) == stmt.topups
    assert sum(d.debits for d in stmt.days) == stmt.debits
    assert sum(m[4] for m in stmt.models.values()) == stmt.usage[6]
    msgspec.convert(loads(msgspec.json.encode(api).decode()), StatementModel, strict=False)


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: nanos(v) if k.endswith("_usd") else v for k, v in row.items()} for row in rows]


# ---------------------------------------------------------------- Hypothesis over the ledger


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Any, Database]]:
    """One database for every example (each example has a customer of its own)."""
    tmp = tmp_path
    (tmp / "c.toml").write_text(CONFIG)
    s = load_settings(tmp / "c.toml", env={}, overrides={"data_dir": str(tmp)})
    db = Database(f"sqlite:///{tmp / 'prop.db'}")
    migrate(db)
    yield s, db
    db.close()


_ids = itertools.count()
RESERVE = st.tuples(
    st.just("reserve"),
    st.integers(1, 400),
    st.sampled_from(["fast", "smart"]),
    st.one_of(st.none(), st.integers(1, 300)),
)
# share of the hold's tokens used, failed upstream, ms between start and settlement
SETTLE = st.tuples(
    st.just("settle"), st.floats(0, 1), st.booleans(), st.integers(0, 24 * 60 * 60 * 1000)
)
STEP = st.one_of(
    # A few nano-dollars, or enough for a handful of calls (a call holds ~2.5M nanos).
    st.tuples(
        st.just("topup"),
        st.one_of(st.integers(1, 1_000), st.integers(1, 40).map(lambda n: n * 1_000_000 + n)),
    ),
    st.tuples(st.just("adjust"), st.integers(-2_000_000, 2_000_000)),
    st.tuples(st.just("call"), RESERVE, SETTLE),  # reserve, then settle at once
    st.tuples(st.just("call"), RESERVE, SETTLE),
    RESERVE,  # settled by a later "settle", oldest first
    SETTLE,
    st.tuples(st.just("advance"), st.integers(1, 25 * 24 * 60)),
    st.tuples(st.just("month_end"), st.integers(0, 2_000)),
    st.tuples(st.just("lapse")),
)


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
    prepaid=st.booleans(),
    steps=st.lists(STEP, min_size=3, max_size=40),
)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_statements_reconcile_to_the_nano_dollar(
    env: tuple[Any, Database], start: datetime, prepaid: bool, steps: list[tuple[Any, ...]]
) -> None:
    stmts = run_and_check(env, start, prepaid, steps)
    event(f"months: {min(len(stmts), 4)}")
    for stmt in stmts:
        if stmt.debits != stmt.usage[6]:
            event("a month whose wallet debits differ from its price")
        if stmt.debits and stmt.usage[6]:
            event("a month with usage paid from the wallet")
        if stmt.adjustments:
            event("a month with adjustments")


def test_a_lapsed_call_and_a_call_across_the_month_end_reconcile(
    env: tuple[Any, Database],
) -> None:
    """Kept examples: a call settled after its hold lapsed (its debit falls short of its
    price), and one that starts in one month and settles in the next."""
    stmts = run_and_check(
        env,
        datetime(2026, 1, 31, 23, 0, tzinfo=UTC),
        True,
        [
            ("topup", 2_600_000),
            ("reserve", 100, "fast", None),
            ("lapse",),
            ("reserve", 100, "fast", None),
            ("settle", 1.0, False, 0),  # the lapsed one: the wallet was spent meanwhile
            ("settle", 1.0, False, 0),
            ("topup", 9_000_000),
            ("month_end", 3),
            ("reserve", 300, "smart", 100),
            ("settle", 0.5, False, 10),  # started in January, settled in February
        ],
    )
    january, february = stmts[-2:]
    assert january.debits < january.usage[6] and february.debits > february.usage[6]


def run_and_check(
    env: tuple[Any, Database], start: datetime, prepaid: bool, steps: list[tuple[Any, ...]]
) -> list[Statement]:
    """Run the steps for a new customer, then check the statement of every month from the
    one before `start` to now; returns them."""
    s, db = env
    db.peewee.connect(reuse_if_open=True)
    clock = MutableClock(start)
    ledger = Ledger(db, s, EventBus(), clock, outbox=Outbox())
    statements = StatementService(db, ledger, clock)
    usage = UsageService(db, ledger)
    book = PriceBook(s)
    cid = f"cus_stmt{next(_ids)}"
    Customer.create(
        id=cid,
        external_id=cid,
        name="s",
        status="active",
        prepaid=prepaid,
        created_ms=0,
        updated_ms=0,
    )
    pending: list[Reservation] = []

    def reserve(bound: int, model: str, max_tokens: int | None) -> Reservation | None:
        rates = book.rates("mock", f"mock-{model}")
        est = CallEstimate("mock", f"mock-{model}", "chat", False, rates, bound, max_tokens)
        result, _ = ledger.reserve_sync(cid, est)
        if isinstance(result, ApiError):
            assert result.status == 402
            return None
        return result

    def settle(r: Reservation, share: float, fail: bool, later_ms: int) -> None:
        assert r.estimate is not None
        out = r.max_output_tokens or r.estimate.requested_output_tokens or 200
        tokens = TokenUsage(
            input_tokens=int(r.estimate.input_tokens_bound * share),
            output_tokens=int(out * share),
        )
        # Settling later than it started: across midnight, even into the next month.
        clock.now += timedelta(milliseconds=later_ms)
        outcome = Outcome("error", 502) if fail else Outcome("ok", 200, tokens)
        ledger.settle_sync(ledger.settle_record(r, outcome))

    for step in steps:
        match step:
            case ("topup", amount):
                ledger.topup_sync(cid, amount, None)
            case ("adjust", amount):
                adjust(db, cid, amount, clock)
            case ("call", (_, *call), (_, *outcome)):
                if (r := reserve(*call)) is not None:
                    settle(r, *outcome)
            case ("reserve", *call):
                if (r := reserve(*call)) is not None:
                    pending.append(r)
            case ("settle", *outcome):
                if pending:
                    settle(pending.pop(0), *outcome)
            case ("advance", minutes):
                clock.now += timedelta(minutes=minutes)
            case ("month_end", ms_before):
                # A few milliseconds before the next month begins.
                end = parse_month(None, clock.now).end - timedelta(milliseconds=ms_before)
                clock.now = max(clock.now, end)
            case ("lapse",):
                clock.now += timedelta(seconds=6)
                ledger.sweep_expired_holds_sync()
            case _:
                raise AssertionError(step)
    for r in pending:  # everything settles in the end
        ledger.settle_sync(ledger.settle_record(r, Outcome("error", 502)))

    wallet = Wallet.get_or_none(Wallet.customer_id == cid)
    months = months_between(start - timedelta(days=31), clock.now)
    out: list[Statement] = []
    for label in months:
        stmt = statements.compute_sync(cid, label)
        last = label == months[-1]
        check_statement(stmt, usage, cid, (wallet.balance_nanos if wallet else 0) if last else None)
        if out:
            assert stmt.opening == out[-1].closing
        out.append(stmt)
    assert statements.compute_sync(cid, None).month.label == months[-1]
    return out


def adjust(db: Database, customer_id: str, amount: int, clock: MutableClock) -> None:
    """An `adjustment` transaction, as an operator's correction would record it (no route
    makes one yet): the balance moves by `amount`, never below 0."""
    now_ms = int(clock().timestamp() * 1000)
    with db.tx():
        wallet = Wallet.get_or_none(Wallet.customer_id == customer_id)
        if wallet is None:
            return
        amount = max(amount, wallet.held_nanos - wallet.balance_nanos)
        if amount == 0:
            return
        Wallet.update(balance_nanos=Wallet.balance_nanos + amount).where(
            Wallet.customer_id == customer_id
        ).execute()
        WalletTransaction.create(
            id=new_id("txn"),
            customer_id=customer_id,
            type="adjustment",
            amount_nanos=amount,
            balance_after_nanos=wallet.balance_nanos + amount,
            description="correction",
            created_ms=now_ms,
        )


# ---------------------------------------------------------------- through the API


START = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock(START)


@pytest.fixture
async def api(
    gateway_factory: Any, clock: MutableClock
) -> AsyncIterator[tuple[AsyncTestClient[Any], Gateway]]:
    gw = gateway_factory(CONFIG)
    async with AsyncTestClient(app=create_app(gw)) as c:
        yield c, gw


async def new_customer(c: AsyncTestClient[Any], ext: str, **fields: Any) -> str:
    r = await c.post(
        "/v1/customers", json={"external_id": ext, "name": ext, **fields}, headers=admin()
    )
    assert r.status_code == 201, r.text
    cid: str = r.json()["id"]
    return cid


async def call(c: AsyncTestClient[Any], customer: str, tokens: int, model: str = "fast") -> None:
    body = {
        "model": f"fc:mock/mock-{model}",
        "messages": [{"role": "user", "content": f"hi [mock:tokens={tokens}]"}],
    }
    r = await c.post("/v1/chat/completions", json=body, headers=admin({"FC-Customer": customer}))
    assert r.status_code == 200, r.text


async def topup(c: AsyncTestClient[Any], customer: str, usd: str) -> None:
    r = await c.post(
        f"/v1/customers/{customer}/wallet/topup",
        content=f'{{"amount_usd": {usd}}}',  # the exact decimal text
        headers=admin({"Content-Type": "application/json"}),
    )
    assert r.status_code == 200, r.text


async def statement(c: AsyncTestClient[Any], customer: str, month: str | None = None) -> Any:
    params = {"month": month} if month else {}
    r = await c.get(f"/v1/customers/{customer}/statement", params=params, headers=admin())
    assert r.status_code == 200, r.text
    return loads(r.text)


@BOTH
async def test_a_month_across_midnight_and_month_ends(
    api: tuple[AsyncTestClient[Any], Gateway], clock: MutableClock
) -> None:
    """Top-ups and calls on both sides of midnight UTC at the month's end; one call starts
    on the 31st and settles on the 1st (usage in March, its debit in April)."""
    c, gw = api
    cid = await new_customer(c, "acme", prepaid=True)
    other = await new_customer(c, "other")  # not prepaid: usage, no wallet
    await topup(c, cid, "1.25")
    await call(c, cid, 7)
    await call(c, other, 9, "smart")
    clock.now = datetime(2026, 3, 31, 12, tzinfo=UTC)
    await call(c, cid, 11, "smart")
    clock.now = datetime(2026, 3, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    await call(c, cid, 5)  # the last millisecond of March
    # A call that starts in March and settles in April, straight through the ledger.
    est = CallEstimate(
        "mock", "mock-fast", "chat", False, gw.prices.rates("mock", "mock-fast"), 50, 100
    )
    r, _ = await gw.db.write(gw.ledger.reserve_sync, cid, est)
    assert isinstance(r, Reservation)
    clock.now = datetime(2026, 4, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    record = gw.ledger.settle_record(r, Outcome("ok", 200, TokenUsage(40, 60)))
    await gw.db.write(gw.ledger.settle_sync, record)
    clock.now = datetime(2026, 4, 1, tzinfo=UTC) + timedelta(hours=1)
    await topup(c, cid, "0.5")
    await call(c, cid, 3)
    await call(c, other, 4)

    march, april = await statement(c, "acme", "2026-03"), await statement(c, cid, "2026-04")
    assert await statement(c, cid) == april  # the current month, by the business clock
    assert march["object"] == "statement" and march["customer_id"] == cid
    assert (march["since"], march["until"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert march["opening_balance_usd"] == 0 and march["topups_usd"] == Decimal("1.25")
    assert march["usage"]["requests"] == 4 and april["usage"]["requests"] == 1
    assert [d["day"] for d in march["by_day"]] == ["2026-03-30", "2026-03-31"]
    assert [m["model"] for m in march["by_model"]] == ["fc:mock/mock-fast", "fc:mock/mock-smart"]
    # The straddling call: March's price, April's wallet debit.
    straddler = gw.db.run_sync(lambda: RequestLog.get(RequestLog.id == r.request_id))
    assert straddler.created_ms < month_bounds("2026-04")[0]
    march_price = nanos(march["usage"]["total_price_usd"])
    assert nanos(march["wallet_debits_usd"]) == march_price - straddler.price_nanos
    assert nanos(april["wallet_debits_usd"]) == (
        straddler.price_nanos + nanos(april["usage"]["total_price_usd"])
    )
    assert april["by_day"][0]["wallet_debits_usd"] > 0 and april["by_day"][0]["requests"] == 1
    assert april["opening_balance_usd"] == march["closing_balance_usd"]
    for s in (march, april):
        assert nanos(s["closing_balance_usd"]) == (
            nanos(s["opening_balance_usd"])
            + nanos(s["topups_usd"])
            + nanos(s["adjustments_usd"])
            - nanos(s["wallet_debits_usd"])
        )
    wallet = loads((await c.get(f"/v1/customers/{cid}/wallet", headers=admin())).text)
    assert april["closing_balance_usd"] == wallet["balance_usd"]
    # Not prepaid: priced usage, no wallet movement at all.
    plain = await statement(c, other, "2026-03")
    assert plain["usage"]["requests"] == 1 and plain["usage"]["total_price_usd"] > 0
    assert plain["wallet_debits_usd"] == plain["closing_balance_usd"] == 0
    assert plain["wallet_transactions"] == 0
    # Every statement through the oracle (the wallet, /v1/usage, the request log).
    for who, balance in ((cid, nanos(wallet["balance_usd"])), (other, 0)):
        for label in ("2026-02", "2026-03", "2026-04", "2026-05"):
            stmt = gw.db.run_sync(gw.services.statements.compute_sync, who, label)
            current = balance if label >= "2026-04" else None
            gw.db.run_sync(check_statement, stmt, gw.services.usage, who, current)
    # /v1/usage over the month, as the statement says it reconciles.
    r2 = await c.get(
        "/v1/usage",
        params={"customer_id": cid, "since": "2026-03-01", "until": "2026-03-31"},
        headers=admin(),
    )
    totals = loads(r2.text)
    assert {k: totals[k] for k in march["usage"]} == march["usage"]


async def test_the_default_month_follows_the_business_clock(
    api: tuple[AsyncTestClient[Any], Gateway], clock: MutableClock
) -> None:
    c, _ = api
    cid = await new_customer(c, "clocked", prepaid=True)
    clock.now = datetime(2026, 4, 30, 23, 59, 59, 999_000, tzinfo=UTC)
    await topup(c, cid, "2")
    assert (await statement(c, cid))["month"] == "2026-04"
    clock.now += timedelta(milliseconds=1)  # May 1st, 00:00:00.000: the top-up is April's
    may = await statement(c, cid)
    assert may["month"] == "2026-05" and may["opening_balance_usd"] == 2
    assert may["topups_usd"] == 0 and may["by_day"] == []
    await topup(c, cid, "3")  # at the first instant of May: May's
    may = await statement(c, cid)
    assert may["topups_usd"] == 3 and may["closing_balance_usd"] == 5
    assert [d["day"] for d in may["by_day"]] == ["2026-05-01"]
    april = await statement(c, cid, "2026-04")
    assert april["closing_balance_usd"] == 2 and april["topups_usd"] == 2
    assert (await statement(c, cid, "2026-12"))["opening_balance_usd"] == 5  # the future
    assert (await statement(c, cid, "1970-01"))["closing_balance_usd"] == 0


@pytest.mark.parametrize(
    "month",
    [
        "2026-13",
        "2026-00",
        "26-04",
        "2026-4",
        "2026/04",
        "1969-12",
        "9999-01",
        "2026-04-01",
        "april",
        " 2026-04",
        "\uff12\uff10\uff12\uff16-04",  # full-width digits
    ],
)
async def test_a_bad_month_is_a_400_naming_month(
    api: tuple[AsyncTestClient[Any], Gateway], month: str
) -> None:
    c, _ = api
    await new_customer(c, "m")
    for accept in ("application/json", "text/csv"):
        r = await c.get(
            "/v1/customers/m/statement",
            params={"month": month},
            headers=admin({"Accept": accept}),
        )
        assert r.status_code == 400, (month, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and err["param"] == "month"


async def test_an_unknown_customer_is_a_404(api: tuple[AsyncTestClient[Any], Gateway]) -> None:
    c, _ = api
    for accept in ("application/json", "text/csv"):
        r = await c.get("/v1/customers/nobody/statement", headers=admin({"Accept": accept}))
        assert r.status_code == 404 and r.json()["error"]["code"] == "customer_not_found"


async def test_read_keys_may_read_statements_and_app_keys_may_not(
    api: tuple[AsyncTestClient[Any], Gateway],
) -> None:
    c, _ = api
    await new_customer(c, "k")
    op = next(o for o in OPERATIONS if o.operation_id == "getStatement")
    assert op.scope == "read" and "text/csv" in op.extra_content
    for kind, status in (("read", 200), ("billing", 200), ("app", 403)):
        key = (await c.post("/v1/keys", json={"name": kind, "kind": kind}, headers=admin())).json()
        r = await c.get(
            "/v1/customers/k/statement", headers={"Authorization": f"Bearer {key['key']}"}
        )
        assert r.status_code == status, (kind, r.text)


# ---------------------------------------------------------------- CSV


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def as_text(value: Any) -> str:
    """A JSON value as its CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(nanos_text(value))
    return str(value)


def nanos_text(value: Decimal) -> str:
    text = format(value.quantize(NANO), "f").rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


async def test_the_statement_as_csv_is_its_days(
    api: tuple[AsyncTestClient[Any], Gateway], clock: MutableClock
) -> None:
    c, _ = api
    cid = await new_customer(c, "csv", prepaid=True)
    await topup(c, cid, "0.75")
    for day in range(3):
        clock.now = START + timedelta(days=day, hours=1)
        await call(c, cid, 5 + day, ("fast", "smart")[day % 2])
    clock.now = START + timedelta(days=2, hours=3)
    await topup(c, cid, "0.000000001")
    for month in ("2026-03", "2026-04", "2026-05"):
        want = await statement(c, cid, month)
        r = await c.get(
            f"/v1/customers/{cid}/statement",
            params={"month": month},
            headers=admin({"Accept": "text/csv"}),
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "content-length" not in r.headers  # streamed
        assert r.text.splitlines()[0] == ",".join(DAY_COLUMNS)
        rows = parse_csv(r.text)
        assert rows == [{k: as_text(d[k]) for k in DAY_COLUMNS} for d in want["by_day"]]
        assert len(rows) == {"2026-03": 2, "2026-04": 2, "2026-05": 0}[month]


async def test_usage_as_csv_is_its_breakdown_or_totals(
    api: tuple[AsyncTestClient[Any], Gateway], clock: MutableClock
) -> None:
    c, _ = api
    a = await new_customer(c, "a")
    b = await new_customer(c, "b")
    for i in range(6):
        clock.now = START + timedelta(hours=5 * i)
        await call(c, (a, b)[i % 2], 3 + i, "smart" if i % 3 == 0 else "fast")
    r = await c.post(
        "/v1/chat/completions",
        json={"model": "fc:mock/mock-fast", "messages": [{"role": "user", "content": "x"}]},
        headers=admin(),
    )  # untagged: customer_id empty
    assert r.status_code == 200
    windows: list[dict[str, str]] = [
        {},
        {"customer_id": a},
        {"since": "2026-03-31T03:00:00Z", "until": "2026-04-01"},
    ]
    for params in windows:
        for group in (None, "day", "model", "customer"):
            q = {**params, **({"group_by": group} if group else {})}
            want = loads((await c.get("/v1/usage", params=q, headers=admin())).text)
            r = await c.get("/v1/usage", params=q, headers=admin({"Accept": "text/csv"}))
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            rows = parse_csv(r.text)
            if group is None:
                cols = usage_module.USAGE_TOTAL_COLUMNS
                assert rows == [{k: as_text(want[k]) for k in cols}]
            else:
                label = "customer_id" if group == "customer" else group
                cols = (label, *usage_module.USAGE_GROUP_COLUMNS)
                assert r.text.splitlines()[0] == ",".join(cols)
                assert rows == [{k: as_text(g[k]) for k in cols} for g in want["breakdown"]]
                assert len(rows) > 0
    r = await c.get("/v1/usage", params={"group_by": "week"}, headers=admin({"Accept": "text/csv"}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "group_by"


def log_rows(n: int, customers: list[str], start_ms: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        cost = 1_234 * i + 7
        rows.append(
            {
                "id": f"req_{i:011d}bulk{i % 7}",
                "customer_id": customers[i % len(customers)],
                "provider": "mock",
                "model": ("mock-fast", "mock-smart")[i % 2],
                "endpoint": "chat",
                "stream": i % 3 == 0,
                "status": ("ok", "ok", "error", "cut", "refused")[i % 5],
                "http_status": 200,
                "error_code": 'upstream_error, "quoted"' if i % 5 == 2 else None,
                "input_tokens": i,
                "output_tokens": 2 * i,
                "cost_nanos": cost,
                "price_nanos": cost * 3 // 2 + (i % 2),
                "held_nanos": 5_000,
                "over_hold": i % 11 == 0,
                "latency_ms": i % 100,
                "created_ms": start_ms + 60_000 * i,
            }
        )
    return rows


async def test_requests_as_csv_stream_every_row_a_page_at_a_time(
    api: tuple[AsyncTestClient[Any], Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, gw = api
    a = await new_customer(c, "ra")
    b = await new_customer(c, "rb")
    start_ms = int(START.timestamp() * 1000)
    rows = log_rows(1_234, [a, b, None], start_ms)  # type: ignore[list-item]
    gw.db.run_sync(lambda: RequestLog.insert_many(rows).execute())
    monkeypatch.setattr(usage_module, "CSV_PAGE", 100)
    filters: list[dict[str, str]] = [
        {},
        {"customer_id": "ra"},
        {"status": "error", "model": "fc:mock/mock-smart"},
        {"since": "2026-03-30T23:00:00Z", "until": "2026-03-31T12:00:00.5Z"},
        {"starting_after": rows[500]["id"], "customer_id": b},
        {"limit": "3"},  # not used by the CSV: every match
    ]
    for params in filters:
        want: list[dict[str, Any]] = []
        after = params.get("starting_after")
        while True:
            q = {**params, "limit": "500", **({"starting_after": after} if after else {})}
            page = loads((await c.get("/v1/requests", params=q, headers=admin())).text)
            want += page["data"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        r = await c.get("/v1/requests", params=params, headers=admin({"Accept": "text/csv"}))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "content-length" not in r.headers
        assert r.text.splitlines()[0] == ",".join(REQUEST_COLUMNS)
        got = parse_csv(r.text)
        assert got == [{k: as_text(w[k]) for k in REQUEST_COLUMNS} for w in want], params
        assert len(got) > 0
    # The service streams: one chunk per page, each page one read of CSV_PAGE rows.
    reads = 0
    real_read = gw.db.read

    async def counting_read(fn: Any, *args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(fn, *args)

    monkeypatch.setattr(gw.db, "read", counting_read)
    chunks = [x async for x in await gw.services.usage.requests_csv({})]
    assert len(chunks) == 13 and reads == 1 + 13  # the filters, then 13 pages of <= 100
    assert [len(parse_csv_rows(x)) for x in chunks] == [101] + [100] * 11 + [34]
    r = await c.get(
        "/v1/requests", params={"status": "fine"}, headers=admin({"Accept": "text/csv"})
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"
    r = await c.get(
        "/v1/requests", params={"customer_id": "nobody"}, headers=admin({"Accept": "text/csv"})
    )
    assert r.status_code == 404


def parse_csv_rows(chunk: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(chunk.decode())))


# ---------------------------------------------------------------- the Python client


@pytest.fixture
def ringside(gateway_factory: Any) -> Iterator[Ringside]:
    gw = gateway_factory(CONFIG)
    with TestClient(app=create_app(gw)) as http:
        yield Ringside(str(http.base_url), ADMIN_KEY, http_client=http)


def test_the_client_reads_statements_and_csv(ringside: Ringside, clock: MutableClock) -> None:
    cus = ringside.customers.create(external_id="cl", name="Client", prepaid=True)
    ringside.wallets.topup(cus.id, Decimal("2.5"))
    ringside.chat.completions.create(
        model="fc:mock/mock-fast", messages=[{"role": "user", "content": "hi"}], customer="cl"
    )
    stmt = ringside.customers.statement("cl", month="2026-03")
    assert stmt.object == "statement" and stmt.month == "2026-03"
    assert isinstance(stmt.closing_balance_usd, Decimal)
    assert stmt.closing_balance_usd == Decimal("2.5") - stmt.wallet_debits_usd
    assert ringside.customers.statement(cus.id) == stmt  # this month
    assert ringside.customers.statement(cus.id, START.date()) == stmt
    lines = list(ringside.customers.statement_csv("cl", "2026-03"))
    assert lines[0] == ",".join(DAY_COLUMNS) and len(lines) == 2
    assert Decimal(next(csv.DictReader(lines))["closing_balance_usd"]) == stmt.closing_balance_usd
    usage = list(csv.DictReader(ringside.usage.export_csv(customer_id="cl", group_by="model")))
    assert [(u["model"], u["requests"]) for u in usage] == [("fc:mock/mock-fast", "1")]
    requests = list(csv.DictReader(ringside.requests.export_csv(customer_id=cus.id)))
    assert len(requests) == 1 and requests[0]["customer_id"] == cus.id
    with pytest.raises(BadRequestError) as bad:
        list(ringside.customers.statement_csv("cl", "2026-13"))
    assert bad.value.param == "month"
    with pytest.raises(CustomerNotFound):
        ringside.customers.statement("nobody")


async def test_the_async_client_reads_csv(api: tuple[AsyncTestClient[Any], Gateway]) -> None:
    c, _ = api
    rs = AsyncRingside(str(c.base_url), ADMIN_KEY, http_client=c)
    await rs.customers.create(external_id="as", name="Async", prepaid=True)
    await rs.wallets.topup("as", 1)
    lines = [line async for line in await rs.customers.statement_csv("as")]
    assert lines[0].startswith("day,") and len(lines) == 2
    assert (await rs.customers.statement("as")).topups_usd == 1
    header = [line async for line in await rs.requests.export_csv()]
    assert header == [",".join(REQUEST_COLUMNS)]
    totals = [line async for line in await rs.usage.export_csv()]
    assert totals == [",".join(usage_module.USAGE_TOTAL_COLUMNS), "0,0,0,0,0,0,0,0"]
