"""A DataTable updated in place from keyed snapshots (dolphie's pattern).

`sync(items, render)` compares each item with the one shown last time: unchanged rows
cost one equality check, changed rows get `update_cell` for the cells that differ, new
rows are added and gone rows removed in bulk (DataTable's one-at-a-time `add_row` /
`remove_row` re-validate the cursor or re-index every row per call, which a filter typed
over 10,000 rows turns into seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, RowKey

from ringside_tui.widgets.cells import sort_key

try:  # DataTable's row record; the bulk paths below fall back to the public API without it
    from textual._two_way_dict import TwoWayDict
    from textual.widgets._data_table import Row as _Row

    _HAVE_INTERNALS = True
except ImportError:  # pragma: no cover - a Textual that moved its internals
    _HAVE_INTERNALS = False

T = TypeVar("T")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None


@dataclass
class SyncStats:
    added: int = 0
    updated: int = 0
    removed: int = 0
    resorted: bool = False
    seconds: float = 0.0


class DiffTable(DataTable[Any], Generic[T]):
    def __init__(
        self,
        columns: Sequence[Column],
        *,
        sort_column: str | None = None,
        sort_reverse: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.column_specs = list(columns)
        self.sort_column = sort_column
        self.sort_reverse = sort_reverse
        self._items: dict[str, T] = {}
        self._cells: dict[str, tuple[Any, ...]] = {}
        self.last_sync = SyncStats()

    def on_mount(self) -> None:
        self._ensure_columns()

    def _ensure_columns(self) -> None:
        # A refresh can land before this table's Mount (a freshly pushed screen).
        if not self.columns:
            for col in self.column_specs:
                self.add_column(col.label, width=col.width, key=col.key)

    # ------------------------------------------------------------------ queries
    @property
    def item_keys(self) -> list[str]:
        return list(self._items)

    def item(self, key: str) -> T | None:
        return self._items.get(key)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def selected_item(self) -> T | None:
        key = self.selected_key
        return self._items.get(key) if key is not None else None

    def cell_text(self, key: str, column: str) -> str:
        value = self.get_cell(RowKey(key), column)
        return str(getattr(value, "plain", value))

    # ------------------------------------------------------------------ updates
    def sync(
        self,
        items: Mapping[str, T],
        render: Callable[[T], Sequence[Any]],
        *,
        force: bool = False,
    ) -> SyncStats:
        """Make the table show exactly `items` (by key), rendering only what changed.

        With a sort column the rows are kept sorted on it; without one they are shown in
        the order of `items` (a ranking computed by the caller), moved when it changes.
        """
        started = time.perf_counter()
        self._ensure_columns()
        stats = SyncStats()
        selected = self.selected_key
        gone = [k for k in self._items if k not in items]
        sort_col = self.sort_column
        sort_idx = next((i for i, c in enumerate(self.column_specs) if c.key == sort_col), None)
        needs_sort = False
        if gone:
            self._remove_rows(gone)
            for key in gone:
                del self._items[key]
                del self._cells[key]
            stats.removed = len(gone)
        new_rows: list[tuple[str, T, tuple[Any, ...]]] = []
        for key, item in items.items():
            if key not in self._items:
                new_rows.append((key, item, tuple(render(item))))
                continue
            if not force and self._items[key] == item:
                continue
            cells = tuple(render(item))
            previous = self._cells[key]
            for col, new_cell, old_cell in zip(self.column_specs, cells, previous, strict=False):
                if not _same(new_cell, old_cell):
                    self.update_cell(key, col.key, new_cell)
                    if sort_idx is not None and col.key == sort_col:
                        needs_sort = True
            self._items[key] = item
            self._cells[key] = cells
            stats.updated += 1
        self._add_rows([(key, cells) for key, _, cells in new_rows])
        for key, item, cells in new_rows:
            self._items[key] = item
            self._cells[key] = cells
        stats.added = len(new_rows)
        if sort_col is not None:
            if new_rows or needs_sort:
                self._sort()
                stats.resorted = True
        elif self._follow_order(list(items)):
            stats.resorted = True
        if selected is not None and selected in self._items and selected != self.selected_key:
            self.move_cursor(row=self.get_row_index(selected), animate=False, scroll=False)
        stats.seconds = time.perf_counter() - started
        self.last_sync = stats
        return stats

    # ------------------------------------------------------------------ bulk row changes
    def _bulk_ok(self) -> bool:
        return (
            _HAVE_INTERNALS
            and hasattr(self, "_row_locations")
            and hasattr(self, "_data")
            and hasattr(self, "_new_rows")
        )

    def _add_rows(self, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
        """add_row for many rows with one cursor check instead of one per row.

        DataTable.add_row re-validates the cursor (a reactive) on every call: 6,000 rows
        took 0.3 s, a frozen screen while a filter is cleared. This writes the same
        bookkeeping add_row writes, once; without those internals it uses add_row.
        """
        if not rows:
            return
        if not self._bulk_ok() or len(rows) < 50:
            for key, cells in rows:
                self.add_row(*cells, key=key)
            return
        keys = [c.key for c in self.ordered_columns]
        first = self.row_count == 0
        locations, data, records, fresh = self._row_locations, self._data, self.rows, self._new_rows
        index = len(records)
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in locations:
                raise ValueError(f"duplicate row key {key!r}")
            locations[row_key] = index
            data[row_key] = dict(zip(keys, cells, strict=False))
            records[row_key] = _Row(row_key, 1, None, False)
            fresh.add(row_key)
            index += 1
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if first and self.show_cursor and self.cursor_type != "none" and self.columns:
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()

    def _remove_rows(self, keys: list[str]) -> None:
        """remove_row for many rows, re-indexing the rest once (remove_row re-indexes all
        remaining rows on each call: quadratic when a filter hides thousands)."""
        if not self._bulk_ok() or len(keys) < 20:
            for key in keys:
                self.remove_row(key)
            return
        gone = {RowKey(k) for k in keys}
        kept = sorted((self._row_locations.get(k), k) for k in self._row_locations if k not in gone)
        self._row_locations = TwoWayDict({k: i for i, (_, k) in enumerate(kept)})
        for row_key in gone:
            for column_key in self._data.get(row_key, {}):
                self._updated_cells.discard(CellKey(row_key, column_key))
            del self.rows[row_key]
            del self._data[row_key]
            self._new_rows.discard(row_key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        self.hover_coordinate = self.hover_coordinate
        self._update_count += 1
        self.refresh(layout=True)
        self.check_idle()

    # ------------------------------------------------------------------ sorting
    def _follow_order(self, order: list[str]) -> bool:
        """Show the rows in `order` (every shown key, once); False if they already were.

        Rows updated in place keep their place and new ones are appended, so a table
        without a sort column would otherwise keep the order it first showed."""
        if [row.key.value for row in self.ordered_rows] == order:
            return False
        self._items = {key: self._items[key] for key in order}
        if self._bulk_ok():  # what DataTable.sort writes, from a given order
            self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(order)})
            self._update_count += 1
            self.refresh()
        else:  # pragma: no cover - a Textual that moved its internals
            self.clear()
            for key in order:
                self.add_row(*self._cells[key], key=key)
        return True

    def set_sort(self, column: str) -> None:
        """Sort by `column`; the same column again flips the direction."""
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column = column
            self.sort_reverse = False
        self._sort_keeping_cursor()

    def cycle_sort(self) -> None:
        """The next column, ascending (the keyboard twin of clicking headers)."""
        keys = [c.key for c in self.column_specs]
        if self.sort_column in keys:
            self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        else:
            self.sort_column = keys[0]
        self.sort_reverse = False
        self._sort_keeping_cursor()

    def _sort_keeping_cursor(self) -> None:
        selected = self.selected_key
        self._sort()
        if selected is not None and selected in self._items:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _sort(self) -> None:
        if self.sort_column is None or not self.row_count:
            return
        self.sort(self.sort_column, key=sort_key, reverse=self.sort_reverse)

    def _update_dimensions(self, new_rows: Any) -> None:
        """Skip DataTable's per-cell measuring when every column has a fixed width.

        DataTable measures each cell of each new row to size auto-width columns (about
        0.2 ms a row: two seconds of a frozen UI for 10,000 rows). With fixed widths and
        one-line rows the only thing that changes is the scrollable size.
        """
        if any(c.width is None for c in self.column_specs) or self._labelled_row_exists:
            super()._update_dimensions(new_rows)
            return
        header_height = self.header_height if self.show_header else 0
        width = sum(c.get_render_width(self) for c in self.columns.values())
        self.virtual_size = Size(
            width + self._row_label_column_width, self._total_row_height + header_height
        )

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.set_sort(event.column_key.value or "")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return bool(a == b)
