"""Usage totals (from the daily rollups) and the per-request log."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.clock import iso_ms, to_ms
from gateway.db.database import Database, tuples
from gateway.db.models import RequestLog
from gateway.errors import InvalidRequest
from gateway.ledger import Ledger, nanos_to_json, nanos_to_text
from gateway.services import validation as v
from gateway.services.pagination import keyset_page

GROUPS = ("day", "model", "customer")
# Bounds for `since`/`until`: wide enough for any ledger, narrow enough for every backend.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9999, 1, 1, tzinfo=UTC)
REQUEST_STATUSES = ("ok", "error", "refused", "cut")

# CSV (Accept: text/csv). /v1/usage: one row per breakdown group (the group's column
# first), or one totals row without group_by; the columns are the JSON answer's keys.
USAGE_GROUP_COLUMNS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "total_cost_usd",
    "total_price_usd",
    "margin_usd",
)
USAGE_TOTAL_COLUMNS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_cost_usd",
    "total_price_usd",
    "margin_usd",
)
# /v1/requests: one row per request, newest first; the keys of a JSON request but `object`.
REQUEST_COLUMNS = (
    "id",
    "customer_id",
    "model",
    "provider",
    "endpoint",
    "stream",
    "status",
    "http_status",
    "error_code",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "price_usd",
    "margin_usd",
    "held_usd",
    "over_hold",
    "latency_ms",
    "created",
    "created_at",
)
# Rows per read of a CSV export: the memory an export holds, whatever its length.
CSV_PAGE = 1000
CSV_USAGE_CHUNK = 1000


def parse_time(value: str | None, name: str, *, end: bool) -> tuple[datetime | None, bool]:
    """A date (YYYY-MM-DD) or an RFC 3339 time -> (aware UTC datetime, whole_day).

    A date as `until` includes that whole day.
    """
    if value is None or value == "":
        return None, True
    # A raw "+00:00" in a query string arrives as " 00:00": put the plus back.
    text = value.strip().replace(" ", "+")
    invalid = InvalidRequest(
        f"{name} must be a date (2026-04-01) or an RFC 3339 time (2026-04-01T12:00:00Z) "
        f"between {MIN_TIME.year} and {MAX_TIME.year - 1}.",
        param=name,
    )
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            if not MIN_TIME <= start < MAX_TIME:
                raise invalid
            return (start + timedelta(days=1) if end else start), True
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            raise InvalidRequest(f"{name} needs a UTC offset (e.g. Z).", param=name)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid from None
    if not MIN_TIME <= parsed < MAX_TIME:
        raise invalid
    whole = parsed.hour == parsed.minute == parsed.second == parsed.microsecond == 0
    return parsed, whole


def _money(cost: int, price: int) -> dict[str, Any]:
    return {
        "total_cost_usd": nanos_to_json(cost),
        "total_price_usd": nanos_to_json(price),
        "margin_usd": nanos_to_json(price - cost),
    }


# The sums /v1/usage reports, in the order `usage_sql` selects them.
SUMS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "price_nanos",
)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LogWindow:
    """Calls that started in [start_ms, end_ms), all within the UTC day `day`, counted
    with `sign` (-1: taken back out of that day's rollup)."""

    day: str
    start_ms: int
    end_ms: int
    sign: int = 1


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """Where a window's usage is read from.

    `days`: half-open ranges of whole UTC days ("YYYY-MM-DD", None = unbounded) summed
    from the daily rollups; `windows`: the partial days, from the request log.
    """

    days: tuple[tuple[str | None, str | None], ...]
    windows: tuple[LogWindow, ...]


def _midnight(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _partial_day(start: datetime, end: datetime) -> tuple[list[str], list[LogWindow]]:
    """[start, end) inside one UTC day: read from the log directly, or, when the window
    covers most of the day, as that day's rollup minus the log outside the window, so no
    more than half a day of the log is ever read per edge.

    Exact: a settlement writes its request-log row and its rollup in one transaction,
    under the UTC day of the row's `created_ms`, for every call that has usage (status
    ok or cut), and the plan is read in one statement.
    """
    day_start = _midnight(start)
    day_end = day_start + DAY
    day = day_start.strftime("%Y-%m-%d")
    if end - start <= (start - day_start) + (day_end - end):
        return [], [LogWindow(day, to_ms(start), to_ms(end))]
    windows = []
    if start > day_start:
        windows.append(LogWindow(day, to_ms(day_start), to_ms(start), -1))
    if end < day_end:
        windows.append(LogWindow(day, to_ms(end), to_ms(day_end), -1))
    return [day], windows


def plan_usage(since: datetime | None, until: datetime | None) -> UsagePlan:
    """Whole days from the rollups, partial days (sub-day bounds) from the request log."""
    whole_since = since is None or since == _midnight(since)
    whole_until = until is None or until == _midnight(until)
    first = since if whole_since or since is None else _midnight(since) + DAY
    last = until if whole_until or until is None else _midnight(until)
    day_ranges: list[tuple[str | None, str | None]] = []
    single_days: list[str] = []
    windows: list[LogWindow] = []

    def partial(start: datetime, end: datetime) -> None:
        days, more = _partial_day(start, end)
        single_days.extend(days)
        windows.extend(more)

    if first is not None and last is not None and first >= last:
        # No whole day inside: [since, until) spans one midnight at most.
        assert since is not None and until is not None
        cut = _midnight(since) + DAY
        partial(since, min(until, cut))
        if until > cut:
            partial(cut, until)
    else:
        day_ranges.append(
            (
                first.strftime("%Y-%m-%d") if first is not None else None,
                last.strftime("%Y-%m-%d") if last is not None else None,
            )
        )
        if not whole_since:
            assert since is not None and first is not None
            partial(since, first)
        if not whole_until:
            assert until is not None and last is not None
            partial(last, until)
    for day in single_days:
        following = (datetime.strptime(day, "%Y-%m-%d") + DAY).strftime("%Y-%m-%d")
        day_ranges.append((day, following))
    return UsagePlan(tuple(day_ranges), tuple(windows))


# The group key of a rollup row and of a request-log row, per group_by.
_ROLLUP_KEYS = {None: "''", "day": "day", "model": "model", "customer": "customer_id"}
_LOG_KEYS = {
    None: "''",
    "day": None,  # the window's day, a parameter
    "model": "provider || '/' || model",
    "customer": "COALESCE(customer_id, '')",
}


def usage_sql(
    plan: UsagePlan, customer_id: str | None, group_by: str | None, param: str = "?"
) -> tuple[str, list[Any]]:
    """One statement summing the plan's parts per group key: ("key", *SUMS) rows.

    Each part is aggregated where its index serves it (rollups by customer and day,
    the log by customer and time); the outer query adds the parts up. Groups whose
    calls all cancel out (a rollup minus the log outside a window) are left out.
    """
    parts: list[str] = []
    params: list[Any] = []
    rollup_key = _ROLLUP_KEYS[group_by]
    for first, last in plan.days:
        where = ["1 = 1"]
        if customer_id is not None:
            where.append(f"customer_id = {param}")
            params.append(customer_id)
        if first is not None:
            where.append(f"day >= {param}")
            params.append(first)
        if last is not None:
            where.append(f"day < {param}")
            params.append(last)
        grouped = f" GROUP BY {rollup_key}" if group_by else ""
        sums = ", ".join(f"SUM({c}) AS {c}" for c in SUMS)
        parts.append(
            f"SELECT {rollup_key} AS k, {sums} FROM usage_daily "
            f"WHERE {' AND '.join(where)}{grouped}"
        )
    for w in plan.windows:
        sign = "-" if w.sign < 0 else ""
        log_key = _LOG_KEYS[group_by]
        key_params: list[Any] = []
        if log_key is None:
            log_key = f"CAST({param} AS VARCHAR(10))"
            key_params.append(w.day)
        where = ["status IN ('ok', 'cut')"]
        where_params: list[Any] = []
        if customer_id is not None:
            where.append(f"customer_id = {param}")
            where_params.append(customer_id)
        where.append(f"created_ms >= {param} AND created_ms < {param}")
        where_params += [w.start_ms, w.end_ms]
        grouped = f" GROUP BY {log_key}" if group_by in ("model", "customer") else ""
        sums = ", ".join(
            f"{sign}COUNT(*) AS {c}" if c == "requests" else f"{sign}COALESCE(SUM({c}), 0) AS {c}"
            for c in SUMS
        )
        parts.append(
            f"SELECT {log_key} AS k, {sums} FROM request_log WHERE {' AND '.join(where)}{grouped}"
        )
        params += key_params + where_params
    sums = ", ".join(f"SUM({c})" for c in SUMS)
    union = " UNION ALL ".join(parts)
    return (
        f"SELECT k, {sums} FROM ({union}) AS parts GROUP BY k HAVING SUM(requests) <> 0",
        params,
    )


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated /v1/usage query."""

    customer_id: str | None
    since: datetime | None
    until: datetime | None
    group_by: str | None

    @property
    def label(self) -> str:
        """The breakdown's group key as the API names it."""
        return "customer_id" if self.group_by == "customer" else str(self.group_by)

    def group_value(self, key: Any) -> str | None:
        # The model id /v1/models and /v1/requests use.
        return (f"fc:{key}" if self.group_by == "model" else key) or None


def _sort_key(group: tuple[str | None, list[int]]) -> str:
    return str(group[0] or "")


class UsageService:
    def __init__(self, db: Database, ledger: Ledger) -> None:
        self.db = db
        self.ledger = ledger

    async def usage(self, params: dict[str, str | None]) -> dict[str, Any]:
        return await self.db.read(self.usage_sync, params)

    async def requests(self, params: dict[str, str | None]) -> dict[str, Any]:
        return await self.db.read(self.requests_sync, params)

    def _customer_id(self, ref: str | None) -> str | None:
        if not ref:
            return None
        return self.ledger.resolve_customer(ref).id

    def _usage_query(self, params: dict[str, str | None]) -> UsageQuery:
        customer_id = self._customer_id(params.get("customer_id") or params.get("customer"))
        since, _ = parse_time(params.get("since"), "since", end=False)
        until, _ = parse_time(params.get("until"), "until", end=True)
        if since and until and until <= since:
            raise InvalidRequest("until must be after since.", param="until")
        group_by = params.get("group_by")
        if group_by is not None and group_by not in GROUPS:
            raise InvalidRequest("group_by must be day, model or customer.", param="group_by")
        return UsageQuery(customer_id, since, until, group_by)

    def _groups_sync(
        self, params: dict[str, str | None]
    ) -> tuple[UsageQuery, list[tuple[str | None, list[int]]]]:
        """The query and its groups, (group value, SUMS) sorted as the breakdown is, from
        one statement; without group_by, one group (or none) holding the totals."""
        q = self._usage_query(params)
        plan = plan_usage(q.since, q.until)
        groups = [
            (q.group_value(key), [int(x or 0) for x in sums])
            for key, *sums in self._sums(plan, q.customer_id, q.group_by)
        ]
        if q.group_by:
            groups.sort(key=_sort_key)
        return q, groups

    def usage_sync(self, params: dict[str, str | None]) -> dict[str, Any]:
        q, groups = self._groups_sync(params)
        totals = [0] * len(SUMS)
        breakdown: list[dict[str, Any]] = []
        for value, values in groups:
            for i, x in enumerate(values):
                totals[i] += x
            if q.group_by:
                requests, input_tokens, output_tokens, _, _, cost, price = values
                breakdown.append(
                    {
                        q.label: value,
                        "requests": requests,
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        **_money(cost, price),
                    }
                )
        requests, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost, price = totals
        return {
            "object": "usage",
            "customer_id": q.customer_id,
            "since": q.since.isoformat().replace("+00:00", "Z") if q.since else None,
            "until": q.until.isoformat().replace("+00:00", "Z") if q.until else None,
            "group_by": q.group_by,
            "requests": requests,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "reasoning_tokens": reasoning_tokens,
            **_money(cost, price),
            "breakdown": breakdown,
        }

    async def usage_csv(self, params: dict[str, str | None]) -> AsyncIterator[bytes]:
        """/v1/usage as CSV: a header row, then one row per breakdown group (the group's
        column first, then USAGE_GROUP_COLUMNS), or without group_by one row of totals
        (USAGE_TOTAL_COLUMNS). The groups come from one statement, as the JSON answer's
        do: the memory is one row per day, model or customer, never one per call. Bad
        parameters raise here, before the first byte."""
        q, groups = await self.db.read(self._groups_sync, params)

        async def lines() -> AsyncIterator[bytes]:
            out = _CsvBuffer()
            if not q.group_by:
                totals = [0] * len(SUMS)
                for _, values in groups:
                    totals = [a + b for a, b in zip(totals, values, strict=True)]
                *counts, cost, price = totals
                out.row(USAGE_TOTAL_COLUMNS)
                out.row([*counts, *_money_cells(cost, price)])
                yield out.flush()
                return
            out.row((q.label, *USAGE_GROUP_COLUMNS))
            for i, (value, values) in enumerate(groups, 1):
                requests, input_tokens, output_tokens, _, _, cost, price = values
                counts = [requests, input_tokens, output_tokens]
                out.row([value or "", *counts, *_money_cells(cost, price)])
                if i % CSV_USAGE_CHUNK == 0:
                    yield out.flush()
            yield out.flush()

        return lines()

    def _sums(
        self, plan: UsagePlan, customer_id: str | None, group_by: str | None
    ) -> list[tuple[Any, ...]]:
        """(group key, *SUMS) per group, in one statement (one consistent read)."""
        sql, params = usage_sql(plan, customer_id, group_by, self.db.peewee.param)
        execute_sql: Callable[[str, list[Any]], Any] = self.db.peewee.execute_sql  # untyped
        rows: list[tuple[Any, ...]] = execute_sql(sql, params).fetchall()
        return rows

    def _request_filters(self, params: dict[str, str | None]) -> list[Any]:
        """The /v1/requests filters as conditions on the request log (validated)."""
        R = RequestLog
        where: list[Any] = []
        customer_id = self._customer_id(params.get("customer_id") or params.get("customer"))
        if customer_id:
            where.append(R.customer_id == customer_id)
        model = params.get("model")
        if model:
            name = model.removeprefix("fc:")
            provider, _, bare = name.partition("/")
            if bare:
                where += [R.provider == provider, R.model == bare]
            else:
                where.append(R.model == name)
        status = params.get("status")
        if status:
            if status not in REQUEST_STATUSES:
                raise InvalidRequest(
                    f"status must be one of {', '.join(REQUEST_STATUSES)}.", param="status"
                )
            where.append(R.status == status)
        since, _ = parse_time(params.get("since"), "since", end=False)
        until, _ = parse_time(params.get("until"), "until", end=True)
        if since:
            where.append(R.created_ms >= to_ms(since))
        if until:
            where.append(R.created_ms < to_ms(until))
        return where

    def requests_sync(self, params: dict[str, str | None]) -> dict[str, Any]:
        R = RequestLog
        limit = v.limit(params.get("limit"), default=50, maximum=500)
        where = self._request_filters(params)
        q = R.select().where(*where) if where else R.select()
        page = keyset_page(q, R.id, limit=limit, starting_after=params.get("starting_after"))
        return page.map(request_to_api).to_api("/v1/requests")

    async def requests_csv(self, params: dict[str, str | None]) -> AsyncIterator[bytes]:
        """/v1/requests as CSV: a header row (REQUEST_COLUMNS), then every matching request,
        newest first, read CSV_PAGE rows at a time by keyset on the id, so an export of any
        length holds one page in memory. `starting_after` resumes after an id; `limit` is
        not used (the CSV is every match). Rows logged after the export began are not in
        it. Bad filters raise here, before the first byte."""
        where = await self.db.read(self._request_filters, params)
        first = await self.db.read(
            _request_rows_sync, where, params.get("starting_after") or None, CSV_PAGE
        )

        async def lines() -> AsyncIterator[bytes]:
            out = _CsvBuffer()
            out.row(REQUEST_COLUMNS)
            rows = first
            while True:
                out.rows(_request_cells(r) for r in rows)
                yield out.flush()
                if len(rows) < CSV_PAGE:
                    return
                rows = await self.db.read(_request_rows_sync, where, rows[-1][0], CSV_PAGE)

        return lines()


_REQUEST_FIELDS = (
    RequestLog.id,
    RequestLog.customer_id,
    RequestLog.provider,
    RequestLog.model,
    RequestLog.endpoint,
    RequestLog.stream,
    RequestLog.status,
    RequestLog.http_status,
    RequestLog.error_code,
    RequestLog.input_tokens,
    RequestLog.cached_tokens,
    RequestLog.cache_write_tokens,
    RequestLog.output_tokens,
    RequestLog.reasoning_tokens,
    RequestLog.cost_nanos,
    RequestLog.price_nanos,
    RequestLog.held_nanos,
    RequestLog.over_hold,
    RequestLog.latency_ms,
    RequestLog.created_ms,
)


def _request_rows_sync(where: list[Any], after: str | None, n: int) -> list[tuple[Any, ...]]:
    """Up to `n` request-log rows (_REQUEST_FIELDS) older than the id `after`, newest first."""
    R = RequestLog
    q = R.select(*_REQUEST_FIELDS)
    conditions = [*where, R.id < after] if after else where
    if conditions:
        q = q.where(*conditions)
    return tuples(q.order_by(R.id.desc()).limit(n))


def _request_cells(row: Sequence[Any]) -> list[Any]:
    """A request-log row as CSV cells: what the JSON answer says, as text."""
    (rid, customer_id, provider, model, endpoint, stream, status, http_status, error_code) = row[:9]
    tokens = row[9:14]
    cost, price, held, over_hold, latency_ms, created_ms = row[14:]
    return [
        rid,
        customer_id or "",
        f"fc:{provider}/{model}",
        provider,
        endpoint,
        _bool(stream),
        status,
        http_status,
        error_code or "",
        *tokens,
        *_money_cells(cost, price),
        nanos_to_text(held),
        _bool(over_hold),
        latency_ms,
        created_ms // 1000,
        iso_ms(created_ms),
    ]


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _money_cells(cost: int, price: int) -> list[str]:
    """cost, price and margin as exact decimal text (never a float)."""
    return [nanos_to_text(cost), nanos_to_text(price), nanos_to_text(price - cost)]


class _CsvBuffer:
    """CSV rows written to a buffer and taken out as bytes, a chunk at a time."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)

    def row(self, cells: Iterable[Any]) -> None:
        self._writer.writerow(cells)

    def rows(self, rows: Iterable[Iterable[Any]]) -> None:
        self._writer.writerows(rows)

    def flush(self) -> bytes:
        out = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        return out


def request_to_api(r: RequestLog) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "request",
        "customer_id": r.customer_id,
        "model": f"fc:{r.provider}/{r.model}",
        "provider": r.provider,
        "endpoint": r.endpoint,
        "stream": bool(r.stream),
        "status": r.status,
        "http_status": r.http_status,
        "error_code": r.error_code,
        "input_tokens": r.input_tokens,
        "cached_tokens": r.cached_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "output_tokens": r.output_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "cost_usd": nanos_to_json(r.cost_nanos),
        "price_usd": nanos_to_json(r.price_nanos),
        "margin_usd": nanos_to_json(r.price_nanos - r.cost_nanos),
        "held_usd": nanos_to_json(r.held_nanos),
        "over_hold": bool(r.over_hold),
        "latency_ms": r.latency_ms,
        "created": r.created_ms // 1000,
        "created_at": iso_ms(r.created_ms),
    }
