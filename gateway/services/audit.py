"""The audit log, read: filters, newest first, cursor pagination, CSV.

Entries are written by the services that change things (`gateway.audit.record`, in the
change's own transaction); nothing here updates or deletes one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, get_args

from gateway.audit import Action
from gateway.clock import to_ms
from gateway.db.database import Database
from gateway.db.models import AuditEntry, Customer
from gateway.errors import InvalidRequest
from gateway.jsoncodec import encode
from gateway.serializers import audit_to_api
from gateway.services import validation as v
from gateway.services.pagination import Page, keyset_page
from gateway.services.usage import parse_time

ACTIONS: tuple[str, ...] = get_args(Action)
CSV_COLUMNS = (
    "id",
    "created",
    "key_id",
    "key_kind",
    "action",
    "target_id",
    "customer_id",
    "changes",
    "request_id",
    "idempotency_key",
    "ip",
)
CSV_PAGE = 1000


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        return await self.db.read(self._list_sync, params)

    async def csv(self, params: dict[str, str | None]) -> AsyncIterator[bytes]:
        """Every matching entry as CSV (header row first), newest first, read a page at a
        time. Bad filters raise before the first byte, as a 400."""
        params = {**params, "limit": str(CSV_PAGE), "starting_after": None}
        page = await self.list(params)  # validates the filters
        buffer = io.StringIO()
        writer = csv.writer(buffer)

        def flush() -> bytes:
            out = buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            return out

        async def lines() -> AsyncIterator[bytes]:
            nonlocal page
            writer.writerow(CSV_COLUMNS)
            while True:
                for entry in page.data:
                    writer.writerow([_csv_cell(entry[c]) for c in CSV_COLUMNS])
                yield flush()
                if not page.has_more or not page.data:
                    return
                page = await self.list({**params, "starting_after": page.data[-1]["id"]})

        return lines()

    def _query(self, params: dict[str, str | None]) -> Any:
        query = AuditEntry.select()
        customer = params.get("customer_id")
        if customer:
            row = Customer.get_or_none(
                (Customer.id == customer) | (Customer.external_id == customer)
            )
            query = query.where(AuditEntry.customer_id == (row.id if row else customer))
        action = params.get("action")
        if action:
            if action not in ACTIONS:
                raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}.", param="action")
            query = query.where(AuditEntry.action == action)
        since, _ = parse_time(params.get("since"), "since", end=False)
        until, _ = parse_time(params.get("until"), "until", end=True)
        if since is not None:
            query = query.where(AuditEntry.created_ms >= to_ms(since))
        if until is not None:
            query = query.where(AuditEntry.created_ms < to_ms(until))
        return query

    def _list_sync(self, params: dict[str, str | None]) -> Page[dict[str, Any]]:
        limit = v.limit(params.get("limit"), maximum=CSV_PAGE)
        page = keyset_page(
            self._query(params),
            AuditEntry.id,
            limit=limit,
            starting_after=params.get("starting_after"),
            ending_before=params.get("ending_before"),
            exists=lambda aid: AuditEntry.get_or_none(AuditEntry.id == aid) is not None,
            kind="audit entry",
        )
        return Page([audit_to_api(e) for e in page.data], page.has_more)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A cell as text. A spreadsheet runs a cell starting with = + - @ as a formula, and an
    idempotency key is the caller's own text: such a cell gets a leading apostrophe
    (OWASP's advice for CSV injection)."""
    if isinstance(value, dict):
        return encode(value).decode()
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
