"""Keyset (cursor) pagination: one helper for every list route.

Every list is ordered newest first by a strictly ordered id (ids are time-ordered, see
`gateway.ids`), and pages are cut with `starting_after` / `ending_before`, as Stripe does.
A page is fetched with one extra row to learn `has_more` without counting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.errors import InvalidRequest

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: list[T]
    has_more: bool

    def map(self, fn: Callable[[T], U]) -> Page[U]:
        return Page([fn(x) for x in self.data], self.has_more)

    def to_api(self, url: str) -> dict[str, Any]:
        return {"object": "list", "data": self.data, "has_more": self.has_more, "url": url}


def cut(rows: Sequence[T], limit: int) -> Page[T]:
    """A page from rows fetched with `limit + 1`."""
    return Page(list(rows[:limit]), len(rows) > limit)


def keyset_page(
    query: Any,
    id_field: Any,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
    exists: Callable[[str], bool] | None = None,
    kind: str = "object",
) -> Page[Any]:
    """One page of a Peewee `query`, newest first by `id_field`.

    `exists` (optional) checks that a cursor names a real row, so a mistyped cursor is a
    400 naming the parameter rather than an empty page.
    """
    for name, cursor in (("starting_after", starting_after), ("ending_before", ending_before)):
        if cursor and exists is not None and not exists(cursor):
            article = "an" if kind[:1] in "aeiou" else "a"
            raise InvalidRequest(f"{name} '{cursor}' is not {article} {kind} id.", param=name)
    if starting_after:
        query = query.where(id_field < starting_after)
    if ending_before:
        # The page just before the cursor: walk up from it, then show newest first.
        rows = list(query.where(id_field > ending_before).order_by(id_field.asc()).limit(limit + 1))
        page = cut(rows, limit)
        return Page(list(reversed(page.data)), page.has_more)
    return cut(list(query.order_by(id_field.desc()).limit(limit + 1)), limit)
