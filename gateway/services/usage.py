"""Usage totals (from the daily rollups) and the per-request log."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.clock import iso_ms, to_ms
from gateway.db.database import Database
from gateway.db.models import RequestLog, UsageDaily
from gateway.errors import InvalidRequest
from gateway.ledger import Ledger, nanos_to_json
from gateway.services import validation as v
from gateway.services.pagination import keyset_page

GROUPS = ("day", "model", "customer")
# Bounds for `since`/`until`: wide enough for any ledger, narrow enough for every backend.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9999, 1, 1, tzinfo=UTC)
REQUEST_STATUSES = ("ok", "error", "refused", "cut")


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

    def usage_sync(self, params: dict[str, str | None]) -> dict[str, Any]:
        customer_id = self._customer_id(params.get("customer_id") or params.get("customer"))
        since, since_whole = parse_time(params.get("since"), "since", end=False)
        until, until_whole = parse_time(params.get("until"), "until", end=True)
        if since and until and until <= since:
            raise InvalidRequest("until must be after since.", param="until")
        group_by = params.get("group_by")
        if group_by is not None and group_by not in GROUPS:
            raise InvalidRequest("group_by must be day, model or customer.", param="group_by")
        if since_whole and until_whole:
            rows = self._from_rollups(customer_id, since, until)
        else:
            rows = self._from_log(customer_id, since, until)
        totals: defaultdict[str, int] = defaultdict(int)
        groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in rows:
            for k in (
                "requests",
                "input_tokens",
                "output_tokens",
                "cached_tokens",
                "reasoning_tokens",
                "cost",
                "price",
            ):
                totals[k] += row[k]
            if group_by:
                key = {
                    "day": row["day"],
                    "model": f"fc:{row['model']}",  # the id /v1/models and /v1/requests use
                    "customer": row["customer_id"],
                }[group_by]
                g = groups[key]
                for k in ("requests", "input_tokens", "output_tokens", "cost", "price"):
                    g[k] += row[k]
        breakdown: list[dict[str, Any]] = []
        for key in sorted(groups):
            g = groups[key]
            label = "customer_id" if group_by == "customer" else str(group_by)
            breakdown.append(
                {
                    label: key or None,
                    "requests": g["requests"],
                    "input_tokens": g["input_tokens"],
                    "output_tokens": g["output_tokens"],
                    **_money(g["cost"], g["price"]),
                }
            )
        return {
            "object": "usage",
            "customer_id": customer_id,
            "since": since.isoformat().replace("+00:00", "Z") if since else None,
            "until": until.isoformat().replace("+00:00", "Z") if until else None,
            "group_by": group_by,
            "requests": totals["requests"],
            "input_tokens": totals["input_tokens"],
            "output_tokens": totals["output_tokens"],
            "cached_tokens": totals["cached_tokens"],
            "reasoning_tokens": totals["reasoning_tokens"],
            **_money(totals["cost"], totals["price"]),
            "breakdown": breakdown,
        }

    def _from_rollups(
        self, customer_id: str | None, since: datetime | None, until: datetime | None
    ) -> list[dict[str, Any]]:
        U = UsageDaily
        q = U.select()
        if customer_id:
            q = q.where(U.customer_id == customer_id)
        if since:
            q = q.where(U.day >= since.strftime("%Y-%m-%d"))
        if until:
            q = q.where(U.day < until.strftime("%Y-%m-%d"))
        return [
            {
                "day": r.day,
                "model": r.model,
                "customer_id": r.customer_id,
                "requests": r.requests,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cached_tokens": r.cached_tokens,
                "reasoning_tokens": r.reasoning_tokens,
                "cost": r.cost_nanos,
                "price": r.price_nanos,
            }
            for r in q
        ]

    def _from_log(
        self, customer_id: str | None, since: datetime | None, until: datetime | None
    ) -> list[dict[str, Any]]:
        R = RequestLog
        q = R.select().where(R.status.in_(["ok", "cut"]))
        if customer_id:
            q = q.where(R.customer_id == customer_id)
        if since:
            q = q.where(R.created_ms >= to_ms(since))
        if until:
            q = q.where(R.created_ms < to_ms(until))
        out = []
        for r in q.iterator():
            out.append(
                {
                    "day": datetime.fromtimestamp(r.created_ms / 1000, UTC).strftime("%Y-%m-%d"),
                    "model": f"{r.provider}/{r.model}",
                    "customer_id": r.customer_id or "",
                    "requests": 1,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "cached_tokens": r.cached_tokens,
                    "reasoning_tokens": r.reasoning_tokens,
                    "cost": r.cost_nanos,
                    "price": r.price_nanos,
                }
            )
        return out

    def requests_sync(self, params: dict[str, str | None]) -> dict[str, Any]:
        R = RequestLog
        limit = v.limit(params.get("limit"), default=50, maximum=500)
        q = R.select()
        customer_id = self._customer_id(params.get("customer_id") or params.get("customer"))
        if customer_id:
            q = q.where(R.customer_id == customer_id)
        model = params.get("model")
        if model:
            name = model.removeprefix("fc:")
            provider, _, bare = name.partition("/")
            q = (
                q.where(R.provider == provider, R.model == bare)
                if bare
                else q.where(R.model == name)
            )
        status = params.get("status")
        if status:
            if status not in REQUEST_STATUSES:
                raise InvalidRequest(
                    f"status must be one of {', '.join(REQUEST_STATUSES)}.", param="status"
                )
            q = q.where(R.status == status)
        since, _ = parse_time(params.get("since"), "since", end=False)
        until, _ = parse_time(params.get("until"), "until", end=True)
        if since:
            q = q.where(R.created_ms >= to_ms(since))
        if until:
            q = q.where(R.created_ms < to_ms(until))
        page = keyset_page(q, R.id, limit=limit, starting_after=params.get("starting_after"))
        return page.map(request_to_api).to_api("/v1/requests")


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
